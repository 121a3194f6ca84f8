"""Runner tasks for classic RL: training curves and capability sweeps, written to the results store.

Each task is a function (config, seed) -> RunResult, so `goodhartlab run SPEC.yaml` and the demo run
them through the same resumable runner as every other study. A capability sweep's curve has the
capability knob as its pressure; the report then marks the peak of the true reward, the onset of
its fall and whether the fall is a sharp phase transition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from goodhartlab.lab.store import CurvePoints, RunResult
from goodhartlab.lab.studies import parse_config

AXES = ("training_steps", "width", "depth", "action_resolution", "observation_noise")
"""Capability axes (Pan et al. 2022): model size, training time, action-space resolution, observation noise."""
ENV_AXES = ("action_resolution", "observation_noise")


@dataclass
class TabularTrainingConfig:
    """Tabular Q-learning; the curve is proxy and true return against training episodes."""

    env: str = "goodhartlab/TomatoWatering-v0"
    episodes: int = 1500
    bin_episodes: int = 100
    learn_from: str = "proxy"
    env_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.learn_from not in ("proxy", "true", "current_rf"):
            raise ValueError(f"learn_from must be 'proxy', 'true' or 'current_rf' (quote them in YAML), "
                             f"got {self.learn_from!r}")
        _check_bins(self.episodes, self.bin_episodes)


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


def _check_bins(episodes: int, bin_episodes: int) -> None:
    if not 1 <= bin_episodes <= episodes:
        raise ValueError(f"bin_episodes must be between 1 and episodes ({episodes}), got {bin_episodes}")


def tabular_training(config: dict[str, Any], seed: int) -> RunResult:
    from goodhartlab.rl.agents.tabular import QLearningConfig, train_q_learning

    cfg = parse_config(TabularTrainingConfig, config)
    learner = QLearningConfig(episodes=cfg.episodes, learn_from=cfg.learn_from)  # type: ignore[arg-type]
    result = train_q_learning(cfg.env, learner, seed=seed, num_agents=1, env_kwargs=cfg.env_config)
    return _training_result(result, cfg.bin_episodes, {"states seen": result.states_seen})


@dataclass
class ApprovalTrainingConfig:
    env: str = "goodhartlab/RegisterTampering-v0"
    episodes: int = 1000
    bin_episodes: int = 50
    decoupled: bool = False
    method: str = "q"

    def __post_init__(self) -> None:
        if self.method not in ("q", "pg"):
            raise ValueError(f"method must be 'q' (Q-learning) or 'pg' (policy gradient), got {self.method!r}")
        _check_bins(self.episodes, self.bin_episodes)


def approval_training(config: dict[str, Any], seed: int) -> RunResult:
    from goodhartlab.rl.agents.tabular import ApprovalConfig, train_approval

    cfg = parse_config(ApprovalTrainingConfig, config)
    learner = ApprovalConfig(episodes=cfg.episodes, decoupled=cfg.decoupled, method=cfg.method)  # type: ignore[arg-type]
    result = train_approval(cfg.env, learner, seed=seed, num_agents=1)
    return _training_result(result, cfg.bin_episodes)


@dataclass
class CapabilitySweepConfig:
    """Train PPO at each value of one capability axis and evaluate proxy and true return.

    `training_steps` needs one run per seed (checkpoints at each value); the other axes train once
    per value. `agent` holds PPOConfig fields, `env_config` the environment's constructor arguments.
    """

    env: str = "goodhartlab/TrafficMerge-v0"
    axis: str = "training_steps"
    values: list[float] = field(default_factory=lambda: [0, 20_000, 50_000, 100_000])
    agent: dict[str, Any] = field(default_factory=dict)
    env_config: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 16

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis {self.axis!r} is not one of {', '.join(AXES)}")
        if not isinstance(self.values, list) or not self.values:
            raise ValueError("values must list at least one setting of the axis")
        if self.axis == "training_steps" and any(v < 0 for v in self.values):
            raise ValueError(f"training_steps values must be >= 0, got {self.values}")


def capability_sweep(config: dict[str, Any], seed: int) -> RunResult:
    from goodhartlab.rl.agents.ppo import PPOConfig, train_ppo
    from goodhartlab.rl.rollout import evaluate

    cfg = parse_config(CapabilitySweepConfig, config)
    base = parse_config(PPOConfig, {**cfg.agent, "seed": seed, "eval_episodes": cfg.eval_episodes})
    proxy: list[float | None] = []
    true: list[float | None] = []
    proxy_se: list[float] = []
    true_se: list[float] = []

    def _collect(e: Any) -> None:
        proxy.append(e.proxy_mean)
        true.append(e.true_mean)
        proxy_se.append(e.proxy_se)
        true_se.append(e.true_se)

    if cfg.axis == "training_steps":
        steps = sorted(int(v) for v in cfg.values)
        result = train_ppo(cfg.env, replace(base, total_steps=max(steps[-1], 1), eval_at=tuple(steps)),
                           env_kwargs=cfg.env_config)
        evals = {e.step: e for e in result.evals}
        for step in steps:
            e = evals[step]
            _collect(e)
        pressure = [float(s) for s in steps]
    else:
        pressure = [float(v) for v in cfg.values]
        for value in cfg.values:
            env_config, agent = dict(cfg.env_config), base
            if cfg.axis in ENV_AXES:
                env_config[cfg.axis] = value
            else:
                agent = replace(base, width=int(value)) if cfg.axis == "width" else replace(base, depth=int(value))
            result = train_ppo(cfg.env, agent, env_kwargs=env_config)
            e = evaluate(result.policy, cfg.env, episodes=cfg.eval_episodes,
                         seed=seed + 1 if base.eval_seed is None else base.eval_seed,
                         deterministic=base.eval_deterministic, **env_config)
            _collect(e)
    summary = {"axis": cfg.axis, "proxy_se": proxy_se, "true_se": true_se, "agent": asdict(base)}
    return RunResult({"proxy vs true": CurvePoints(pressure, proxy, true, cfg.axis)}, summary)
