"""The dual-reward contract: `reward` is the proxy, `info["true_reward"]` the true reward, every step.

Every goodhartlab environment (and any user environment that wants our agents, detectors and sweeps)
honours it. Environments name their misspecification in `metadata`, so a sweep or a report can say
what kind of reward hacking it is looking at without knowing the environment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

MISSPECIFICATIONS = ("misweighting", "ontological", "scope", "tampering", "none")
"""Pan et al.'s three kinds, plus tampering (Everitt et al.) and none (proxy = true: a control)."""

REQUIRED_METADATA = ("misspecification", "proxy_reward", "true_reward")


class ContractError(AssertionError):
    """An environment breaks the dual-reward contract; the message says where and how."""


def dual_reward_info(true_reward: float, terms: Mapping[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    """The `info` dict of one step: the true reward, the proxy's named terms (if composite), extras."""
    info: dict[str, Any] = {"true_reward": float(true_reward)}
    if terms is not None:
        info["reward_terms"] = {name: float(value) for name, value in terms.items()}
    info.update(extra)
    return info


@dataclass
class ContractReport:
    env_id: str
    steps: int
    episodes: int
    proxy_return: float
    true_return: float
    proxy_equals_true: bool
    warnings: list[str] = field(default_factory=list)


def _check_metadata(env: gym.Env[Any, Any], name: str) -> None:
    metadata = env.unwrapped.metadata
    for key in REQUIRED_METADATA:
        if key not in metadata:
            raise ContractError(f"{name}: metadata has no {key!r}; add it to the environment's `metadata`")
    kind = metadata["misspecification"]
    if kind not in MISSPECIFICATIONS:
        raise ContractError(f"{name}: metadata['misspecification'] = {kind!r}; use one of {MISSPECIFICATIONS}")
    for key in ("proxy_reward", "true_reward"):
        if not isinstance(metadata[key], str) or not metadata[key].strip():
            raise ContractError(f"{name}: metadata[{key!r}] must describe the reward in words")


def _check_step(name: str, step: int, reward: Any, info: Any) -> float:
    where = f"{name}, step {step}"
    if not isinstance(info, dict) or "true_reward" not in info:
        raise ContractError(f"{where}: info has no 'true_reward'; return dual_reward_info(true_reward, terms)")
    true = info["true_reward"]
    if not isinstance(true, (float, int, np.floating, np.integer)) or isinstance(true, bool):
        raise ContractError(f"{where}: info['true_reward'] is {type(true).__name__}; it must be a float")
    if not math.isfinite(float(true)) or not math.isfinite(float(reward)):
        raise ContractError(f"{where}: proxy {reward!r} / true {true!r} is not finite")
    terms = info.get("reward_terms")
    if terms is not None:
        if not isinstance(terms, dict) or not terms:
            raise ContractError(f"{where}: info['reward_terms'] must be a non-empty dict of name -> float")
        for term, value in terms.items():
            if not isinstance(term, str) or not math.isfinite(float(value)):
                raise ContractError(f"{where}: reward term {term!r} = {value!r} is not a named finite float")
    return float(true)


def check_contract(env: gym.Env[Any, Any], *, steps: int = 300, seed: int = 0,
                   run_gymnasium_checker: bool = True) -> ContractReport:
    """Check that `env` honours the dual-reward contract (and Gymnasium's API, via `check_env`).

    Random actions for `steps` steps, then the same again with the same seed: both the proxy and
    the true reward must repeat exactly, so that the same seed gives the same numbers.
    """
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if run_gymnasium_checker:
        from gymnasium.utils.env_checker import check_env

        check_env(env.unwrapped, skip_render_check=True)
    _check_metadata(env, name)

    def rollout() -> tuple[list[float], list[float], int]:
        env.action_space.seed(seed)
        env.reset(seed=seed)
        proxies: list[float] = []
        trues: list[float] = []
        episodes = 0
        for step in range(steps):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            trues.append(_check_step(name, step, reward, info))
            proxies.append(float(reward))
            if terminated or truncated:
                episodes += 1
                env.reset()
        return proxies, trues, episodes

    proxies, trues, episodes = rollout()
    again_proxies, again_trues, _ = rollout()
    if proxies != again_proxies or trues != again_trues:
        first = next(i for i, pair in enumerate(zip(proxies, again_proxies, trues, again_trues, strict=True))
                     if pair[0] != pair[1] or pair[2] != pair[3])
        raise ContractError(f"{name}: two rollouts with seed {seed} differ from step {first}; "
                            "draw all randomness from self.np_random")
    equal = bool(np.allclose(proxies, trues))
    report = ContractReport(name, steps, episodes, float(np.sum(proxies)), float(np.sum(trues)), equal)
    kind = env.unwrapped.metadata["misspecification"]
    if equal and kind != "none":
        report.warnings.append(f"proxy equalled true reward on all {steps} random steps although the "
                               f"environment declares {kind!r} misspecification")
    if not equal and kind == "none":
        raise ContractError(f"{name}: declares misspecification 'none' but proxy and true reward differ")
    return report
