"""Rollouts on vector environments: building them, recording proxy and true returns per episode, evaluating.

Every loop that steps copies of an environment needs the same accounting: each copy's proxy return,
true return and length so far, handed over when its episode ends, with Gymnasium's two autoreset
modes told apart (under NEXT_STEP the step after an episode ends only resets the copy). It is
written once, in `EpisodeReturns`; `RecordDualReturns` wraps a Gymnasium vector environment with it
(as Gymnasium's `RecordEpisodeStatistics` does for one reward) for PPO, the tabular learners and
`evaluate`, and SB3's `TrueReturnRecorder` feeds it from its callback.

No torch here: the tabular learners and anything that only steps environments stay free of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv, VectorWrapper

from goodhartlab.rl.batched import make_batched

FINISHED_EPISODES = "finished_episodes"
"""The info key under which `RecordDualReturns` reports the episodes that ended on a step."""

# ------------------------------------------------------------------------------------------ environments


def _has_core(env_id: str) -> bool:
    entry = gym.spec(env_id).entry_point
    env_class = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    return getattr(env_class, "core_class", None) is not None


def make_vector_env(env_id: str, num_envs: int, **env_kwargs: Any) -> VectorEnv:
    """`num_envs` copies of a registered environment: batched when it has a `BatchedCore` (one NumPy
    call per step), otherwise Gymnasium's SyncVectorEnv with same-step autoreset."""
    if _has_core(env_id):
        return make_batched(env_id, num_envs, **env_kwargs)
    return SyncVectorEnv([lambda: gym.make(env_id, **env_kwargs) for _ in range(num_envs)],
                         autoreset_mode=AutoresetMode.SAME_STEP)


def as_vector_env(env_or_id: str | gym.Env[Any, Any] | VectorEnv, num_envs: int, **env_kwargs: Any) -> VectorEnv:
    """A registered id as `make_vector_env` builds it, a VectorEnv as given, or a single Env as one copy."""
    if isinstance(env_or_id, str):
        return make_vector_env(env_or_id, num_envs, **env_kwargs)
    if isinstance(env_or_id, VectorEnv):
        return env_or_id
    if isinstance(env_or_id, gym.Env):
        env = env_or_id
        return SyncVectorEnv([lambda: env], autoreset_mode=AutoresetMode.SAME_STEP)
    raise TypeError(f"expected an env id, a gymnasium Env or VectorEnv, got {type(env_or_id).__name__}")


def _autoreset_mode(envs: VectorEnv) -> AutoresetMode:
    """How `envs` starts a copy's next episode (NEXT_STEP where its metadata does not say, as Gymnasium assumes)."""
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    mode = mode if isinstance(mode, AutoresetMode) else AutoresetMode(mode)
    if mode == AutoresetMode.DISABLED:
        raise ValueError("vector envs with autoreset disabled are not supported; use SAME_STEP or NEXT_STEP")
    return mode


def _step_values(info: Mapping[str, Any], key: str, num_envs: int, missing: Any, dtype: type) -> np.ndarray:
    """One value per copy of `info[key]` from a vector env's step info; `missing` where a copy gave none.

    BatchedVectorEnv puts a plain array in info[key]; SyncVectorEnv masks it with info["_" + key],
    and under same-step autoreset moves the info of a copy whose episode just ended to
    info["final_info"].
    """
    if "_" + key not in info and "final_info" not in info and key in info:
        return np.asarray(info[key], dtype=dtype)  # BatchedVectorEnv: the fast path
    values: np.ndarray = np.full(num_envs, missing, dtype=dtype)
    for source in (info, info.get("final_info")):
        if isinstance(source, Mapping) and key in source:
            mask = source.get("_" + key)
            given: np.ndarray = np.asarray(source[key], dtype=dtype)
            if mask is None:
                values[:] = given
            else:
                values[mask] = given[mask]
    return values


# -------------------------------------------------------------------------------------- episode returns


@dataclass(frozen=True)
class FinishedEpisodes:
    """The episodes that ended on one step: which copies, and each one's returns and length."""

    index: np.ndarray
    proxy_return: np.ndarray
    true_return: np.ndarray
    """NaN for environments that give no true reward."""
    length: np.ndarray
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    """Per recorded boolean step flag: whether it held on any step of the episode."""

    def __len__(self) -> int:
        return int(self.index.size)


