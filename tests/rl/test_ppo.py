from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from goodhartlab.rl import BatchedCore, SingleEnv, StepBatch, make_batched
from goodhartlab.rl.agents.ppo import (
    ActorCritic,
    PPOConfig,
    approximate_kl,
    past_kl_target,
    torch_threads,
    train_ppo,
)
from goodhartlab.rl.rollout import evaluate

TRAFFIC = "goodhartlab/TrafficMerge-v0"
TOY = "goodhartlab-test/CountDown-v0"


class CountDownCore(BatchedCore):
    """Episodes of exactly `horizon` steps; the proxy pays +1 a step, the true reward -1 (known returns)."""

    metadata = {"misspecification": "ontological", "proxy_reward": "+1 a step",  # noqa: RUF012  (as BatchedCore)
                "true_reward": "-1 a step"}

    def __init__(self, num_envs: int, horizon: int = 5, discrete: bool = False) -> None:
        super().__init__(num_envs)
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.t = np.zeros(num_envs, dtype=np.int64)

    def reset_copies(self, mask: np.ndarray, rng: np.random.Generator) -> None:
        self.t[mask] = 0

    def observe(self) -> np.ndarray:
        left = 1 - self.t / self.horizon
        return np.stack([left, left ** 2], axis=1).astype(np.float32)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepBatch:
        assert actions.shape[0] == self.num_envs
        if isinstance(self.action_space, gym.spaces.Box):
            assert np.all(np.abs(actions) <= 1.0)  # clipped to the bounds before stepping
        self.t += 1
        ones = np.ones(self.num_envs)
        return StepBatch(ones, -ones, np.zeros(self.num_envs, dtype=bool), self.t >= self.horizon)


class CountDownEnv(SingleEnv):
    core_class = CountDownCore


if TOY not in gym.registry:
    gym.register(TOY, entry_point=CountDownEnv, disable_env_checker=True)


def fast_config(**changes: Any) -> PPOConfig:
    return PPOConfig(**{"total_steps": 1024, "num_envs": 4, "n_steps": 64, "minibatch_size": 64, "epochs": 2,
                        **changes})


