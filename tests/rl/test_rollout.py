"""Per-episode proxy and true returns, counted once for every loop: hand-computed cases in both autoreset modes."""

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from goodhartlab.rl import BatchedCore, SingleEnv, StepBatch, make_batched
from goodhartlab.rl.rollout import FINISHED_EPISODES, EpisodeReturns, RecordDualReturns, evaluate

RAMP = "goodhartlab-test/Ramp-v0"


class RampCore(BatchedCore):
    """Copy b's k-th episode (k = 0, 1, ...) lasts `horizon + k + stagger * b` steps; step t of an episode
    pays t as proxy and -t/2 as true reward, and raises the flag `late` from t = 3 on. So an episode of
    length L returns L(L+1)/2 and -L(L+1)/4, and `late` held on some step of it iff L >= 3."""

    metadata: ClassVar[dict[str, Any]] = {"misspecification": "misweighting", "proxy_reward": "t",
                                          "true_reward": "-t/2"}

    def __init__(self, num_envs: int, horizon: int = 2, stagger: int = 0) -> None:
        super().__init__(num_envs)
        self.horizon = horizon + stagger * np.arange(num_envs)
        self.observation_space = gym.spaces.Box(0.0, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.episode = np.full(num_envs, -1, dtype=np.int64)

    def reset_copies(self, mask: np.ndarray, rng: np.random.Generator) -> None:
        self.t[mask] = 0
        self.episode[mask] += 1

    def observe(self) -> np.ndarray:
        return self.t[:, None].astype(np.float32)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepBatch:
        self.t += 1
        ended = self.t >= self.horizon + self.episode
        return StepBatch(self.t.astype(np.float64), -self.t / 2, ended, np.zeros(self.num_envs, dtype=bool),
                         extra={"late": self.t >= 3})


class RampEnv(SingleEnv):
    core_class = RampCore


if RAMP not in gym.registry:
    gym.register(RAMP, entry_point=RampEnv, disable_env_checker=True)


def expected_episodes(horizon: int, steps: int, next_step: bool) -> list[tuple[float, float, int, bool]]:
    """(proxy return, true return, length, late) of each episode a copy finishes within `steps` steps."""
    out, end = [], 0
    for k in range(steps):
        length = horizon + k
        end += length + (1 if next_step and k else 0)  # NEXT_STEP: a reset step before every later episode
        if end > steps:
            return out
        out.append((length * (length + 1) / 2, -length * (length + 1) / 4, length, length >= 3))
    return out


def recorded_episodes(envs: RecordDualReturns, steps: int) -> tuple[list[list[tuple[Any, ...]]], np.ndarray]:
    """Every episode each copy finished in `steps` steps, and `transition` per step and copy."""
    envs.reset(seed=0)
    per_copy: list[list[tuple[Any, ...]]] = [[] for _ in range(envs.num_envs)]
    transitions = np.zeros((steps, envs.num_envs), dtype=bool)
    for t in range(steps):
        _, _, terminated, truncated, info = envs.step(np.zeros(envs.num_envs, dtype=np.int64))
        transitions[t] = envs.transition
        ended = info.get(FINISHED_EPISODES)
        assert (ended is not None) == bool(np.any(terminated | truncated))
        if ended is not None:
            for j, copy in enumerate(ended.index):
                per_copy[copy].append((float(ended.proxy_return[j]), float(ended.true_return[j]),
                                       int(ended.length[j]), bool(ended.flags["late"][j])))
    return per_copy, transitions


def test_episode_returns_by_hand_same_step() -> None:
    returns = EpisodeReturns(2, AutoresetMode.SAME_STEP)
    done = [[False, False], [True, False], [False, True], [True, True]]
    proxy, true = [[1, 10], [1, 10], [5, 10], [1, 1]], [[2, 20], [2, 20], [7, 20], [1, 1]]
    out = [returns.step(np.array(p, float), np.array(t, float), np.array(d))
           for p, t, d in zip(proxy, true, done, strict=True)]
    assert out[0] is None
    ended = [(list(e.index), list(e.proxy_return), list(e.true_return), list(e.length))
             for e in out[1:] if e is not None]
    assert ended == [([0], [2], [4], [2]), ([1], [30], [60], [3]), ([0, 1], [6, 1], [8, 1], [2, 1])]
    assert returns.transition.all()


def test_episode_returns_by_hand_next_step() -> None:
    # The step after an episode ends only resets the copy: whatever it reports counts towards no episode.
    returns = EpisodeReturns(2, AutoresetMode.NEXT_STEP, flags=("tampering",))
    done = [[False, False], [True, False], [False, True], [True, False]]
    proxy, true = [[1, 10], [1, 10], [5, 10], [1, 99]], [[2, 20], [2, 20], [7, 20], [1, np.nan]]
    tampering = [[False, False], [False, True], [True, False], [False, True]]
    transitions, out = [], []
    for p, t, d, f in zip(proxy, true, done, tampering, strict=True):
        out.append(returns.step(np.array(p, float), np.array(t), np.array(d), {"tampering": np.array(f)}))
        transitions.append(list(returns.transition))
    assert transitions == [[True, True], [True, True], [False, True], [True, False]]
    assert out[0] is None
    ended = [(list(e.index), list(e.proxy_return), list(e.true_return), list(e.length), list(e.flags["tampering"]))
             for e in out[1:] if e is not None]
    assert ended == [([0], [2], [4], [2], [False]), ([1], [30], [60], [3], [True]), ([0], [1], [1], [1], [False])]


@pytest.mark.parametrize("vectorization", ["batched", AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_record_dual_returns_through_each_vector_env(vectorization: Any) -> None:
    steps, horizons = 14, [2, 3]
    if vectorization == "batched":  # all copies of one core share the horizon
        horizons = [3, 3]
        envs = RecordDualReturns(make_batched(RAMP, 2, horizon=3), flags=("late",))
    else:  # SyncVectorEnv: the true reward and flags come masked, or in final_info under SAME_STEP
        envs = RecordDualReturns(SyncVectorEnv([lambda h=h: gym.make(RAMP, horizon=h) for h in horizons],
                                               autoreset_mode=vectorization), flags=("late",))
    next_step = vectorization == AutoresetMode.NEXT_STEP
    per_copy, transitions = recorded_episodes(envs, steps)
    for copy, horizon in enumerate(horizons):
        assert per_copy[copy] == expected_episodes(horizon, steps, next_step)
    if next_step:  # copy 0 (horizon 2) ends episodes on steps 2, 6 and 11; the step after each is a reset
        np.testing.assert_array_equal(np.flatnonzero(~transitions[:, 0]) + 1, [3, 7, 12])
    else:
        assert transitions.all()


def test_evaluate_counts_each_copy_first_episode_only() -> None:
    # Copies' first episodes last 2, 4 and 6 steps; copy 0 finishes a second one (3 steps) before copy 2's first.
    result = evaluate(lambda obs: np.zeros(len(obs), dtype=np.int64), RAMP, episodes=3, horizon=2, stagger=2)
    assert result.episodes == 3
    assert result.proxy_mean == pytest.approx((3 + 10 + 21) / 3)
    assert result.true_mean == pytest.approx(-(3 + 10 + 21) / 6)
