import numpy as np
import pytest

from goodhartlab.measure.stats import (
    auroc,
    clopper_pearson_interval,
    prob_at_least_one,
    rate_upper_bound,
    rule_of_three,
    trials_needed,
    trials_to_bound,
    wilson_interval,
)


def test_zero_events_in_100k_bounds_the_rate_at_3e5():
    # Denison et al. 2024: a helpful-only model tampered 0/100,000 times (rlhf-anchors §6.3).
    assert rate_upper_bound(0, 100_000) <= 3.0e-5
    assert rate_upper_bound(0, 100_000) == pytest.approx(1 - 0.05 ** (1 / 100_000))
    assert rule_of_three(100_000) == pytest.approx(3.0e-5)


def test_planner_reproduces_denison_rate():
    # 45 reward overwrites in 32,768 episodes: 1,000 trials see one with probability 0.747.
    assert prob_at_least_one(45 / 32_768, 1_000) == pytest.approx(0.747, abs=5e-4)
    needed = trials_needed(45 / 32_768, 0.747)
    assert prob_at_least_one(45 / 32_768, needed) >= 0.747 > prob_at_least_one(45 / 32_768, needed - 1)
    assert trials_to_bound(3e-5) == pytest.approx(99_857, abs=2)


def test_intervals_against_known_values():
    # Wilson 95% for 10/100: (0.0552, 0.1744); Clopper–Pearson: (0.0490, 0.1762).
    assert wilson_interval(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    assert clopper_pearson_interval(10, 100) == pytest.approx((0.0490, 0.1762), abs=1e-4)
    assert clopper_pearson_interval(0, 10)[0] == 0.0
    assert clopper_pearson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)


def test_auroc_against_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)
    labels = rng.integers(0, 2, 300)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    result = auroc(scores, labels)
    assert result.value == pytest.approx(pairwise)
    assert result.interval[0] < result.value < result.interval[1]


def test_auroc_interval_covers_the_truth():
    # Binormal model with d' = 1: AUC = Φ(1/√2) = 0.7602.
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        scores = np.r_[rng.normal(1, 1, 60), rng.normal(0, 1, 60)]
        labels = np.r_[np.ones(60), np.zeros(60)]
        low, high = auroc(scores, labels).interval
        covered += low <= 0.7602 <= high
    assert 0.9 <= covered / 200 <= 0.99


def test_auroc_errors():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        auroc([0.1, 0.2], [1, 2])
