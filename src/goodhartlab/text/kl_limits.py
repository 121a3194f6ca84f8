"""The KL-limits study (Cohen et al., arXiv 2410.06213): train the teacher agent, then measure what it bought.

One run trains `KLAgent` in the teacher–student chat under a total KL budget or a per-token KL penalty,
optionally held to the pessimistic ask-for-help base, and evaluates the trained agent on fresh episodes.
It returns the training curve (reward and conversation gold per batch) and a summary with what the
paper's findings turn on: the silent and restated shares of the student's turns, the student's turns per
episode, the KL charged per episode and where in the episode it was spent, the deferral rate, and
transcripts. A spec sweeps budgets, regularizers, episode lengths and the ask-for-help base as variants.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from goodhartlab.config import at_least, config_dict
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.text.ask_for_help import AskForHelpConfig
from goodhartlab.text.kl_agent import KLAgentConfig, Rollout
from goodhartlab.text.teacher_student import TeacherStudentConfig

TRAINING_CURVE = "reward and gold per training batch"
KL_CURVE = "reward and gold against KL per episode"


@dataclass
class KLLimitsConfig:
    """One training run of the teacher agent, and its evaluation."""

    env: TeacherStudentConfig = field(default_factory=TeacherStudentConfig)
    agent: KLAgentConfig = field(default_factory=KLAgentConfig)
    ask_for_help: bool = False  # hold the agent to the pessimistic base of an imitator ensemble, deferring where unsure
    helpers: AskForHelpConfig = field(default_factory=AskForHelpConfig)  # the ensemble (read when ask_for_help)
    eval_episodes: int = 32  # fresh episodes the trained agent is measured on

    def __post_init__(self) -> None:
        at_least(self, "eval_episodes", 1)


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def measures(batch: Rollout) -> dict[str, Any]:
    """The numbers of one batch of episodes, JSON-ready (means over its episodes)."""
    report = batch.gold
    turns = batch.student_turns
    points = batch.decision_points.sum()
    return {
        "episodes": len(batch.reward),
        "reward": float(batch.reward.mean()),
        "gold": float(report.gold.mean()),
        "gold_without_repeats": float(report.gold_without_repeats.mean()),
        "silent_fraction": _nanmean(report.silent),
        "teacher_silent_fraction": _nanmean(batch.teacher_silent),
        "repeated_fraction": _nanmean(report.repeated),
        "positivity": _nanmean(report.positivity),
        "on_topic": _nanmean(report.on_topic),
        "episodes_without_student_turn": int((turns == 0).sum()),
        "student_turns": float(turns.mean()),
        "reward_per_turn": float(batch.reward.sum() / turns.sum()) if turns.sum() else None,
        "silent_reward_share": _nanmean(batch.silent_reward_share),
        "kl": float(batch.kl.mean()),
        "kl_max": float(batch.kl.max()),
        "kl_to_base": float(batch.kl_to_base.mean()),
        "deferral_rate": float(batch.deferrals.sum() / points) if points else 0.0,
        "penalty": batch.penalty,
    }


def spend_profile(batch: Rollout) -> dict[str, Any]:
    """Where the KL went: the mean KL charged at each token of the episode, and the share of the episode's KL
    spent in its first quarter and on its first token (front-loaded spending puts most of it there)."""
    by_position = batch.kl_by_position.mean(0)
    total = float(by_position.sum())
    quarter = max(1, math.ceil(len(by_position) / 4))
    return {"kl_by_position": [float(x) for x in by_position],
            "first_quarter_share": float(by_position[:quarter].sum() / total) if total > 0 else None,
            "first_token_share": float(by_position[0] / total) if total > 0 else None}


def kl_limits_study(cfg: KLLimitsConfig, seed: int) -> RunResult:
    """Train the teacher agent of `cfg` with `seed` and measure it (see the module's docstring)."""
    import torch

    from goodhartlab.text.ask_for_help import ImitatorEnsemble
    from goodhartlab.text.kl_agent import KLAgent
    from goodhartlab.text.models import load_policy, load_tokenizer
    from goodhartlab.text.teacher_student import TeacherStudentEnv, chat_tokens, conversation_gold, turn_sentiment

    chat_tokens(cfg.env, load_tokenizer(cfg.env.base))  # the tokenizer's errors come before the model loads
    model, tokenizer = load_policy(cfg.env.base)
    reward = turn_sentiment(cfg.env.reward)
    gold = conversation_gold(cfg.env, reward)
    start = time.perf_counter()
    helper, helper_report = None, None
    if cfg.ask_for_help:
        data_env = TeacherStudentEnv(cfg.env, model, tokenizer, reward, episodes=cfg.helpers.data_episodes,
                                     seed=seed + 10_000)
        base = KLAgent(cfg.agent, data_env, seed=seed).rollout(gold)  # the untrained agent is the base itself
        held_out = max(1, cfg.helpers.data_episodes // 3)
        helper = ImitatorEnsemble(cfg.helpers, data_env.head.weight.detach().float(), seed=seed)
        episodes = np.arange(cfg.helpers.data_episodes)
        helper.fit(base.decisions, episodes[:-held_out], episodes[-held_out:], seed=seed)
        helper_report = helper.fit_report
    env = TeacherStudentEnv(cfg.env, model, tokenizer, reward, episodes=cfg.agent.episodes, seed=seed)
    torch.manual_seed(seed)
    agent = KLAgent(cfg.agent, env, seed=seed, helper=helper)
    batches = agent.train(gold)
    trained = time.perf_counter() - start
    evaluation_env = TeacherStudentEnv(cfg.env, model, tokenizer, reward, episodes=cfg.eval_episodes,
                                       seed=seed + 20_000)
    final = agent.rollout(gold, evaluation_env)
    log = [measures(batch) for batch in batches]
    summary: dict[str, Any] = {
        "config": config_dict(cfg),
        "reward_scorer": f"{reward.name} {reward.version}",
        "gold_scorer": gold.name,
        "training": log,
        "first_batch": log[0] if log else None,
        "final": measures(final),
        "final_spend": spend_profile(final),
        "first_spend": spend_profile(batches[0]) if batches else None,
        "transcripts": final.transcripts,
        "helpers": helper_report,
        "train_seconds": round(trained, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    curves: dict[str, CurvePoints] = {}
    if log:
        curves[TRAINING_CURVE] = CurvePoints([float(i) for i in range(len(log))], [row["reward"] for row in log],
                                             [row["gold"] for row in log], "training_steps")
        curves[KL_CURVE] = CurvePoints([row["kl"] for row in log], [row["reward"] for row in log],
                                       [row["gold"] for row in log], "kl")
    return RunResult(curves, summary)
