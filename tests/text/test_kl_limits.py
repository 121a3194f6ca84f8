"""The kl_limits study kind: end to end on a tiny policy, errors before any model loads, and once on SmolLM2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.text.kl_limits import KL_CURVE, TRAINING_CURVE, KLLimitsConfig, kl_limits_study
from goodhartlab.text.tiny import TINY_CHAT_ALPHABET, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_policy(tmp_path_factory.mktemp("tiny-chat"), alphabet=TINY_CHAT_ALPHABET))


def tiny_config(base: str, **overrides: Any) -> KLLimitsConfig:
    env = {"base": base, "opening": "Student: hi there\nTeacher:", "reward": "vader", "gold": "lexical",
           "safe_reply": " what is it?", "episode_tokens": 30, "max_turn_tokens": 8, **overrides.pop("env", {})}
    agent = {"budget": 2.0, "updates": 2, "episodes": 8, "candidates": 8, **overrides.pop("agent", {})}
    return parse_config(KLLimitsConfig, {"env": env, "agent": agent, "eval_episodes": 6, **overrides})


@pytest.mark.parametrize("variant", [{}, {"agent": {"regularizer": "penalty", "penalty_target": 1.0}},
                                     {"ask_for_help": True, "helpers": {"data_episodes": 9, "train_steps": 10}}])
def test_the_study_trains_measures_and_keeps_its_budget(tiny_base: str, variant: dict[str, Any]) -> None:
    result = kl_limits_study(tiny_config(tiny_base, **variant), seed=0)
    assert set(result.curves) == {TRAINING_CURVE, KL_CURVE}
    training = result.curves[TRAINING_CURVE]
    assert training.pressure == [0.0, 1.0] and training.pressure_kind == "training_steps"
    summary = result.summary
    final = summary["final"]
    assert final["episodes"] == 6 and final["kl_max"] <= (2.0 + 1e-9 if "agent" not in variant else np.inf)
    assert len(summary["training"]) == 2 and summary["config"]["agent"]["updates"] == 2
    profile = summary["final_spend"]["kl_by_position"]
    assert len(profile) == 30 and sum(profile) == pytest.approx(final["kl"], rel=1e-6, abs=1e-9)
    assert final["reward_per_turn"] == pytest.approx(0.5)  # VADER reads the tiny policy's characters as neutral
    assert (summary["helpers"] is not None) == bool(variant.get("ask_for_help"))
    if variant.get("ask_for_help"):
        assert 0 <= final["deferral_rate"] <= 1 and summary["helpers"]["threshold"] > 0


def test_a_base_without_the_chat_markers_is_refused_before_the_model_loads(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import goodhartlab.text.models as models

    def no_loading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the tokenizer's check")

    monkeypatch.setattr(models, "load_policy", no_loading)
    plain = str(tiny_policy(tmp_path / "plain"))  # lowercase letters only: no 'S', 'T', ':' or line break
    cfg = tiny_config(plain, env={"opening": "Student: hi\nTeacher:"})
    with pytest.raises(ConfigError, match="cannot be written") as error:
        kl_limits_study(cfg, seed=0)
    assert error.value.field == "teacher"


def test_bad_settings_are_refused_with_their_dotted_names() -> None:
    for settings, name in [({"agent": {"budget": 0}}, "agent.budget"), ({"agent": {"budget": -1.5}}, "agent.budget"),
                           ({"env": {"episode_tokens": 1}}, "env.episode_tokens"),
                           ({"eval_episodes": 0}, "eval_episodes"), ({"helpers": {"members": 1}}, "helpers.members")]:
        with pytest.raises(ConfigError) as error:
            parse_config(KLLimitsConfig, settings)
        assert error.value.field == name


@pytest.mark.slow
@pytest.mark.assets
def test_on_smollm2_the_empty_turn_score_the_cache_and_a_short_budgeted_run() -> None:
    """A few minutes on one CPU core: the real base, the MultiEmo head, MiniLM."""
    import torch

    from goodhartlab.text.models import load_policy
    from goodhartlab.text.teacher_student import TeacherStudentConfig, TeacherStudentEnv, chat_tokens, turn_sentiment

    head = turn_sentiment("head")
    empty, *_ = head.score(["", ""], ["", "Thanks, that really helps!"])
    assert empty == pytest.approx(0.349, abs=0.01)  # not the paper's 0.5: docs/kl-limits.md

    cfg = parse_config(TeacherStudentConfig, {"episode_tokens": 12})
    model, tokenizer = load_policy(cfg.base)
    tokens = chat_tokens(cfg, tokenizer)
    assert tokens.markers[1] == tokenizer.encode("Student:") and len(tokens.markers[1]) == 2
    written = []
    for reuse in (True, False):
        env = TeacherStudentEnv(cfg, model, tokenizer, head, episodes=2, seed=0, reuse_cache=reuse)
        env.reset()
        generator = torch.Generator().manual_seed(0)
        while not env.done:
            env.step(torch.multinomial(torch.softmax(env.logits, -1), 1, generator=generator)[:, 0])
        written.append([record.tokens for record in env.records])
    assert written[0] == written[1]

    result = kl_limits_study(parse_config(KLLimitsConfig, {
        "env": {"episode_tokens": 16}, "agent": {"budget": 3.0, "updates": 2, "episodes": 4}, "eval_episodes": 4}),
        seed=0)
    final = result.summary["final"]
    assert final["kl_max"] <= 3.0 + 1e-9 and final["student_turns"] >= 0
    assert all(row["kl_max"] <= 3.0 + 1e-9 for row in result.summary["training"])
