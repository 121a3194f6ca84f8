"""The classic-RL study kinds: training curves of tabular learners and capability sweeps of PPO.

Each is a config dataclass and a function (config, seed) -> RunResult, so `goodhartlab run SPEC.yaml`
and the demo run them through the same resumable runner as every other study. The learner's own
settings are nested under `agent:` (a `QLearningConfig`, `ApprovalConfig` or `PPOConfig`) and are
never overwritten: what the run's seed or the swept axis sets is refused there, with the reason. A
capability sweep's curve has the capability knob as its pressure; the report then marks the peak of
the true reward, the onset of its fall and whether the fall is a sharp phase transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from goodhartlab.config import ConfigError, config_dict, non_empty
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.rl.agents.ppo import PPOConfig
from goodhartlab.rl.agents.tabular import ApprovalConfig, QLearningConfig
from goodhartlab.rl.registry import check_environment

Axis = Literal["training_steps", "width", "depth", "action_resolution", "observation_noise"]
"""Capability axes (Pan et al. 2022): training time, model size, action-space resolution, observation noise."""
ENV_AXES = ("action_resolution", "observation_noise")


def _check_bins(episodes: int, bin_episodes: int) -> None:
    if not 1 <= bin_episodes <= episodes:
        raise ConfigError("bin_episodes", f"must be between 1 and agent.episodes ({episodes}), got {bin_episodes}")


@dataclass
class TabularTrainingConfig:
    """Tabular Q-learning; the curve is proxy and true return against training episodes."""

    env: str = "goodhartlab/TomatoWatering-v0"
    agent: QLearningConfig = field(default_factory=QLearningConfig)
    bin_episodes: int = 100  # episodes averaged into one point of the curve
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # the environment's constructor arguments

    def __post_init__(self) -> None:
        _check_bins(self.agent.episodes, self.bin_episodes)
        check_environment(self.env, self.env_kwargs, needs_reward_parameters=self.agent.learn_from == "current_rf")


def _training_result(result: Any, bin_episodes: int, extra: dict[str, Any] | None = None) -> RunResult:
    """One agent's proxy and true return, averaged over bins of episodes, plus training-tail means
    (exploration on: the reference measurements' metric)."""
    bins = result.proxy_returns.shape[1] // bin_episodes

    def binned(values: np.ndarray) -> list[float | None]:
        return [float(v) for v in values[0, : bins * bin_episodes].reshape(bins, bin_episodes).mean(axis=1)]

    episodes = [float((i + 1) * bin_episodes) for i in range(bins)]
    curve = CurvePoints(episodes, binned(result.proxy_returns), binned(result.true_returns), "episodes")
    tail_episodes = min(200, result.proxy_returns.shape[1])
    summary = {f"{name} (last {tail_episodes} episodes)": float(values[0])
               for name, values in result.tail(tail_episodes).items()}
    return RunResult({"proxy vs true": curve}, {**summary, **(extra or {})})


def tabular_training(cfg: TabularTrainingConfig, seed: int) -> RunResult:
    from goodhartlab.rl.agents.tabular import train_q_learning

    result = train_q_learning(cfg.env, cfg.agent, seed=seed, num_agents=1, env_kwargs=cfg.env_kwargs)
    return _training_result(result, cfg.bin_episodes, {"states seen": result.states_seen})


@dataclass
class ApprovalTrainingConfig:
    """Approval or decoupled-approval learning on a feedback-tampering environment."""

    env: str = "goodhartlab/RegisterTampering-v0"
    agent: ApprovalConfig = field(default_factory=ApprovalConfig)
    bin_episodes: int = 50  # episodes averaged into one point of the curve

    def __post_init__(self) -> None:
        _check_bins(self.agent.episodes, self.bin_episodes)
        check_environment(self.env)


def approval_training(cfg: ApprovalTrainingConfig, seed: int) -> RunResult:
    from goodhartlab.rl.agents.tabular import train_approval

    result = train_approval(cfg.env, cfg.agent, seed=seed, num_agents=1)
    return _training_result(result, cfg.bin_episodes)


@dataclass
class CapabilitySweepConfig:
    """Train PPO at each value of one capability axis and evaluate proxy and true return.

    `training_steps` needs one run per seed (checkpoints at each value); the other axes train once
    per value. `agent` holds the PPOConfig (its eval_episodes and eval_seed set the evaluations);
    the run's seed, and what the axis sweeps, are not the agent's to set.
    """

    env: str = "goodhartlab/TrafficMerge-v0"
    axis: Axis = "training_steps"
    values: list[float] = field(default_factory=lambda: [0, 20_000, 50_000, 100_000])
    agent: PPOConfig = field(default_factory=PPOConfig)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # the environment's constructor arguments

    def __post_init__(self) -> None:
        non_empty(self, "values")
        default = PPOConfig()
        if self.agent.seed != default.seed:
            raise ConfigError("agent.seed", "is the run's seed (the spec's `seeds:`); leave it out of agent")
        if self.agent.eval_at != default.eval_at:
            raise ConfigError("agent.eval_at", "is set by the sweep (values on the training_steps axis); leave it out")
        if self.axis == "training_steps":
            if any(v < 0 or v != int(v) for v in self.values):
                raise ConfigError("values", f"must be whole numbers of training steps >= 0, got {self.values}")
            if self.agent.total_steps != default.total_steps:
                raise ConfigError("agent.total_steps", "is set by the sweep (the largest of values); leave it out")
        elif self.axis in ("width", "depth"):
            if any(v < (1 if self.axis == "width" else 0) or v != int(v) for v in self.values):
                raise ConfigError("values", f"must be whole numbers of {'units' if self.axis == 'width' else 'layers'}"
                                  f", got {self.values}")
            if getattr(self.agent, self.axis) != getattr(default, self.axis):
                raise ConfigError(f"agent.{self.axis}", "is the swept axis; set it through values, not agent")
        elif self.axis in self.env_kwargs:
            raise ConfigError(f"env_kwargs.{self.axis}", "is the swept axis; set it through values, not env_kwargs")
        check_environment(self.env, self.env_kwargs)


def capability_sweep(cfg: CapabilitySweepConfig, seed: int) -> RunResult:
    from goodhartlab.rl.agents.ppo import train_ppo
    from goodhartlab.rl.rollout import evaluate

    base = replace(cfg.agent, seed=seed)
    evaluations = []
    if cfg.axis == "training_steps":
        steps = sorted(int(v) for v in cfg.values)
        result = train_ppo(cfg.env, replace(base, total_steps=max(steps[-1], 1), eval_at=tuple(steps)),
                           env_kwargs=cfg.env_kwargs)
        by_step = {e.step: e for e in result.evals}
        evaluations = [by_step[step] for step in steps]
        pressure = [float(s) for s in steps]
    else:
        pressure = [float(v) for v in cfg.values]
        for value in cfg.values:
            env_kwargs, agent = dict(cfg.env_kwargs), base
            if cfg.axis in ENV_AXES:
                env_kwargs[cfg.axis] = value
            else:
                agent = replace(base, width=int(value)) if cfg.axis == "width" else replace(base, depth=int(value))
            trained = train_ppo(cfg.env, agent, env_kwargs=env_kwargs)
            evaluations.append(evaluate(trained.policy, cfg.env, episodes=base.eval_episodes,
                                        seed=seed + 1 if base.eval_seed is None else base.eval_seed,
                                        deterministic=base.eval_deterministic, **env_kwargs))
    proxy: list[float | None] = [e.proxy_mean for e in evaluations]
    true: list[float | None] = [e.true_mean for e in evaluations]
    summary = {"axis": cfg.axis, "proxy_se": [e.proxy_se for e in evaluations],
               "true_se": [e.true_se for e in evaluations], "agent": config_dict(base)}
    return RunResult({"proxy vs true": CurvePoints(pressure, proxy, true, cfg.axis)}, summary)


__all__ = ["ApprovalTrainingConfig", "CapabilitySweepConfig", "TabularTrainingConfig", "approval_training",
           "capability_sweep", "tabular_training"]