def test_batched_env_records_proxy_and_true_returns_and_checkpoints():
    config = fast_config(eval_at=(0, 500, 512, 600), eval_episodes=6)
    result = train_ppo(TOY, config)
    assert result.steps == 1024 and len(result.history) == 4
    assert len(result.episodes) == 4 * (256 // 5)  # 4 copies x 256 steps, episodes of 5
    np.testing.assert_array_equal(result.episodes.proxy_return, 5.0)
    np.testing.assert_array_equal(result.episodes.true_return, -5.0)
    np.testing.assert_array_equal(result.episodes.length, 5)
    assert [e.step for e in result.evals] == [0, 500, 512, 600]
    assert [e.trained_steps for e in result.evals] == [0, 512, 512, 768]  # batches of 256
    assert all(e.proxy_mean == 5.0 and e.true_mean == -5.0 and e.episodes == 6 for e in result.evals)
    assert result.history[-1].recent_true_return == -5.0


def test_discrete_actions_on_a_batched_env():
    result = train_ppo(make_batched(TOY, 4, discrete=True), fast_config(total_steps=256))
    np.testing.assert_array_equal(result.episodes.true_return, -5.0)


def test_same_seed_same_numbers():
    config = fast_config(total_steps=1536, num_envs=2, n_steps=256, minibatch_size=128)
    first, again = train_ppo("CartPole-v1", config), train_ppo("CartPole-v1", config)
    other = train_ppo("CartPole-v1", fast_config(total_steps=1536, num_envs=2, n_steps=256, minibatch_size=128,
                                                 seed=1))
    np.testing.assert_array_equal(first.episodes.proxy_return, again.episodes.proxy_return)
    assert [h.policy_loss for h in first.history] == [h.policy_loss for h in again.history]
    for a, b in zip(first.policy.state_dict().values(), again.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not np.array_equal(first.episodes.proxy_return[:20], other.episodes.proxy_return[:20])


def test_next_step_autoreset_vector_env_counts_episodes_right():
    # gym.make_vec autoresets on the step *after* an episode ends; that step is no transition.
    envs = gym.make_vec("CartPole-v1", 3)
    result = train_ppo(envs, fast_config(num_envs=3, total_steps=900, n_steps=100, eval_at=(900,),
                                         eval_episodes=2))
    np.testing.assert_array_equal(result.episodes.proxy_return, result.episodes.length)  # +1 a step
    assert np.isnan(result.episodes.true_return).all()  # CartPole has no true reward
    assert result.evals[0].episodes == 2


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_true_returns_through_gymnasium_vector_envs(mode):
    # SyncVectorEnv puts the finished step's info in info["final_info"] (same-step autoreset), or
    # resets on a step whose info has no true reward (next-step autoreset).
    envs = gym.make_vec(TOY, 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode})
    result = train_ppo(envs, fast_config(num_envs=2, total_steps=256))
    assert len(result.episodes) == 2 * (128 // 5 if mode == AutoresetMode.SAME_STEP else 128 // 6)
    np.testing.assert_array_equal(result.episodes.true_return, -5.0)
    np.testing.assert_array_equal(result.episodes.length, 5)


def test_box_actions_on_pendulum():
    config = fast_config(total_steps=600, num_envs=2, n_steps=100, minibatch_size=50, eval_at=(600,),
                         eval_episodes=2)
    with pytest.warns(UserWarning, match="1 copies"):  # one Env is one copy, whatever the config says
        result = train_ppo(gym.make("Pendulum-v1"), config, eval_env="Pendulum-v1")
    assert result.config.num_envs == 1 and result.steps == 600
    assert len(result.episodes) == 3 and np.isfinite(result.episodes.proxy_return).all()
    assert np.isfinite([h.value_loss + h.policy_loss + h.entropy for h in result.history]).all()
    assert np.isfinite(result.evals[0].proxy_mean)


def test_callback_can_stop_training_and_eval_needs_an_id():
    seen = []
    result = train_ppo(TOY, fast_config(), callback=lambda stats: seen.append(stats.step) or len(seen) < 2)
    assert seen == [256, 512] and result.stopped_early and result.steps == 512
    with pytest.raises(ValueError, match="eval_env"):
        train_ppo(make_batched(TOY, 4), fast_config(eval_at=(256,)))


def test_evaluate_takes_a_policy_or_a_function():
    env = gym.make(TOY)
    policy = ActorCritic(env.observation_space, env.action_space)
    result = evaluate(policy, TOY, episodes=8, seed=3, deterministic=False)
    assert (result.proxy_mean, result.true_mean, result.proxy_se, result.episodes) == (5.0, -5.0, 0.0, 8)
    short = evaluate(lambda obs: np.zeros((len(obs), 2), np.float32), TOY, episodes=3, horizon=2)
    assert short.true_mean == -2.0


def test_shared_trunk_and_depth_zero_fused_acting_matches_forward():
    env = gym.make(TOY)
    for shared, depth in ((False, 2), (True, 2), (False, 0), (True, 3)):
        policy = ActorCritic(env.observation_space, gym.spaces.Discrete(4), shared=shared, depth=depth, width=8)
        x = torch.rand(5, 2)
        with torch.no_grad():
            for a, b in zip(policy(x), policy.fused()(x), strict=True):
                torch.testing.assert_close(a, b)


def test_traffic_merge_trains_on_the_batched_env():
    config = fast_config(total_steps=2 * 8 * 64, num_envs=8, eval_at=(1024,), eval_episodes=4)
    result = train_ppo(TRAFFIC, config, env_kwargs={"horizon": 40})
    assert len(result.episodes) == 8 * (128 // 40)
    assert np.isfinite(result.episodes.true_return).all()
    assert not np.allclose(result.episodes.proxy_return, result.episodes.true_return)
    assert np.isfinite(result.evals[0].true_mean)


def test_learns_cartpole():  # about 2 s
    config = PPOConfig(total_steps=30_000, num_envs=8, n_steps=128, minibatch_size=256, epochs=4, lr=1e-3)
    result = train_ppo("CartPole-v1", config)
    assert result.history[-1].recent_proxy_return > 150  # a uniformly random policy: about 22; seeds 0-3: 210-222


def test_sb3_adapter_records_true_returns():
    from stable_baselines3 import PPO

    from goodhartlab.rl.agents.sb3 import TrueReturnRecorder, make_sb3_vec_env, sb3_ppo_kwargs

    config = fast_config(total_steps=256, num_envs=2, n_steps=64)
    env = make_sb3_vec_env(TOY, config.num_envs, seed=0, horizon=4)
    model = PPO("MlpPolicy", env, **sb3_ppo_kwargs(config))
    recorder = TrueReturnRecorder(window=10)
    with torch_threads(1):
        model.learn(config.total_steps, callback=recorder.callback())
    assert len(recorder.true_returns) == 256 // 4
    assert set(recorder.proxy_returns) == {4.0} and set(recorder.true_returns) == {-4.0}
    assert [row[0] for row in recorder.history] == [128, 256] and recorder.recent() == (4.0, -4.0)
    ours = ActorCritic(env.observation_space, env.action_space)
    assert sum(p.numel() for p in model.policy.parameters()) == sum(p.numel() for p in ours.parameters())


def test_target_kl_ends_an_updates_epochs_at_the_first_minibatch_past_it():
    config = fast_config(total_steps=512, num_envs=2, n_steps=256, minibatch_size=128, epochs=4)
    free = train_ppo("CartPole-v1", config)
    held = train_ppo("CartPole-v1", replace(config, target_kl=1e-12))
    # the first minibatch of an update is scored before any step (KL 0); every later one has moved, so a tiny target
    # ends each update after its second minibatch, and the recorded mean stays below the full update's
    assert 0 < held.history[0].approx_kl < free.history[0].approx_kl
    assert approximate_kl(torch.zeros(5)).item() == 0.0
    assert approximate_kl(torch.tensor([0.5, -0.5])).item() == pytest.approx(np.cosh(0.5) - 1)
    assert past_kl_target(0.031, 0.02) and not past_kl_target(0.029, 0.02) and not past_kl_target(9.0, None)
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="target_kl"):
            fast_config(target_kl=bad)
