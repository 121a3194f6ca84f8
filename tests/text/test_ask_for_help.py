"""The ask-for-help base on a tiny policy: imitators fit the base, disagree off its data, and the agent defers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.measure.kl import discrete_kl
from goodhartlab.text.ask_for_help import AskForHelpConfig, ImitatorEnsemble
from goodhartlab.text.kl_agent import KLAgent, KLAgentConfig
from goodhartlab.text.teacher_student import TeacherStudentConfig, TeacherStudentEnv, conversation_gold, turn_sentiment
from goodhartlab.text.tiny import TINY_CHAT_ALPHABET, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CHAT = {"opening": "Student: hi there\nTeacher:", "reward": "vader", "gold": "lexical",
             "safe_reply": " what is it?", "episode_tokens": 40, "max_turn_tokens": 8}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[TeacherStudentEnv, ImitatorEnsemble, Any, Any]:
    from goodhartlab.text.models import load_policy

    path = str(tiny_policy(tmp_path_factory.mktemp("tiny-chat"), alphabet=TINY_CHAT_ALPHABET))
    model, tokenizer = load_policy(path)
    cfg = parse_config(TeacherStudentConfig, {"base": path, **TINY_CHAT})
    reward = turn_sentiment(cfg.reward)
    gold = conversation_gold(cfg)
    env = TeacherStudentEnv(cfg, model, tokenizer, reward, episodes=24, seed=0)
    base = KLAgent(parse_config(KLAgentConfig, {"candidates": 8, "episodes": 24}), env, seed=0).rollout(gold)
    ensemble = ImitatorEnsemble(AskForHelpConfig(train_steps=150, defer_quantile=0.9), env.head.weight.detach().float())
    ensemble.fit(base.decisions, np.arange(16), np.arange(16, 24))
    return env, ensemble, base, gold


def test_imitators_learn_the_base_and_the_threshold_sets_its_own_deferral_rate(fitted: Any) -> None:
    _, ensemble, base, _ = fitted
    report = ensemble.fit_report
    assert report["train_decisions"] > 100 and report["held_out_decisions"] > 40
    d = base.decisions
    _, _, disagreement = ensemble.assess(d["features"], d["top"], __import__("torch").as_tensor(d["log_base"]))
    held_out = d["episode"] >= 16
    assert ensemble.must_defer(disagreement[held_out]).mean() == pytest.approx(0.1, abs=0.03)  # 1 - defer_quantile


def test_members_disagree_more_away_from_the_data(fitted: Any) -> None:
    import torch

    _, ensemble, base, _ = fitted
    d = base.decisions
    x = d["features"]
    far = x.clone()
    far[:, :-2] = torch.randn(far[:, :-2].shape, generator=torch.Generator().manual_seed(0)) * 3  # unlike any state
    log_base = torch.as_tensor(d["log_base"])
    near = ensemble.assess(x, d["top"], log_base)[2]
    away = ensemble.assess(far, d["top"], log_base)[2]
    assert away.mean() > 2 * near.mean()


def test_the_pessimistic_agent_defers_where_unsure_and_is_charged_against_the_pessimistic_base(fitted: Any) -> None:
    env, ensemble, _, gold = fitted
    agent = KLAgent(parse_config(KLAgentConfig, {"candidates": 8, "episodes": 24, "budget": 4.0}), env, seed=1,
                    helper=ensemble)
    batch = agent.rollout(gold)
    assert 0 < batch.deferrals.sum() < batch.decision_points.sum()
    assert np.all(batch.kl <= 4.0 + 1e-9)
    safe = [r for r in env.records if "safe" in r.writer]
    assert safe
    for record in safe:  # a deferral writes the safe reply token by token (the episode may end inside it)
        start = record.writer.index("safe")
        length = next((i for i, w in enumerate(record.writer[start:]) if w != "safe"), len(record.writer) - start)
        written = record.tokens[start:start + length]
        assert 0 < len(written) <= len(env.tokens.safe_reply) and written == env.tokens.safe_reply[:len(written)]
    d = batch.decisions  # KL(π ‖ ν) = KL(π ‖ ν̄) + floor: each token against its least willing member
    log_pi, _, charged, _ = agent.policy(d["features"], d["top"], d["log_base"], d["floor"], d["remaining"],
                                         grad=False)
    np.testing.assert_allclose(charged, discrete_kl(log_pi.numpy(), d["log_base"]) + d["floor"], atol=1e-9)
    assert np.all(d["floor"] >= 0)


def test_bad_settings_name_the_field() -> None:
    for settings, name in [({"members": 1}, "members"), ({"prior_scale": 0}, "prior_scale"),
                           ({"defer_quantile": 1.5}, "defer_quantile"), ({"data_episodes": 2}, "data_episodes")]:
        with pytest.raises(ConfigError) as error:
            parse_config(AskForHelpConfig, settings)
        assert error.value.field == name
