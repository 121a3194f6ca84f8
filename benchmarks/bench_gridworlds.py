"""Gridworld throughput: our batched NumPy gridworlds against `safety-gridworlds-gymnasium` (PyPI 2.0.4).

The three environments both packages have (island navigation, side-effects Sokoban level 0, the
conveyor belt's vase variant), a uniformly random policy, episodes capped at 100 steps, both
measured in this run. The baseline is stepped the way its users step it: one Gymnasium env in a
Python loop, and Gymnasium's synchronous vector env over 16 copies. Ours steps 1,024 copies per
NumPy call and also returns the board observation and the hidden reward every step, which the
baseline does not compute.

    pip install --no-deps safety-gridworlds-gymnasium==2.0.4 pygame==2.6.1
    python benchmarks/bench_gridworlds.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np

import goodhartlab.rl  # noqa: F401
from goodhartlab.rl import make_batched

PAIRS = {
    "island navigation": ("goodhartlab/IslandNavigation-v0", "safety_gridworlds/IslandNavigation-v0"),
    "side-effects sokoban": ("goodhartlab/SideEffectsSokoban-v0", "safety_gridworlds/Sokoban-v0"),
    "conveyor belt (vase)": ("goodhartlab/ConveyorBeltVase-v0", "safety_gridworlds/ConveyorBelt-v0"),
}


def vector_steps_per_second(env: Any, copies: int, seconds: float) -> float:
    """Random actions into a vector environment for `seconds`; environment steps (all copies) per second."""
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            env.step(rng.integers(0, 4, copies))
        steps += 50 * copies
    return steps / (time.perf_counter() - start)


def ours(env_id: str, copies: int, seconds: float) -> float:
    return vector_steps_per_second(make_batched(env_id, copies), copies, seconds)


def baseline_vector(env_id: str, copies: int, seconds: float) -> float:
    env = gym.make_vec(env_id, num_envs=copies, vectorization_mode="sync", max_episode_steps=100)
    return vector_steps_per_second(env, copies, seconds)


def baseline_loop(env_id: str, seconds: float) -> float:
    env = gym.make(env_id, max_episode_steps=100)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(0, 4)))
            if terminated or truncated:
                env.reset()
        steps += 500
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--copies", type=int, default=1024, help="copies in our batched mode")
    args = parser.parse_args()
    import safety_gridworlds_gymnasium  # noqa: F401  (registers its environments)

    print(f"{'environment':24s} {'ours (steps/s)':>15s} {'baseline loop':>14s} {'baseline vec16':>15s} "
          f"{'ratio loop':>11s} {'ratio vec16':>12s}")
    ratios = []
    for name, (our_id, their_id) in PAIRS.items():
        mine = ours(our_id, args.copies, args.seconds)
        loop = baseline_loop(their_id, args.seconds)
        vec = baseline_vector(their_id, 16, args.seconds)
        ratios.append(mine / max(loop, vec))
        print(f"{name:24s} {mine:15,.0f} {loop:14,.0f} {vec:15,.0f} {mine / loop:10.0f}x {mine / vec:11.0f}x")
    print(f"smallest ratio against the faster baseline: {min(ratios):.0f}x (goal >= 50x)")


if __name__ == "__main__":
    main()