class EpisodeReturns:
    """Each copy's proxy return, true return and length in its current episode, handed over when it ends.

    `step` takes one step of all copies. Under NEXT_STEP autoreset the step after a copy's episode
    ended is a reset, not a transition: it counts towards no episode, and `transition` is False
    for that copy until the next step. `flags` names boolean step flags (say `tampering`) to
    report per episode as "held on any step".
    """

    def __init__(self, num_envs: int, mode: AutoresetMode = AutoresetMode.SAME_STEP, flags: Sequence[str] = ()
                 ) -> None:
        self.num_envs = num_envs
        self.same_step = mode == AutoresetMode.SAME_STEP
        self.flag_names = tuple(flags)
        self.reset()

    def reset(self, copies: np.ndarray | None = None) -> None:
        """Forget the episodes in progress: of every copy, or of those where the mask `copies` is true."""
        n = self.num_envs
        if copies is None:
            self.proxy, self.true, self.length = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
            self.flags = {name: np.zeros(n, dtype=bool) for name in self.flag_names}
            self.transition, self._ended = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
            return
        self.proxy[copies], self.true[copies], self.length[copies] = 0.0, 0.0, 0
        for held in self.flags.values():
            held[copies] = False
        self._ended[copies] = False

    def step(self, proxy: np.ndarray, true: np.ndarray, done: np.ndarray,
             flags: Mapping[str, np.ndarray] | None = None) -> FinishedEpisodes | None:
        """Add one step's rewards (and flags) of every copy; the episodes that ended on it, if any."""
        if self.same_step:
            self.length += 1
        else:
            self.transition = ~self._ended
            proxy = np.where(self.transition, proxy, 0.0)
            true = np.where(self.transition, true, 0.0)
            self.length += self.transition
            self._ended = np.array(done, dtype=bool)
        self.proxy += proxy
        self.true += true
        for name, held in self.flags.items():
            assert flags is not None, f"flag {name!r} was asked for but not given"
            held |= flags[name] if self.same_step else flags[name] & self.transition
        if not done.any():
            return None
        ended = np.flatnonzero(done)
        finished = FinishedEpisodes(ended, self.proxy[ended], self.true[ended], self.length[ended],
                                    {name: held[ended] for name, held in self.flags.items()})
        self.proxy[ended], self.true[ended], self.length[ended] = 0.0, 0.0, 0
        for held in self.flags.values():
            held[ended] = False
        return finished


class RecordDualReturns(VectorWrapper):
    """Reports every finished episode's proxy return, true return and length in the step's info.

    On a step where episodes end, `info[FINISHED_EPISODES]` is a `FinishedEpisodes`; there is no
    such key on other steps. The true reward is read from `info["true_reward"]` in either vector
    env's form (NaN where an environment gives none). `flags` names boolean entries of the info to
    report per episode as "held on any step" (a step that reports none counts as False).
    `transition` tells which copies' last step was a transition of an episode (False only for a
    NEXT_STEP autoreset step, which a learner must not train on). The environment's own outputs
    pass through unchanged.
    """

    def __init__(self, env: VectorEnv, flags: Sequence[str] = ()) -> None:
        super().__init__(env)
        self.autoreset_mode = _autoreset_mode(env)
        self.returns = EpisodeReturns(env.num_envs, self.autoreset_mode, flags)

    @property
    def transition(self) -> np.ndarray:
        return self.returns.transition

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        out = self.env.reset(seed=seed, options=options)
        self.returns.reset(None if options is None else options.get("reset_mask"))
        return out

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        n = self.num_envs
        flags = {name: _step_values(info, name, n, False, bool) for name in self.returns.flag_names}
        true = _step_values(info, "true_reward", n, np.nan, np.float64)
        finished = self.returns.step(np.asarray(reward, dtype=np.float64), true, np.logical_or(terminated, truncated),
                                     flags)
        if finished is not None:
            info[FINISHED_EPISODES] = finished
        return obs, reward, terminated, truncated, info


# ------------------------------------------------------------------------------------------- evaluation


@runtime_checkable
class SeededPolicy(Protocol):
    """A policy that makes its own action function for an evaluation (say PPO's `ActorCritic`)."""

    def as_function(self, deterministic: bool, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        """Actions for a batch of observations: the mode if deterministic, else draws seeded by `seed`."""
        ...


@dataclass(frozen=True)
class EvalResult:
    """Mean proxy and true return over `episodes` evaluation episodes, with standard errors."""

    proxy_mean: float
    proxy_se: float
    true_mean: float
    true_se: float
    episodes: int
    step: int | None = None
    """The checkpoint (a value of `PPOConfig.eval_at`) this evaluates; None for a standalone evaluation."""
    trained_steps: int | None = None
    """Environment steps actually trained: the first whole rollout at or past `step` (less than one
    rollout, num_envs * n_steps, beyond it)."""


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    se = float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(np.mean(values)), se


def evaluate(policy: SeededPolicy | Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int = 32,
             seed: int = 0, deterministic: bool = True, **env_kwargs: Any) -> EvalResult:
    """Run `episodes` episodes, one per parallel copy, and average their proxy and true returns.

    Counting each copy's first episode only keeps the mean unbiased (letting copies run on would
    over-count short episodes). `policy` is a `SeededPolicy` (PPO's `ActorCritic`) or any function
    from a batch of observations to a batch of actions (an SB3 model: `lambda obs: model.predict(obs)[0]`).
    The true return is NaN for environments without `info["true_reward"]`.
    """
    envs = RecordDualReturns(make_vector_env(env_id, episodes, **env_kwargs))
    actions_for = policy.as_function(deterministic, seed) if isinstance(policy, SeededPolicy) else policy
    proxy, true = np.zeros(episodes), np.zeros(episodes)
    first = np.ones(episodes, dtype=bool)  # copies still in their first episode
    obs, _ = envs.reset(seed=seed)
    while first.any():
        obs, _, _, _, info = envs.step(actions_for(obs))
        finished: FinishedEpisodes | None = info.get(FINISHED_EPISODES)
        if finished is not None:
            counted = first[finished.index]
            copies = finished.index[counted]
            proxy[copies], true[copies] = finished.proxy_return[counted], finished.true_return[counted]
            first[copies] = False
    envs.close()
    return EvalResult(*_mean_se(proxy), *_mean_se(true), episodes=episodes)
