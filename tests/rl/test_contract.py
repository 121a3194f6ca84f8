"""The dual-reward contract: its checker catches what it promises to, and every registered environment
passes it and trains unchanged with Stable-Baselines3."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

import goodhartlab.rl  # noqa: F401
from goodhartlab.rl import MISSPECIFICATIONS, ContractError, check_contract, list_environments

ALL_IDS = [entry.id for entry in list_environments()]


class Honest(gym.Env[np.ndarray, int]):
    metadata: ClassVar[dict[str, Any]] = {"misspecification": "misweighting", "proxy_reward": "the count",
                                          "true_reward": "the count minus a cost"}
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    true_reward: Any = 0.5

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        noise = float(self.np_random.random())
        true = self.true_reward + noise if isinstance(self.true_reward, float) else self.true_reward
        return np.zeros(1, np.float32), 1.0 + noise, False, False, {"true_reward": true}


def test_a_conforming_environment_passes() -> None:
    report = check_contract(Honest(), steps=50)
    assert report.steps == 50 and not report.proxy_equals_true


@pytest.mark.parametrize(("change", "message"), [
    (lambda env: env.metadata.pop("proxy_reward"), "no 'proxy_reward'"),
    (lambda env: env.metadata.update(misspecification="vibes"), "use one of"),
    (lambda env: setattr(env, "true_reward", "high"), "must be a float"),
    (lambda env: setattr(env, "true_reward", float("nan")), "not finite"),
])
def test_broken_environments_are_named(change: Any, message: str) -> None:
    env = Honest()
    env.metadata = dict(Honest.metadata)
    change(env)
    with pytest.raises(ContractError, match=message):
        check_contract(env, steps=20, run_gymnasium_checker=False)


def test_unseeded_randomness_is_caught() -> None:
    class Unseeded(Honest):
        def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
            noise = float(np.random.default_rng().random())
            return np.zeros(1, np.float32), noise, False, False, {"true_reward": noise}

    with pytest.raises(ContractError, match="differ from step 0"):
        check_contract(Unseeded(), steps=5, run_gymnasium_checker=False)


def test_registry_lists_every_environment_with_a_known_misspecification() -> None:
    assert len(ALL_IDS) >= 13
    for entry in list_environments():
        assert entry.misspecification in MISSPECIFICATIONS


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_stable_baselines3_trains_unchanged(env_id: str) -> None:
    from stable_baselines3 import PPO

    from goodhartlab.rl.agents.sb3 import make_sb3_vec_env, true_return_callback

    check_contract(gym.make(env_id), steps=100)
    recorder = true_return_callback()
    model = PPO("MlpPolicy", make_sb3_vec_env(env_id, 2, seed=0), n_steps=256, batch_size=128, n_epochs=2,
                seed=0, device="cpu")
    model.learn(4096, callback=recorder)
    assert recorder.true_returns, "no episode finished in 4,096 steps"
    assert np.isfinite(recorder.true_returns).all()
