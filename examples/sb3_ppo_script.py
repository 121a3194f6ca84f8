"""Your own Stable-Baselines3 script, instrumented with goodhartlab: true returns beside the proxy, and alarms.

    python examples/sb3_ppo_script.py --steps 40000              # PPO (SB3) on the epidemic analogue
    python examples/sb3_ppo_script.py --steps 40000 --stop-on-alarm

What goodhartlab adds: `TrueReturnRecorder`, whose callback sums each episode's true reward (the environment's
info["true_reward"]) next to its proxy return and feeds every rollout's row to the online detectors (the benchmark's
thresholds), keeping each alarm with the episodes around it.
"""

from __future__ import annotations

import argparse

from stable_baselines3 import PPO

import goodhartlab.rl  # noqa: F401  (registers the environments)
from goodhartlab.rl.agents.sb3 import TrueReturnRecorder, make_sb3_vec_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="goodhartlab/Epidemic-v0")
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-on-alarm", action="store_true", help="stop training at the detectors' first alarm")
    args = parser.parse_args()

    env = make_sb3_vec_env(args.env, num_envs=8, seed=args.seed)
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=256, seed=args.seed, device="cpu", verbose=0)
    # --- goodhartlab: true returns and the detectors, gold (the true return) read every 5th rollout -------------
    recorder = TrueReturnRecorder(monitor=True, gold_every=5, stop_on_alarm=args.stop_on_alarm)
    model.learn(total_timesteps=args.steps, callback=recorder.callback())

    proxy, true = recorder.recent()
    print(f"{model.num_timesteps} steps, {len(recorder.proxy_returns)} episodes; last 100: proxy {proxy:.2f}, "
          f"true {true:.2f}")
    for alarm in recorder.alarms:
        print(f"alarm: {alarm['message']}")
    if not recorder.alarms:
        print("no alarm")


if __name__ == "__main__":
    main()
