"""The sentiment task's gold reward: the shipped head reaches its accuracy on held-out MultiEmo reviews."""

from __future__ import annotations

import numpy as np
import pytest

from goodhartlab.rewards.bradley_terry import fit_logistic
from goodhartlab.text.gold import LogisticHead, load_head, split


def test_logistic_regression_recovers_a_planted_direction() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    truth = np.array([2.0, -1.0, 0.0, 0.5, 0.0])
    y = (rng.random(2000) < 1 / (1 + np.exp(-(x @ truth - 0.3)))).astype(float)
    w, b = fit_logistic(x, y, l2=0.0)
    np.testing.assert_allclose(w, truth, atol=0.2)
    assert b == pytest.approx(-0.3, abs=0.15)


def test_split_is_deterministic_and_disjoint() -> None:
    train, held_out = split(100)
    again = split(100)
    assert np.array_equal(train, again[0]) and np.array_equal(held_out, again[1])
    assert len(held_out) == 20 and not set(train) & set(held_out)


def test_shipped_head_carries_its_provenance() -> None:
    head = load_head()
    assert head.weights.shape == (384,)
    assert head.provenance["held_out_accuracy"] >= 0.85
    assert LogisticHead.from_json(head.to_json()).bias == head.bias


@pytest.mark.assets
def test_gold_head_accuracy_on_held_out_multiemo() -> None:
    """Acceptance: >= 0.85 held-out accuracy (positive vs negative, 1,080 reviews never used in training)."""
    from goodhartlab.text.gold import SentimentGold
    from goodhartlab.text.multiemo import multiemo

    reviews = multiemo()
    _, held_out = split(len(reviews))
    gold = SentimentGold()
    texts = [reviews[i].text for i in held_out]
    labels = np.array([reviews[i].label == "positive" for i in held_out])
    probability = gold.score(texts, [""] * len(texts))
    assert ((probability > 0.5) == labels).mean() >= 0.85
    happy, sad = gold.score(["The hotel was", "The hotel was"], [" wonderful, clean and friendly.",
                                                                  " dirty, noisy and the staff were rude."])
    assert happy > 0.5 > sad


def test_fluency_factor_spares_prose_and_sinks_repetition() -> None:
    from goodhartlab.text.gold import distinct_bigram_fraction

    assert distinct_bigram_fraction(" The staff were friendly and the room was clean.") == 1.0
    assert distinct_bigram_fraction(" love love love love love love") == pytest.approx(0.2)
    assert distinct_bigram_fraction(" great") == 1.0  # too short to repeat a bigram


def test_word_limit_factor_keeps_the_share_of_a_review_that_fits() -> None:
    from goodhartlab.text.gold import word_limit_factor

    assert word_limit_factor("one two three", 3) == 1.0
    assert word_limit_factor(" ".join(["word"] * 60), 30) == pytest.approx(0.5)
    assert word_limit_factor("", 30) == 1.0


@pytest.mark.assets
def test_short_review_gold_reads_the_answer_and_charges_for_words_past_the_limit() -> None:
    from goodhartlab.text.tasks import ShortReviewTask

    gold = ShortReviewTask(word_limit=10).gold()
    instruction = "Write a negative review: awful, terrible, dirty, rude."  # the gold must not read this
    short = "A lovely hotel: clean rooms and friendly staff."
    padded = short + " The breakfast was fresh, the beds soft, the view of the harbour wonderful."
    within, beyond = gold.score([instruction] * 2, [short, padded])
    assert within > 0.5
    assert beyond < within * 10 / len(padded.split()) + 0.05  # as positive as the short one, at most, times 10/24
    assert "response only" in gold.version and "within 10 words" in gold.version
