"""Our PPO vs Stable-Baselines3's PPO: wall-clock time to the same proxy return, same network and hyperparameters.

Both train on the same environment (default: the TrafficMerge ontological pair) from one `PPOConfig`
(`sb3_ppo_kwargs` translates it: separate actor and critic MLPs of depth x width as SB3's
MlpPolicy, same rollout shape, minibatch, epochs, learning rate, clipping and coefficients), each
at one torch thread, in the same process, alternating which goes first. SB3 steps its DummyVecEnv
over single-copy environments (its normal use); ours steps the batched vector env.

Time to target: each run records, after every rollout and its update, the mean proxy return of
its last `--window` finished training episodes; the time to target is the wall-clock time at
which that first reaches the target. The target is `--frac` of the way from a uniformly random
policy's return to the lower of the two implementations' mean final returns, so both reach it in
expectation (or pass `--target`). Runs that never reach it are reported as such.
Usage: python benchmarks/bench_ppo.py [--env goodhartlab/TrafficMerge-v0] [--steps 150000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
from stable_baselines3 import PPO

from goodhartlab.rl.agents.ppo import PPOConfig, torch_threads, train_ppo
from goodhartlab.rl.agents.sb3 import TrueReturnRecorder, make_sb3_vec_env, sb3_ppo_kwargs
from goodhartlab.rl.rollout import evaluate, make_vector_env


@dataclass
class Run:
    """One training run: after each rollout + update, steps, seconds since the start, recent proxy return."""

    steps: np.ndarray
    seconds: np.ndarray
    recent_proxy: np.ndarray
    parameters: int

    @property
    def final(self) -> float:
        return float(self.recent_proxy[-1])

    def time_to(self, target: float) -> tuple[float, int] | None:
        reached = np.flatnonzero(self.recent_proxy >= target)
        return (float(self.seconds[reached[0]]), int(self.steps[reached[0]])) if reached.size else None


def run_ours(env_id: str, config: PPOConfig) -> Run:
    result = train_ppo(env_id, config)
    rows = result.history
    return Run(np.array([r.step for r in rows]), np.array([r.wall_seconds for r in rows]),
               np.array([r.recent_proxy_return for r in rows]), sum(p.numel() for p in result.policy.parameters()))


def run_sb3(env_id: str, config: PPOConfig) -> Run:
    env = make_sb3_vec_env(env_id, config.num_envs, seed=config.seed)
    recorder = TrueReturnRecorder(window=config.stats_window)
    with torch_threads(config.threads):
        model = PPO("MlpPolicy", env, **sb3_ppo_kwargs(config))
        model.learn(config.total_steps, callback=recorder.callback())
    env.close()
    rows = np.array(recorder.history)
    return Run(rows[:, 0].astype(int), rows[:, 1], rows[:, 2], sum(p.numel() for p in model.policy.parameters()))


def random_return(env_id: str, episodes: int = 64) -> float:
    envs = make_vector_env(env_id, 1)
    space = envs.single_action_space
    envs.close()
    space.seed(0)
    return evaluate(lambda obs: np.stack([space.sample() for _ in obs]), env_id, episodes, seed=12345).proxy_mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="goodhartlab/TrafficMerge-v0")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=128)
    parser.add_argument("--minibatch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--window", type=int, default=50, help="training episodes in the rolling mean")
    parser.add_argument("--frac", type=float, default=0.8)
    parser.add_argument("--target", type=float, default=None)
    args = parser.parse_args()

    base = PPOConfig(total_steps=args.steps, num_envs=args.num_envs, n_steps=args.n_steps,
                     minibatch_size=args.minibatch, epochs=args.epochs, lr=args.lr, width=args.width,
                     depth=args.depth, stats_window=args.window, threads=1)
    print(f"{args.env}: {args.steps:,} steps x seeds {args.seeds}; {base}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    warm_up = PPOConfig(**{**base.__dict__, "total_steps": base.rollout_size})
    run_ours(args.env, warm_up), run_sb3(args.env, warm_up)  # first calls into torch pay one-off setup costs
    ours: dict[int, Run] = {}
    sb3: dict[int, Run] = {}
    for i, seed in enumerate(args.seeds):
        config = PPOConfig(**{**base.__dict__, "seed": seed})
        order = [("ours", run_ours, ours), ("sb3", run_sb3, sb3)]
        for name, run, store in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            store[seed] = run(args.env, config)
            print(f"  seed {seed} {name:4s}: {time.perf_counter() - start:7.1f} s for {store[seed].steps[-1]:,} steps, "
                  f"final recent proxy return {store[seed].final:9.3f}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")

    random = random_return(args.env)
    worse_final = min(np.mean([r.final for r in ours.values()]), np.mean([r.final for r in sb3.values()]))
    target = args.target if args.target is not None else random + args.frac * (worse_final - random)
    params = {r.parameters for r in [*ours.values(), *sb3.values()]}
    print(f"\nparameters per network: {sorted(params)} (must be one number); random policy proxy return {random:.3f}")
    print(f"target proxy return {target:.3f} = random + {args.frac} x (lower mean final {worse_final:.3f} - random)"
          if args.target is None else f"target proxy return {target:.3f} (given)")
    print(f"\n{'seed':>4}  {'ours s':>8} {'(steps)':>9}  {'SB3 s':>8} {'(steps)':>9}  {'SB3/ours':>8}   "
          f"{'ours steps/s':>12} {'SB3 steps/s':>11}")
    ratios = []
    totals = np.zeros(2)
    for seed in args.seeds:
        a, b = ours[seed].time_to(target), sb3[seed].time_to(target)
        cells = []
        for hit in (a, b):
            cells.append(f"{hit[0]:8.1f} {hit[1]:>9,}" if hit else f"{'not reached':>18}")
        ratio = b[0] / a[0] if a and b else float("nan")
        if a and b:
            ratios.append(ratio)
            totals += (a[0], b[0])
        sps = [r.steps[-1] / r.seconds[-1] for r in (ours[seed], sb3[seed])]
        print(f"{seed:>4}  {cells[0]}  {cells[1]}  {ratio:8.2f}x   {sps[0]:12,.0f} {sps[1]:11,.0f}")
    if ratios:
        print(f"\ntime to target, summed over the {len(ratios)} seeds both reached it: ours {totals[0]:.1f} s, "
              f"SB3 {totals[1]:.1f} s: {totals[1] / totals[0]:.2f}x (per-seed ratios: median "
              f"{np.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x)")
    throughput = [sum(r.steps[-1] for r in runs.values()) / sum(r.seconds[-1] for r in runs.values())
                  for runs in (ours, sb3)]
    print(f"whole runs: ours {throughput[0]:,.0f} steps/s, SB3 {throughput[1]:,.0f} steps/s: "
          f"{throughput[0] / throughput[1]:.2f}x")


if __name__ == "__main__":
    main()
