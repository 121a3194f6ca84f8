"""The learned proxy: comparisons, the Bradley–Terry fit, and the data-size knob."""

from __future__ import annotations

import numpy as np
import pytest

from goodhartlab.rewards.bradley_terry import comparison_pairs, fit_bradley_terry


def test_comparisons_are_distinct_pairs_within_a_prompt() -> None:
    pairs = comparison_pairs(3, 5, 30, np.random.default_rng(0))  # all 3 x C(5, 2) comparisons
    assert len({tuple(p) for p in pairs}) == 30
    assert np.all(pairs[:, 1] < pairs[:, 2]) and pairs[:, 0].max() == 2
    with pytest.raises(ValueError, match="asked for 31 comparisons but 3 prompts with pools of 5 give only 30"):
        comparison_pairs(3, 5, 31, np.random.default_rng(0))


def planted(prompts: int, pool: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first coordinate is the gold reward; the rest is noise."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((prompts, pool, width))
    return features, features[..., 0].copy()


def held_out_agreement(pairs: int, seed: int) -> float:
    features, gold = planted(8, 16, 64, seed)
    head = fit_bradley_terry(features, gold, comparison_pairs(8, 16, pairs, np.random.default_rng(seed)))
    test_features, test_gold = planted(1, 400, 64, seed + 100)
    reward = head.reward(test_features[0])
    a, b = np.triu_indices(400, k=1)
    return float(np.mean((reward[a] > reward[b]) == (test_gold[0][a] > test_gold[0][b])))


def test_more_pairs_give_a_proxy_that_agrees_with_gold_more_often() -> None:
    few = np.mean([held_out_agreement(16, seed) for seed in range(3)])
    many = np.mean([held_out_agreement(900, seed) for seed in range(3)])
    assert 0.5 < few < many
    assert many > 0.9  # 900 comparisons pin down one direction in 64 dimensions


def test_the_reward_is_antisymmetric_in_the_pair() -> None:
    """Each comparison enters in both orders, so swapping every label flips the weights."""
    features, gold = planted(4, 8, 6, 0)
    pairs = comparison_pairs(4, 8, 100, np.random.default_rng(0))
    forward = fit_bradley_terry(features, gold, pairs)
    backward = fit_bradley_terry(features, -gold, pairs)
    np.testing.assert_allclose(forward.weights, -backward.weights, atol=1e-6)
    np.testing.assert_allclose(forward.reward(features), -backward.reward(features), atol=1e-6)
