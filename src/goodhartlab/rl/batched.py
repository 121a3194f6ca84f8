"""One implementation per environment, stepping B copies at once in NumPy.

Each environment is written once, as a `BatchedCore` whose state arrays have a leading batch axis.
`SingleEnv` shows one copy as an ordinary `gymnasium.Env` (what `check_env`, Stable-Baselines3 and
users expect); `BatchedVectorEnv` shows all copies as a `gymnasium.vector.VectorEnv`, which is what
makes our agents and sweeps fast: a step of 1,024 gridworlds is one NumPy call, not 1,024.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from goodhartlab.rl.contract import dual_reward_info


@dataclass
class StepBatch:
    """What one step of every copy produced. `terms` are the proxy's named components, if composite."""

    proxy: np.ndarray
    true: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    terms: dict[str, np.ndarray] | None = None
    extra: dict[str, np.ndarray] | None = None


class BatchedCore(ABC):
    """The dynamics and both rewards of `num_envs` copies of one environment.

    Subclasses set `observation_space` and `action_space` (for one copy) and `metadata`
    (misspecification, proxy and true reward in words), and draw every random number from the
    generator they are given, so a seed fixes a whole batch. As in Gymnasium, `metadata` is a class
    attribute that an instance replaces in `__init__` where its arguments change what it describes
    (say, which proxy/true pair it computes); everything reads it from the instance.
    """

    metadata: dict[str, Any] = {}  # noqa: RUF012  (gymnasium's convention: a class default, replaced per instance)
    observation_space: gym.Space[Any]
    action_space: gym.Space[Any]

    def __init__(self, num_envs: int) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs

    @abstractmethod
    def reset_copies(self, mask: np.ndarray, rng: np.random.Generator) -> None:
        """Start a new episode in the copies where `mask` is true."""

    @abstractmethod
    def observe(self) -> np.ndarray:
        """Observations of all copies, shape (num_envs, *observation_space.shape)."""

    @abstractmethod
    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepBatch:
        """Advance every copy by one step; `actions` has shape (num_envs, *action_space.shape)."""

    render_rgb: Callable[..., np.ndarray] | None = None
    """Cores that draw themselves define `render_rgb(index)`, an RGB picture of one copy for humans."""

    def episode_info(self, index: int) -> dict[str, Any]:
        """Extra per-copy facts worth logging at any step (say, whether a switch was tampered with)."""
        return {}


class SingleEnv(gym.Env[np.ndarray, Any]):
    """One copy of a `BatchedCore` as a Gymnasium environment honouring the dual-reward contract."""

    core_class: ClassVar[type[BatchedCore]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "core_class" in cls.__dict__:
            modes = ["rgb_array"] if cls.core_class.render_rgb is not None else []
            cls.metadata = {**cls.core_class.metadata, "render_modes": modes, "render_fps": 8}

    def __init__(self, render_mode: str | None = None, **config: Any) -> None:
        self.core = self.core_class(1, **config)
        self.metadata = {**type(self).metadata, **self.core.metadata}  # the instance's (its pair, its variant)
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        # Gymnasium (and SB3's make_vec_env, which asks for rgb_array) only warn about a mode an environment
        # cannot draw; such environments render nothing. Anything else is a typo.
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.render_mode = render_mode
        self._started = False
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.core.reset_copies(np.ones(1, dtype=bool), self.np_random)
        self._started = True
        self._ended = False
        return self.core.observe()[0], self.core.episode_info(0)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started or self._ended:
            raise RuntimeError("call reset() before step()" if not self._started else
                               "the episode has ended (terminated or truncated); call reset() before step()")
        out = self.core.step(np.asarray(action)[None], self.np_random)
        self._ended = bool(out.terminated[0] or out.truncated[0])
        terms = None if out.terms is None else {k: float(v[0]) for k, v in out.terms.items()}
        extra = {} if out.extra is None else {k: v[0].item() for k, v in out.extra.items()}
        info = dual_reward_info(float(out.true[0]), terms, **{**self.core.episode_info(0), **extra})
        return (self.core.observe()[0], float(out.proxy[0]), bool(out.terminated[0]), bool(out.truncated[0]),
                info)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self.core.render_rgb is None:
            return None
        return self.core.render_rgb(0)


def single_env(core_class: type[BatchedCore], name: str) -> type[SingleEnv]:
    """The Gymnasium class of one copy of `core_class`, named for users and registries; its docstring
    is the core's, followed by the proxy and true reward where the class (not its arguments) fixes them."""
    meta = core_class.metadata
    doc = core_class.__doc__ or ""
    if "proxy_reward" in meta:
        doc += f"\n\nProxy: {meta['proxy_reward']}.\nTrue: {meta.get('true_reward')}."
    return type(name, (SingleEnv,), {"core_class": core_class, "__doc__": doc, "__module__": core_class.__module__})


class BatchedVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """All copies of a `BatchedCore` as a vector environment with same-step autoreset.

    When a copy's episode ends, the returned observation is already the first one of its next
    episode; the last observation of the finished episode is in `info["final_obs"]`, and
    `info["true_reward"]` (an array) is the true reward of the step just taken.
    """

    def __init__(self, core: BatchedCore) -> None:
        self.core = core
        self.num_envs = core.num_envs
        self.metadata = {**core.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.single_observation_space = core.observation_space
        self.single_action_space = core.action_space
        self.observation_space = batch_space(core.observation_space, core.num_envs)
        self.action_space = batch_space(core.action_space, core.num_envs)
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self.action_space.seed(seed)
        self.core.reset_copies(np.ones(self.num_envs, dtype=bool), self._rng)
        return self.core.observe(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self.core.step(np.asarray(actions), self._rng)
        info: dict[str, Any] = {"true_reward": out.true}
        if out.terms is not None:
            info["reward_terms"] = out.terms
        if out.extra is not None:
            info.update(out.extra)
        done = out.terminated | out.truncated
        if done.any():
            info["final_obs"] = self.core.observe().copy()
            info["_final_obs"] = done
            self.core.reset_copies(done, self._rng)
        return self.core.observe(), out.proxy, out.terminated, out.truncated, info


def make_batched(env_id: str, num_envs: int, **config: Any) -> BatchedVectorEnv:
    """`num_envs` copies of a registered goodhartlab environment, stepped together."""
    spec = gym.spec(env_id)
    entry = spec.entry_point
    env_class = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    core_class = getattr(env_class, "core_class", None)
    if core_class is None:
        raise ValueError(f"{env_id} has no batched core; wrap it with gymnasium.vector.SyncVectorEnv instead")
    return BatchedVectorEnv(core_class(num_envs, **{**spec.kwargs, **config}))
