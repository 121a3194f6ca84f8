"""Registers every goodhartlab environment with Gymnasium as `goodhartlab/<Name>-v0`.

Each environment module lists what it offers in `ENVIRONMENTS`: registered name -> (class,
constructor keyword arguments). One class can back several registered names (a level, or one
proxy/true pair of a composite reward).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

NAMESPACE = "goodhartlab"
ENV_MODULES = (
    "goodhartlab.rl.envs.gridworlds",
    "goodhartlab.rl.envs.traffic",
    "goodhartlab.rl.envs.epidemic",
    "goodhartlab.rl.envs.glucose",
    "goodhartlab.rl.envs.atari",  # empty unless ale-py (the `atari` extra) is installed
)


@dataclass(frozen=True)
class EnvEntry:
    id: str
    misspecification: str
    proxy_reward: str
    true_reward: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "misspecification": self.misspecification, "proxy_reward": self.proxy_reward,
                "true_reward": self.true_reward, "description": self.description}


def _entries() -> dict[str, tuple[Any, dict[str, Any]]]:
    entries: dict[str, tuple[Any, dict[str, Any]]] = {}
    for module_name in ENV_MODULES:
        module = importlib.import_module(module_name)
        for name, (env_class, kwargs) in module.ENVIRONMENTS.items():
            entries[f"{NAMESPACE}/{name}-v0"] = (env_class, kwargs)
    return entries


def register_all() -> None:
    """Register every environment (idempotent)."""
    for env_id, (env_class, kwargs) in _entries().items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=env_class, kwargs=dict(kwargs), disable_env_checker=True)


def list_environments() -> list[EnvEntry]:
    """What `goodhartlab envs` prints: each id with its misspecification and rewards in words."""
    register_all()
    listed = []
    for env_id, (_env_class, _kwargs) in _entries().items():
        env = gym.make(env_id)
        metadata = env.unwrapped.metadata
        listed.append(EnvEntry(env_id, metadata["misspecification"], metadata["proxy_reward"],
                               metadata["true_reward"], metadata.get("description", "")))
        env.close()
    return listed


def check_environment(env_id: str, env_kwargs: dict[str, Any] | None = None, *,
                      needs_reward_parameters: bool = False) -> None:
    """Fail before training when `env_id` is not registered, rejects `env_kwargs`, or lacks the reward
    parameters a current-RF learner reads. The errors name the field ('env', 'env_kwargs')."""
    from goodhartlab.config import ConfigError, ImportRefused, check_import_allowed

    register_all()
    if ":" in env_id:  # Gymnasium imports the module a 'module:Env-v0' id names
        try:
            check_import_allowed(env_id, "environment")
        except ImportRefused as error:
            raise ConfigError("env", str(error), names_field=True) from None
    try:
        gym.spec(env_id)
    except gym.error.Error:
        raise ConfigError("env", f"{env_id!r} is not a registered environment; `goodhartlab envs` lists them") from None
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except (TypeError, ValueError) as error:
        raise ConfigError("env_kwargs", f"are not accepted by {env_id}: {error}") from None
    metadata = env.unwrapped.metadata
    env.close()
    if needs_reward_parameters and "initial_reward_parameters" not in metadata:
        raise ConfigError("agent.learn_from", f"'current_rf' needs an environment with reward parameters; {env_id} "
                          "has none")
