import numpy as np
import pytest

from goodhartlab.rewards.ensemble import EnsembleReward, error_correlation


def test_members_are_normalized_before_aggregation():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 1000))
    scaled = base * np.array([[1.0], [100.0], [0.01]]) + np.array([[0.0], [50.0], [-3.0]])
    for how in ("zscore", "robust"):
        ensemble = EnsembleReward("worst", normalization=how).fit(scaled)
        normalized = ensemble.normalize(scaled)
        np.testing.assert_allclose(np.median(normalized, axis=1), 0, atol=0.15)
        # Without normalization the member with the smallest scale decides every minimum.
        raw = EnsembleReward("worst", normalization="none").fit(scaled).aggregate(scaled)
        np.testing.assert_allclose(raw, scaled.min(axis=0))


def test_aggregations():
    scores = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    raw = {"normalization": "none"}
    assert EnsembleReward("mean", **raw).aggregate(scores).tolist() == [3.0, 2.0]
    assert EnsembleReward("worst", **raw).aggregate(scores).tolist() == [1.0, 2.0]
    uwo = EnsembleReward("uncertainty", 0.5, **raw).aggregate(scores)
    np.testing.assert_allclose(uwo, [3.0 - 0.5 * np.var([1, 3, 5]), 2.0])
    unbiased = EnsembleReward("uncertainty", 0.5, ddof=1, **raw).aggregate(scores)
    np.testing.assert_allclose(unbiased, [3.0 - 0.5 * np.var([1, 3, 5], ddof=1), 2.0])


def test_errors_are_clear():
    with pytest.raises(ValueError, match="aggregation"):
        EnsembleReward("median")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="fit"):
        EnsembleReward("mean").aggregate(np.ones((2, 3)))
    with pytest.raises(ValueError, match="member"):
        EnsembleReward("mean").fit(np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="not finite"):
        EnsembleReward("mean").fit(np.array([[1.0, np.inf, 1.0], [1.0, 2.0, 3.0]]))


def test_error_correlation_of_identical_members_is_one():
    rng = np.random.default_rng(1)
    gold = rng.normal(size=500)
    error = rng.normal(size=500)
    members = np.stack([gold + error, 2 * (gold + error) + 1, gold + error])
    result = error_correlation(members, gold)
    assert result.mean_pairwise == pytest.approx(1.0)
    assert result.effective_size == pytest.approx(1.0)


def test_error_correlation_of_two_members_matches_spearman():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    gold = rng.normal(size=400)
    shared = rng.normal(size=400)
    members = np.stack([gold + shared + rng.normal(size=400), gold + shared + rng.normal(size=400)])
    result = error_correlation(members, gold)
    design = np.column_stack([np.ones_like(gold), gold])
    errors = members - (design @ np.linalg.lstsq(design, members.T, rcond=None)[0]).T
    assert result.matrix.shape == (2, 2)
    assert result.mean_pairwise == pytest.approx(spearmanr(errors[0], errors[1]).statistic)
    assert 0.3 < result.mean_pairwise < 0.7  # half of each error is shared
    assert result.effective_size == pytest.approx(2 / (1 + result.mean_pairwise))
