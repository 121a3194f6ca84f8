"""Reward transforms: each a scorer of its own, with the published formula, and each usable as a TRL reward function."""

from __future__ import annotations

import numpy as np
import pytest

from goodhartlab.rewards.scorer import ScoreError, Scorer
from goodhartlab.rewards.transforms import (
    Capped,
    Centred,
    Constrained,
    LengthPenalty,
    PreferenceAsReward,
    ReferenceRewards,
    Weighted,
    WordLimit,
    word_count,
)


class Lookup:
    """A scorer that reads a response's reward from a table, counting its calls."""

    name, version = "lookup", "1"

    def __init__(self, table: dict[str, float]) -> None:
        self.table, self.calls, self.scored = table, 0, 0

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        self.calls += 1
        self.scored += len(responses)
        return np.array([self.table[r] for r in responses])


TABLE = {"a": 1.0, "b": 3.0, "c": -2.0, "ref1": 0.0, "ref2": 2.0, "one two three four": 5.0}


def test_every_transform_is_a_scorer() -> None:
    inner = Lookup(TABLE)
    references = ReferenceRewards(inner, {"p": ["ref1", "ref2"]})
    for transform in (Capped(inner, 2), Centred(references), PreferenceAsReward(references),
                      LengthPenalty(inner, limit=2, weight=0.5), Constrained(inner, WordLimit(2)),
                      Weighted([inner, Capped(inner, 0)], [1, 1])):
        assert isinstance(transform, Scorer) and transform.name and transform.version


def test_capping_centring_and_par_are_the_published_formulas() -> None:
    inner = Lookup(TABLE)
    np.testing.assert_allclose(Capped(inner, 2).score(["p"] * 3, ["a", "b", "c"]), [1, 2, -2])
    references = ReferenceRewards(inner, {"p": ["ref1", "ref2"], "q": ["ref2"]})
    np.testing.assert_allclose(Centred(references).score(["p", "q"], ["b", "b"]), [3 - 1, 3 - 2])
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = [(sigmoid(3 - 0) + sigmoid(3 - 2)) / 2, sigmoid(2 * (-2 - 2))]
    np.testing.assert_allclose(PreferenceAsReward(references, k=1).score(["p"], ["b"])[0], expected[0])
    np.testing.assert_allclose(PreferenceAsReward(references, k=2).score(["q"], ["c"])[0], expected[1])


def test_reference_rewards_are_scored_once_per_prompt() -> None:
    inner = Lookup(TABLE)
    par = PreferenceAsReward(ReferenceRewards(inner, {"p": ["ref1", "ref2"], "q": ["ref1"]}))
    for _ in range(5):
        par.score(["p", "q", "p"], ["a", "b", "c"])
    assert par.references.scored == 2
    assert inner.scored == 5 * 3 + 3  # the answers every time, the three references once
    with pytest.raises(ValueError, match="no reference answers for prompt 'z'"):
        par.score(["z"], ["a"])
    with pytest.raises(ValueError, match="has no reference answers"):
        ReferenceRewards(inner, {"p": []})


def test_length_penalty_and_constraint_charge_only_past_the_limit() -> None:
    inner = Lookup(TABLE)
    assert word_count(" one two\nthree ") == 3
    np.testing.assert_allclose(LengthPenalty(inner, limit=2, weight=0.5).score(["p"] * 2, ["a", "one two three four"]),
                               [1.0, 5.0 - 0.5 * 2])
    constrained = Constrained(inner, WordLimit(2), floor=-1.0)
    np.testing.assert_allclose(constrained.score(["p"] * 2, ["b", "one two three four"]), [3.0, -1.0])


def test_a_weighted_combination_normalizes_its_rewards_when_asked() -> None:
    small = Lookup({"x": 0.0, "y": 1.0, "z": 2.0})
    large = Lookup({"x": 0.0, "y": 100.0, "z": 200.0})
    raw = Weighted([small, large], [1.0, 1.0])
    np.testing.assert_allclose(raw.score(["p"] * 3, ["x", "y", "z"]), [0, 101, 202])
    scaled = Weighted([small, large], [1.0, 1.0], normalization="zscore").fit(["p"] * 3, ["x", "y", "z"])
    values = scaled.score(["p"] * 3, ["x", "y", "z"])
    np.testing.assert_allclose(values, 2 * (np.array([0, 1, 2]) - 1) / np.std([0, 1, 2]))
    with pytest.raises(ValueError, match="one weight per reward"):
        Weighted([small], [1.0, 2.0])


def test_a_non_finite_inner_reward_is_reported_never_averaged() -> None:
    broken = Lookup({"a": float("nan")})
    with pytest.raises(ScoreError, match="non-finite"):
        Capped(broken, 1).score(["p"], ["a"])
    with pytest.raises(ScoreError, match="the reference scorer 'lookup'"):
        PreferenceAsReward(ReferenceRewards(Lookup({"a": 1.0, "r": float("inf")}), {"p": ["r"]})).score(["p"], ["a"])


def test_a_transform_is_a_trl_reward_function() -> None:
    pytest.importorskip("transformers")
    from goodhartlab.integrations.trl import ScorerReward

    inner = Lookup(TABLE)
    reward = ScorerReward(PreferenceAsReward(ReferenceRewards(inner, {"p": ["ref1", "ref2"]})))
    values = reward(prompts=["p", "p"], completions=["a", "b"])
    assert reward.__name__ == "par-lookup" and all(0 < v < 1 for v in values if v is not None)
