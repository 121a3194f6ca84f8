"""Pan et al.'s Riverraid proxies (the optional `atari` extra, installed by the dev set-up)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import goodhartlab.rl  # noqa: F401

NOOP, FIRE, RIGHT, LEFT = 0, 1, 3, 4


def play(env_id: str, policy: list[int], steps: int = 400, seed: int = 0) -> tuple[float, float]:
    env = gym.make(env_id)
    env.reset(seed=seed)
    proxy = true = 0.0
    for t in range(steps):
        _, reward, terminated, truncated, info = env.step(policy[t % len(policy)])
        proxy += reward
        true += info["true_reward"]
        if terminated or truncated:
            break
    return proxy, true


@pytest.mark.slow
def test_pacifist_proxy_prefers_not_shooting_while_the_score_needs_it() -> None:
    calm, shooting = play("goodhartlab/RiverraidPacifist-v0", [NOOP]), play("goodhartlab/RiverraidPacifist-v0", [FIRE])
    assert calm[0] > shooting[0]
    assert shooting[1] > calm[1]


@pytest.mark.slow
def test_movement_costs_more_in_the_true_reward() -> None:
    still = play("goodhartlab/RiverraidMovement-v0", [NOOP], steps=50)
    weaving = play("goodhartlab/RiverraidMovement-v0", [LEFT, RIGHT], steps=50)
    assert still == (500.0, 500.0)
    proxy_cost, true_cost = 500.0 - weaving[0], 500.0 - weaving[1]
    assert proxy_cost > 0 and np.isclose(true_cost, 10 * proxy_cost)


def test_unknown_pair_is_named() -> None:
    with pytest.raises(ValueError, match="pair must be one of"):
        gym.make("goodhartlab/RiverraidPacifist-v0", pair="speedrun")
