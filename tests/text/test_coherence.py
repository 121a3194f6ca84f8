"""The hardened gold: Gemma's coherence factor and token repetition, and the stored samples it must hold on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from goodhartlab.text.coherence import CoherenceLevels, CoherenceModel, distinct_fraction, load_levels

SAMPLES = Path(__file__).parent / "data" / "gold_samples.json"


def test_distinct_fraction_counts_repeated_pairs_of_any_unit() -> None:
    assert distinct_fraction(list("abcdef")) == 1.0
    assert distinct_fraction([7, 9, 9, 9, 9, 9]) == pytest.approx(2 / 5)
    assert distinct_fraction(["x"]) == distinct_fraction(["x", "x"]) == 1.0  # too short to repeat a pair


def test_levels_map_log_likelihood_to_a_factor_and_refuse_a_reversed_pair() -> None:
    levels = CoherenceLevels(fluent=-5.0, incoherent=-7.0, provenance={})
    np.testing.assert_allclose(levels.factor(np.array([-4.0, -5.0, -6.0, -7.0, -9.0])), [1, 1, 0.5, 0, 0])
    assert CoherenceLevels.from_json(levels.to_json()) == levels
    with pytest.raises(ValueError, match="must be above"):
        CoherenceLevels(fluent=-7.0, incoherent=-5.0, provenance={})


def test_shipped_levels_carry_their_provenance() -> None:
    levels = load_levels()
    assert levels.fluent > levels.incoherent
    assert "regenerate" in levels.provenance and "Gemma" in levels.provenance["model"]


def test_log_likelihoods_are_the_models_own_and_do_not_depend_on_padding(tmp_path: Path, one_thread: None) -> None:
    """The response tokens' mean log-probability after the context, whatever else shares the batch."""
    import torch

    from goodhartlab.text.models import load_policy
    from goodhartlab.text.tiny import tiny_policy

    model, tokenizer = load_policy(str(tiny_policy(tmp_path / "tiny")))
    scorer = CoherenceModel(model=model, tokenizer=tokenizer, context="ctx: ", batch_size=4)
    contexts = ["the hotel", "", "a much longer opener than the rest"]
    responses = [" was fine.", " great!", " and we loved it"]
    together, tokens = scorer.log_likelihoods(contexts, responses)
    alone = [scorer.log_likelihoods([c], [r])[0][0] for c, r in zip(contexts, responses, strict=True)]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    ids = tokenizer("ctx: the hotel")["input_ids"] + tokens[0]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
    expected = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])][-len(tokens[0]):].mean()
    assert together[0] == pytest.approx(float(expected), abs=1e-5)
    assert np.isnan(scorer.log_likelihoods(["x"], [""])[0][0])  # nothing to judge


def samples() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads(SAMPLES.read_text())["samples"]
    return rows


def test_the_stored_samples_say_where_each_came_from() -> None:
    rows = samples()
    kinds = {row["kind"] for row in rows}
    assert {"word_salad", "glued_repetition", "over_length", "fluent"} <= kinds
    assert all(row["source"] and row["task"] in ("sentiment", "short-review") for row in rows)


def scored(gold_name: str) -> list[tuple[dict[str, str], float]]:
    """Every stored sample with its task's gold under `gold_name`."""
    from goodhartlab.text.tasks import TASKS

    rows = samples()
    scores: dict[int, float] = {}
    for task_name in ("sentiment", "short-review"):
        gold = TASKS[task_name]().gold(gold_name)
        index = [i for i, row in enumerate(rows) if row["task"] == task_name]
        values = gold.score([rows[i]["prompt"] for i in index], [rows[i]["response"] for i in index])
        scores.update(zip(index, values.tolist(), strict=True))
    return [(row, scores[i]) for i, row in enumerate(rows)]


@pytest.mark.slow
@pytest.mark.assets
def test_the_hardened_gold_scores_degenerate_samples_far_below_fluent_reviews() -> None:
    """Word salad, glued repetition and over-length samples from our own studies score at
    least 0.3 below fluent reviews of the same sentiment (every sample here reads as positive to the head), each
    against the median fluent review of its task; the old gold lets the word salad and glued repetition through."""
    hardened, old = scored("multiemo-coherent"), scored("multiemo")
    for task_name in ("sentiment", "short-review"):
        fluent = np.median([s for row, s in hardened if row["task"] == task_name and row["kind"] == "fluent"])
        change = np.array([new - before for (row, new), (_, before) in zip(hardened, old, strict=True)
                           if row["task"] == task_name and row["kind"] == "fluent"])
        # ordinary reviews keep their scores: the typical one moves by less than 0.03, three in four by less than 0.05
        assert fluent > 0.7 and np.median(change) > -0.03 and np.mean(change > -0.05) >= 0.75
        for row, score in hardened:
            if row["task"] == task_name and row["kind"] != "fluent":
                assert score <= fluent - 0.3, (row["kind"], row["response"][:60], score, fluent)
    salad_old = [s for row, s in old if row["kind"] in ("word_salad", "glued_repetition")]
    assert np.median(salad_old) > 0.6  # what the hardened gold is for
