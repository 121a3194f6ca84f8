"""Synthetic Goodhart fixtures with known answers (research/rlhf-anchors.md §1.6, §4.2)."""

import numpy as np
import pytest

from goodhartlab.measure.bestofn import bestofn_curve
from goodhartlab.measure.synthetic import ensemble_pool, goodhart_pool
from goodhartlab.rewards.ensemble import EnsembleReward, error_correlation

NS = [1, 4, 16, 64, 256, 1024]


def test_regressional_goodhart_matches_the_closed_form():
    # gold ~ N(0,1), proxy = gold + N(0,1): best-of-n gold = e_n/√2 (Gao et al. 2022 §4.1).
    # e_n/√2 at n = 4 … 1024: 0.727, 1.248, 1.658, 1.998, 2.300 [measured, rlhf-anchors §1.6].
    proxy, gold = goodhart_pool(400, 2048, seed=11)
    curve = bestofn_curve(proxy, gold, NS)
    expected = [0.0, 0.727, 1.248, 1.658, 1.998, 2.300]
    # 3 standard errors over prompts, plus the finite-pool bias at n = 1024 of a 2,048 pool
    # (the pool's own maximum caps the selection; about 0.03 here).
    tolerance = 3 * curve.gold_se + np.array([0, 0, 0, 0, 0.01, 0.04])
    assert np.all(np.abs(curve.gold - expected) < tolerance)
    assert np.all(np.diff(curve.gold) > 0)


def test_extremal_goodhart_peaks_near_16_and_falls_back():
    # Student-t(1.5) noise: gold 0.03, 0.51, 0.57, 0.30, 0.13, 0.02 [measured, rlhf-anchors §1.6].
    proxy, gold = goodhart_pool(400, 2048, df=1.5, seed=12)
    curve = bestofn_curve(proxy, gold, NS)
    assert curve.ns[np.argmax(curve.gold)] == 16
    assert curve.gold.max() == pytest.approx(0.55, abs=0.08)
    assert curve.gold[-1] < 0.1
    assert np.all(np.diff(curve.proxy) > 0)


def _gold_at_largest_n(shared: float, aggregation: str, seed: int = 21) -> np.ndarray:
    members, gold = ensemble_pool(200, 2048, shared=shared, seed=seed)
    if aggregation == "single":
        proxy = members[0]
    else:
        reference = members[:, :, :256].reshape(5, -1)
        proxy = EnsembleReward(aggregation, 0.5).fit(reference).aggregate(members)
    return bestofn_curve(proxy, gold, NS).gold


def test_conservative_ensembles_resist_independent_heavy_tailed_errors():
    # Coste et al. 2023 in miniature: WCO 2.58, UWO 2.61, single 0.04, mean 0.09 at n = 1024
    # [measured, rlhf-anchors §4.2].
    for aggregation in ("worst", "uncertainty"):
        curve = _gold_at_largest_n(0.0, aggregation)
        assert curve[-1] == pytest.approx(2.6, abs=0.15)
        assert np.all(np.diff(curve) > 0)
    for aggregation in ("single", "mean"):
        curve = _gold_at_largest_n(0.0, aggregation)
        assert curve[-1] < 0.2
        assert curve.max() > 2 * curve[-1]


@pytest.mark.parametrize("shared", [0.5, 0.9])
def test_shared_errors_remove_the_ensemble_advantage(shared):
    # Eisenstein et al. 2023: with shared errors WCO peaks near 0.5–0.7 and falls to ~0.1.
    for aggregation in ("worst", "uncertainty"):
        curve = _gold_at_largest_n(shared, aggregation)
        assert curve.max() < 0.8
        assert curve[-1] < 0.2


def test_effective_size_tracks_shared_errors():
    sizes = []
    for shared in (0.0, 0.5, 0.9):
        members, gold = ensemble_pool(20, 1000, shared=shared, seed=3)
        sizes.append(error_correlation(members.reshape(5, -1), gold.ravel()).effective_size)
    assert sizes[0] > 4.5
    assert sizes[0] > sizes[1] > sizes[2]
    assert sizes[2] < 1.5
