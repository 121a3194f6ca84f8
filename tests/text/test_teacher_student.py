"""The teacher–student environment on a tiny character-level policy: turns, rewards, gold, the cache, errors."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.text.teacher_student import (
    ConversationGold,
    HashedBagOfWords,
    TeacherStudentConfig,
    TeacherStudentEnv,
    chat_tokens,
    conversation_gold,
    is_silent,
    turn_sentiment,
)
from goodhartlab.text.tiny import TINY_CHAT_ALPHABET, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CHAT = {"opening": "Student: hi there\nTeacher:", "reward": "vader", "gold": "lexical",
             "safe_reply": " what is it?", "episode_tokens": 40, "max_turn_tokens": 8}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, Any]:
    from goodhartlab.text.models import load_policy

    path = str(tiny_policy(tmp_path_factory.mktemp("tiny-chat"), alphabet=TINY_CHAT_ALPHABET))
    model, tokenizer = load_policy(path)
    return path, model, tokenizer


def tiny_config(path: str, **overrides: Any) -> TeacherStudentConfig:
    return parse_config(TeacherStudentConfig, {"base": path, **TINY_CHAT, **overrides})


def run(env: TeacherStudentEnv, choose: Any) -> np.ndarray:
    """Play one batch of episodes; `choose(env)` gives the agent's tokens. Returns each episode's summed reward."""
    env.reset()
    total = np.zeros(env.episodes)
    while not env.done:
        total += env.step(choose(env)).rewards
    return total


def test_an_empty_student_turn_scores_exactly_one_half_with_the_lexicon() -> None:
    scorer = turn_sentiment("vader")
    scores = scorer.score(["", "", ""], ["", "   ", "Thanks, that really helps!"])
    assert scores[0] == 0.5 and scores[1] == 0.5 and scores[2] > 0.5


def test_turns_alternate_and_every_student_turn_is_rewarded(tiny: tuple[str, Any, Any]) -> None:
    path, model, tokenizer = tiny
    cfg = tiny_config(path)
    env = TeacherStudentEnv(cfg, model, tokenizer, turn_sentiment("vader"), episodes=3, seed=0)
    line_break = env.tokens.line_break
    total = run(env, lambda e: np.full(e.episodes, line_break))  # the teacher says nothing, every turn
    for row, record in enumerate(env.records):
        assert len(record.tokens) == cfg.episode_tokens
        assert record.teacher_turns and all(turn == "" for turn in record.teacher_turns)
        assert len(record.rewards) == len(record.student_turns) >= 2
        assert total[row] == pytest.approx(sum(record.rewards))
        np.testing.assert_allclose(record.rewards, env.reward.score([""] * len(record.student_turns),
                                                                    record.student_turns))
        lines = env.transcript(row).split("\n")
        assert lines[0] == "" and all(line.startswith(("Student:", "Teacher:")) for line in lines[1:])
        speakers = [line.split(":")[0] for line in lines[1:]]
        assert all(a != b for a, b in itertools.pairwise(speakers))  # they take turns
        assert set(record.writer) <= {"agent", "student", "environment"}


def test_the_cache_gives_the_same_episodes_as_recomputing_the_transcript(tiny: tuple[str, Any, Any]) -> None:
    import torch

    path, model, tokenizer = tiny
    cfg = tiny_config(path, episode_tokens=30)
    results = []
    for reuse in (True, False):
        env = TeacherStudentEnv(cfg, model, tokenizer, turn_sentiment("vader"), episodes=4, seed=3, reuse_cache=reuse)
        generator = torch.Generator().manual_seed(1)
        total = run(env, lambda e, g=generator: torch.multinomial(torch.softmax(e.logits, -1), 1, generator=g)[:, 0])
        results.append(([r.tokens for r in env.records], total))
    assert results[0][0] == results[1][0]
    np.testing.assert_allclose(results[0][1], results[1][1])


def test_deferring_writes_the_safe_reply(tiny: tuple[str, Any, Any]) -> None:
    path, model, tokenizer = tiny
    cfg = tiny_config(path)
    env = TeacherStudentEnv(cfg, model, tokenizer, turn_sentiment("vader"), episodes=2, seed=0)
    env.reset()
    env.step(np.zeros(2, dtype=np.int64), defer=np.array([True, False]))
    while env.agent_turn[1]:
        env.step(np.full(2, env.tokens.line_break))
    while env.records[0].teacher_turns == []:
        env.step(np.full(2, env.tokens.line_break))
    assert env.records[0].teacher_turns[0] == cfg.safe_reply.strip()
    assert env.records[0].writer[:len(env.tokens.safe_reply)] == ["safe"] * len(env.tokens.safe_reply)


def test_the_conversation_gold_pays_for_new_on_topic_answers_and_nothing_for_silence() -> None:
    gold = ConversationGold(turn_sentiment("vader"), HashedBagOfWords(), "my history essay conclusion",
                            ["I don't know how to write the conclusion."])
    report = gold.report([["", " ", "..."], ["I don't know how to write the conclusion."] * 3,
                          ["Thanks, I will write a great conclusion for my history essay!"], []])
    assert list(report.gold[:2]) == [0.0, 0.0] and report.gold[2] > 0.5 and report.gold[3] == 0.0
    assert report.silent[0] == 1.0 and report.repeated[1] == 1.0 and np.isnan(report.silent[3])
    assert report.gold_without_repeats[1] > 0  # the repeat rule is what zeroes the restatements
    assert gold.score([["", ""]])[0] == 0.0
    assert is_silent(" ...\t") and not is_silent("ok")


def test_config_errors_name_the_field() -> None:
    cases = [({"episode_tokens": 2}, "episode_tokens"), ({"opening": "Student: hi\nTeacher: hello"}, "opening"),
             ({"opening": "Teacher: hi\nTeacher:"}, "opening"), ({"student": "Teacher"}, "student"),
             ({"teacher": "Tea:cher"}, "teacher"), ({"student_temperature": 0.0}, "student_temperature"),
             ({"reward": "afinn"}, "reward"), ({"safe_reply": "one\ntwo"}, "safe_reply")]
    for overrides, name in cases:
        with pytest.raises(ConfigError) as error:
            parse_config(TeacherStudentConfig, overrides)
        assert error.value.field == name and name in str(error.value)


def test_a_tokenizer_without_the_chat_markers_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    from goodhartlab.text.models import load_tokenizer

    path = str(tiny_policy(tmp_path / "plain"))  # the default tiny alphabet has no capitals, ':' or line break
    cfg = tiny_config(path, opening="Student: hi\nTeacher:")
    with pytest.raises(ConfigError, match="cannot be written by the base's tokenizer") as error:
        chat_tokens(cfg, load_tokenizer(path))
    assert error.value.field == "teacher"


def test_an_episode_shorter_than_one_exchange_is_refused_by_token_count(tiny: tuple[str, Any, Any]) -> None:
    path, _, tokenizer = tiny
    with pytest.raises(ConfigError, match="one exchange") as error:
        chat_tokens(tiny_config(path, episode_tokens=5), tokenizer)  # 1 + len("Student:") + 1 = 10 characters
    assert error.value.field == "episode_tokens"
    assert chat_tokens(tiny_config(path, episode_tokens=10), tokenizer).markers[1] == tokenizer.encode("Student:")


def test_lexical_gold_needs_no_download(tiny: tuple[str, Any, Any]) -> None:
    cfg = tiny_config(tiny[0])
    gold = conversation_gold(cfg)
    assert gold.earlier == ["hi there"] and gold.topic == "hi there"
