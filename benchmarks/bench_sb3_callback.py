"""Overhead of TrueReturnRecorder with its detectors on a Stable-Baselines3 PPO run (goal: at most 5% per step).

Baseline, measured in the same run: the same PPO (policy, environment, seed, settings) learning with no callback.
The instrumented side adds `TrueReturnRecorder(monitor=True, gold_every=5)`: true returns counted per episode and,
after every rollout (the logged step), a row fed to the default detectors with the benchmark's thresholds. Two
figures:
  - wall clock: median run time of each side over `--repeats` runs in ABBA order (carries the machine's noise,
    printed beside it);
  - accounted: the time spent inside the recorder (per environment step and per rollout, detectors included),
    over the baseline's median run time, and the detectors' own time per rollout over a rollout's time.
Usage: python benchmarks/bench_sb3_callback.py [--steps 32768] [--repeats 4] [--env goodhartlab/Epidemic-v0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from stable_baselines3 import PPO

import goodhartlab.rl  # noqa: F401  (registers the environments)
from goodhartlab.rl.agents.sb3 import TrueReturnRecorder, make_sb3_vec_env

N_ENVS, N_STEPS = 8, 256


class TimedRecorder(TrueReturnRecorder):
    """The recorder, with the time inside it (and inside its detectors) counted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = 0.0
        self.detector_seconds = 0.0
        self.rollouts = 0

    def step(self, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        super().step(*args, **kwargs)
        self.seconds += time.perf_counter() - start

    def rollout_end(self, steps: int, entropy: float | None = None) -> None:
        start = time.perf_counter()
        super().rollout_end(steps, entropy)
        self.seconds += time.perf_counter() - start
        self.rollouts += 1

    def _watch(self, steps: int, entropy: float | None) -> None:
        start = time.perf_counter()
        super()._watch(steps, entropy)
        self.detector_seconds += time.perf_counter() - start


def run(args: argparse.Namespace, instrumented: bool) -> tuple[float, TimedRecorder | None]:
    env = make_sb3_vec_env(args.env, num_envs=N_ENVS, seed=args.seed)
    model = PPO("MlpPolicy", env, n_steps=N_STEPS, batch_size=256, seed=args.seed, device="cpu", verbose=0)
    recorder = TimedRecorder(monitor=True, gold_every=5) if instrumented else None
    start = time.perf_counter()
    model.learn(total_timesteps=args.steps, callback=recorder.callback() if recorder else None)
    seconds = time.perf_counter() - start
    env.close()
    return seconds, recorder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="goodhartlab/Epidemic-v0")
    parser.add_argument("--steps", type=int, default=32_768)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(args, True)  # warm-up: imports, the detectors' calibration file
    order = [False, True, True, False] * max(1, args.repeats // 2)
    times: dict[bool, list[float]] = {False: [], True: []}
    recorders: list[TimedRecorder] = []
    for instrumented in order[: 2 * args.repeats]:
        seconds, recorder = run(args, instrumented)
        times[instrumented].append(seconds)
        if recorder is not None:
            recorders.append(recorder)
    base, instr = statistics.median(times[False]), statistics.median(times[True])
    spread = (max(times[False]) - min(times[False])) / base
    accounted = statistics.median(r.seconds for r in recorders)
    rollouts = recorders[0].rollouts
    per_rollout = base / rollouts
    detectors = statistics.median(r.detector_seconds for r in recorders) / rollouts
    print(f"SB3 PPO on {args.env}, {args.steps} steps ({rollouts} rollouts of {N_ENVS}x{N_STEPS}), "
          f"{args.repeats} repeats a side, ABBA order, one torch thread")
    print(f"wall clock: baseline {base:.2f} s, instrumented {instr:.2f} s, ratio {instr / base:.3f} "
          f"(baseline spread {spread:.1%})")
    print(f"accounted: {accounted:.3f} s inside the recorder = {accounted / base:.2%} of the baseline run")
    print(f"detectors: {1000 * detectors:.2f} ms per rollout (logged step) = {detectors / per_rollout:.3%} of a "
          f"rollout's {per_rollout:.3f} s")


if __name__ == "__main__":
    main()
