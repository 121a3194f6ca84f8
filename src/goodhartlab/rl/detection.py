"""Classic-RL runs for the detection benchmark: a learner on a proxy with a loophole (hacked), and its healthy twin.

The twin has the same learner, budget, seed and logging, on a proxy without the loophole: the environment's
control pair (proxy = true reward, `twin_env`), or the true reward itself. Both rise, saturate, drift from the
initial policy and lose entropy; only hacking tells them apart. Each run logs one row per evaluation:

- step (environment steps for PPO, episodes for Q-learning), proxy and gold (the true return), the evaluated
  policy's KL from the initial policy and its entropy, both per decision, averaged over a fixed set of probe
  states (for RL, "nats per sequence" would count an episode's decisions; per decision compares environments);
- the policy's and a trusted policy's action distributions at those probe states (access L2, Pan et al.'s
  detectors). The trusted policy is the same learner trained on the true reward with a seed no benchmark run
  uses, made once per environment by the kind's preparation and cached.

A hacked run carries the benchmark's ground-truth onset (`goodhartlab.detect.runs.gold_onset`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from goodhartlab.config import ConfigError, at_least, config_dict
from goodhartlab.detect.runs import BENCHMARK_VERSION, ONSET_RULE, LabelledRun
from goodhartlab.files import cache_dir, write_atomically
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.rl.agents.ppo import PPOConfig
from goodhartlab.rl.agents.tabular import QLearningConfig
from goodhartlab.rl.registry import check_environment


def _default_ppo() -> PPOConfig:
    return PPOConfig(total_steps=40_960, num_envs=8, n_steps=256, minibatch_size=256, eval_episodes=8)


@dataclass
class RLDetectionConfig:
    """One run of the detection benchmark on a classic-RL environment."""

    env: str = "goodhartlab/Epidemic-v0"  # the environment whose proxy has the loophole
    label: Literal["hacked", "healthy"] = "hacked"
    twin_env: str | None = None  # the healthy twin's environment (the loophole closed); null: learn from true reward
    learner: Literal["ppo", "q_learning"] = "ppo"
    ppo: PPOConfig = field(default_factory=_default_ppo)
    q_learning: QLearningConfig = field(default_factory=lambda: QLearningConfig(episodes=1500))
    evaluations: int = 20  # rows of the log: PPO checkpoints (one per rollout at most), or bins of Q-learning episodes
    agents: int = 1  # Q-learning: independent agents trained at once (NumPy batches them), each a run of its own
    probe_states: int = 16  # states the policy distributions and KL are measured at
    action_bins: int = 8  # a Box action's range cut into this many bins, for its distribution
    trusted_seed: int = 1_000_003  # the trusted policy's seed: one no benchmark run uses
    benchmark: str = BENCHMARK_VERSION

    def __post_init__(self) -> None:
        at_least(self, "evaluations", 4)
        at_least(self, "agents", 1)
        if self.learner == "ppo" and self.agents != 1:
            raise ConfigError("agents", "is for Q-learning, which trains several agents at once; PPO runs one")
        at_least(self, "probe_states", 2)
        at_least(self, "action_bins", 2)
        check_environment(self.env)
        if self.twin_env is not None:
            check_environment(self.twin_env)
        if self.learner == "ppo" and self.ppo.seed != PPOConfig().seed:
            raise ConfigError("ppo.seed", "is the run's seed (the spec's `seeds:`); leave it out")
        if self.learner == "q_learning":
            if self.q_learning.learn_from != "proxy":
                raise ConfigError("q_learning.learn_from", "is set by the label (hacked: proxy; healthy: true or "
                                  "the twin's proxy); leave it out")
            if self.q_learning.episodes < self.evaluations:
                raise ConfigError("evaluations", f"({self.evaluations}) is more than q_learning.episodes "
                                  f"({self.q_learning.episodes}): a row needs at least one episode")

    @property
    def run_env(self) -> str:
        """The environment this run trains on."""
        return self.env if self.label == "hacked" or self.twin_env is None else self.twin_env

    @property
    def learns_true_reward(self) -> bool:
        return self.label == "healthy" and self.twin_env is None


# -- the trusted policy and the probe states, made once per environment ----------------------------------------


@dataclass(frozen=True)
class Trusted:
    probes: np.ndarray  # (probe_states, *observation shape)
    probabilities: np.ndarray  # (probe_states, actions)


def _trusted_path(cfg: RLDetectionConfig) -> Path:
    identity = json.dumps({"env": cfg.env, "learner": cfg.learner, "agent": config_dict(_learner(cfg)),
                           "probes": cfg.probe_states, "bins": cfg.action_bins, "seed": cfg.trusted_seed,
                           "benchmark": cfg.benchmark}, sort_keys=True)
    return cache_dir() / "detect" / f"trusted-{hashlib.sha256(identity.encode()).hexdigest()[:20]}.npz"


def _learner(cfg: RLDetectionConfig) -> PPOConfig | QLearningConfig:
    return cfg.ppo if cfg.learner == "ppo" else cfg.q_learning


def trusted_policy(cfg: RLDetectionConfig) -> Trusted:
    """The trusted policy's action distributions at the probe states: the learner trained on the environment's true
    reward with `trusted_seed`; the probe states, half from its evaluation rollouts, half from a random policy's."""
    path = _trusted_path(cfg)
    if path.exists():
        with np.load(path) as cached:
            return Trusted(cached["probes"], cached["probabilities"])
    rng = np.random.default_rng(cfg.trusted_seed)
    if cfg.learner == "ppo":
        from goodhartlab.rl.agents.ppo import train_ppo

        true_env = _true_twin(cfg.env)
        policy = train_ppo(true_env, replace(cfg.ppo, seed=cfg.trusted_seed, eval_at=())).policy
        good = _visited(cfg.env, lambda obs: policy.act(obs, deterministic=True), rng, cfg.probe_states // 2)
        chance = _visited(cfg.env, None, rng, cfg.probe_states - good.shape[0])
        probes = np.concatenate([good, chance])
        probabilities = action_distribution(policy, probes, cfg.action_bins)
    else:
        from goodhartlab.rl.agents.tabular import train_q_learning

        snapshot: list[Any] = []
        train_q_learning(cfg.env, replace(cfg.q_learning, learn_from="true"), seed=cfg.trusted_seed, num_agents=1,
                         progress=lambda done, policy: snapshot.__setitem__(slice(None), [policy]))
        trusted = snapshot[0]

        def greedy(obs: np.ndarray) -> np.ndarray:
            return np.asarray(trusted.probabilities(obs).argmax(axis=1))

        good = _visited(cfg.env, greedy, rng, cfg.probe_states // 2)
        chance = _visited(cfg.env, None, rng, cfg.probe_states - good.shape[0])
        probes = np.concatenate([good, chance])
        probabilities = trusted.probabilities(probes)
    write_atomically(path, lambda staged: _save_npz(staged, probes, probabilities))
    return Trusted(probes, probabilities)


def _save_npz(path: Path, probes: np.ndarray, probabilities: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.savez(handle, probes=probes, probabilities=probabilities)


def _true_twin(env: str) -> str:
    """The id of `env`'s control pair (proxy = true reward) if it has one, else `env` itself (trained on its
    true reward through its control pair is then impossible: the caller learns from true reward instead)."""
    control = env.replace("-v0", "Control-v0")
    return control if control in gym.registry else env


def _visited(env_id: str, act: Any, rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` observations visited by a policy (`act`: observations -> actions; None: uniformly random) in one
    batch of episodes, picked at random."""
    from goodhartlab.rl.rollout import make_vector_env

    copies = max(count, 4)
    envs = make_vector_env(env_id, copies)
    envs.action_space.seed(int(rng.integers(2**31)))
    obs, _ = envs.reset(seed=int(rng.integers(2**31)))
    seen = [obs]
    for _ in range(64):
        actions = envs.action_space.sample() if act is None else act(obs)
        obs, *_ = envs.step(actions)
        seen.append(obs)
    envs.close()
    pool = np.concatenate(seen)
    return np.asarray(pool[rng.choice(len(pool), size=count, replace=False)])


def action_distribution(policy: Any, observations: np.ndarray, bins: int) -> np.ndarray:
    """A PPO policy's action distribution at each observation: its categorical probabilities, or for a 1-D Box its
    Gaussian's mass in `bins` equal bins of the action range (the tails folded into the end bins, as clipping does)."""
    import torch
    from scipy.stats import norm

    with torch.no_grad():
        head, _ = policy(policy.encode(observations))
        if policy.discrete:
            return np.asarray(torch.softmax(head, dim=-1).numpy(), dtype=np.float64)
        if head.shape[-1] != 1:
            raise ValueError("action distributions are made for discrete or 1-D Box actions")
        mean = head[:, 0].numpy().astype(np.float64)
        std = float(policy.log_std.exp()[0])
    edges = np.linspace(float(policy.low[0]), float(policy.high[0]), bins + 1)
    cumulative = norm.cdf((edges[None, 1:-1] - mean[:, None]) / std)
    cumulative = np.concatenate([np.zeros((len(mean), 1)), cumulative, np.ones((len(mean), 1))], axis=1)
    return np.diff(cumulative, axis=1)


def _kl_and_entropy(probabilities: np.ndarray, initial: np.ndarray) -> tuple[float, float]:
    """Mean over probe states of KL(policy ‖ initial) and of the policy's entropy, in nats per decision."""
    p = np.clip(probabilities, 1e-12, 1.0)
    q = np.clip(initial, 1e-12, 1.0)
    kl = float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))
    entropy = float(np.mean(-np.sum(p * np.log(p), axis=1)))
    return max(kl, 0.0), entropy


# -- the runs ---------------------------------------------------------------------------------------------------


def prepare_trusted(runs: Sequence[tuple[RLDetectionConfig, int]]) -> None:
    """Train each environment's trusted policy once, before the runs that share it."""
    for cfg, _ in runs:
        trusted_policy(cfg)


def rl_detection_run(cfg: RLDetectionConfig, seed: int) -> RunResult:
    """One benchmark run (for Q-learning, `agents` of them): train, log a row per evaluation, label it, and return
    the LabelledRuns in the summary."""
    trusted = trusted_policy(cfg)
    per_agent = [_ppo_rows(cfg, seed, trusted)] if cfg.learner == "ppo" else _q_rows(cfg, seed, trusted)
    runs = []
    curves = {}
    for agent, rows in enumerate(per_agent):
        step, proxy, gold, kl, entropy, policy_probs = (np.array(column) for column in zip(*rows, strict=True))
        name = f"seed={seed}" if cfg.agents == 1 else f"seed={seed}.{agent}"
        run = LabelledRun(
            run_id=f"{cfg.env}/{cfg.label}/{name}", environment=cfg.env.removeprefix("goodhartlab/"),
            label=cfg.label, source="real", twin=f"{cfg.env}/{'healthy' if cfg.label == 'hacked' else 'hacked'}/{name}",
            step=step, kl=kl, proxy=proxy, gold=gold, entropy=entropy,
            policy_probs=tuple(policy_probs), trusted_probs=tuple(trusted.probabilities for _ in policy_probs),
            metadata={"learner": cfg.learner, "trained_on": cfg.run_env, "true_reward": cfg.learns_true_reward,
                      "benchmark": cfg.benchmark})
        runs.append(run.with_rule_onset() if run.hacked else run)
        curves[f"proxy vs gold, {name}"] = CurvePoints(step.tolist(), proxy.tolist(), gold.tolist(),
                                                      "training_steps" if cfg.learner == "ppo" else "episodes")
    onsets = [None if run.onset is None else run.onset.step for run in runs]
    return RunResult(curves, {"labelled_runs": [run.to_dict() for run in runs], "label": cfg.label,
                              "onsets": onsets, "onset_rule": ONSET_RULE})


Row = tuple[float, float, float, float, float, np.ndarray]


def _ppo_rows(cfg: RLDetectionConfig, seed: int, trusted: Trusted) -> list[Row]:
    from goodhartlab.rl.agents.ppo import ActorCritic, train_ppo
    from goodhartlab.rl.rollout import EvalResult

    every = max(cfg.ppo.total_steps // cfg.evaluations, 1)
    agent = replace(cfg.ppo, seed=seed, eval_at=tuple(range(0, cfg.ppo.total_steps + 1, every))[:cfg.evaluations + 1])
    rows: list[Row] = []
    initial: list[np.ndarray] = []

    def checkpoint(result: EvalResult, policy: ActorCritic) -> None:
        probabilities = action_distribution(policy, trusted.probes, cfg.action_bins)
        if not initial:
            initial.append(probabilities)
        kl, entropy = _kl_and_entropy(probabilities, initial[0])
        step = float(result.step if result.step is not None else 0)
        rows.append((step, result.proxy_mean, result.true_mean, kl, entropy, probabilities))

    if cfg.learns_true_reward:
        raise ConfigError("twin_env", f"PPO's healthy twin needs an environment whose proxy is the true reward; "
                          f"name it (e.g. {_true_twin(cfg.env)})")
    train_ppo(cfg.run_env, agent, eval_env=cfg.run_env, on_checkpoint=checkpoint)
    return rows


def _q_rows(cfg: RLDetectionConfig, seed: int, trusted: Trusted) -> list[list[Row]]:
    from goodhartlab.rl.agents.tabular import TabularPolicy, train_q_learning

    agent = replace(cfg.q_learning, learn_from="true" if cfg.learns_true_reward else "proxy")
    per_bin = agent.episodes // cfg.evaluations
    snapshots: dict[int, list[np.ndarray]] = {}

    def progress(done: int, policy: TabularPolicy) -> None:
        boundary = (done // per_bin) * per_bin
        if boundary > 0 and boundary not in snapshots and boundary <= per_bin * cfg.evaluations:
            snapshots[boundary] = [policy.probabilities(trusted.probes, agent=i) for i in range(cfg.agents)]

    result = train_q_learning(cfg.run_env, agent, seed=seed, num_agents=cfg.agents, progress=progress)
    actions = trusted.probabilities.shape[1]
    uniform = np.full((len(trusted.probes), actions), 1.0 / actions)
    # the logged proxy is the reward the learner saw: the twin learning from true reward logs true reward
    seen = result.true_returns if cfg.learns_true_reward else result.proxy_returns
    runs: list[list[Row]] = []
    for index in range(cfg.agents):
        rows: list[Row] = []
        for row in range(cfg.evaluations):
            end = (row + 1) * per_bin
            window = slice(row * per_bin, end)
            probabilities = snapshots[end][index] if end in snapshots else uniform
            kl, entropy = _kl_and_entropy(probabilities, uniform)
            rows.append((float(end), float(seen[index, window].mean()),
                         float(result.true_returns[index, window].mean()), kl, entropy, probabilities))
        runs.append(rows)
    return runs
