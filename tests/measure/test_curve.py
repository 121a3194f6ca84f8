"""Curves from seeds: the grid the peak, its interval and the noise estimate are read on."""

import numpy as np
import pytest

from goodhartlab.measure.curve import Curve
from goodhartlab.measure.transitions import find_peak


def test_seeds_at_kl_of_their_own_are_interpolated_onto_the_range_all_reach():
    # two RL seeds, gold = −(KL − 4)² / 8 + a seed offset, logged at KLs of their own
    rng = np.random.default_rng(0)
    series = {}
    for seed, offset, reach in ((0, 0.0, 9.0), (1, 0.1, 7.5)):
        kl = np.sort(np.r_[0.0, rng.uniform(0.2, reach, 40)])
        series[seed] = (kl, kl * 2.0, -((kl - 4) ** 2) / 8 + offset)
    curve = Curve.from_seeds(series)
    assert curve.seeds == 2 and not np.isnan(curve.gold).any()
    assert curve.pressure[0] == 0.0 and curve.pressure[-1] <= 7.5  # no level beyond what seed 1 reached
    np.testing.assert_allclose(curve.gold[1] - curve.gold[0], 0.1, atol=0.05)  # interpolation error only
    peak = find_peak(curve)
    assert peak.pressure == pytest.approx(4.0, abs=0.8)
    assert peak.interval is not None  # both seeds at every level: resamples keep the grid


def test_seeds_on_a_shared_grid_keep_it_and_points_without_gold_drop_out():
    x = np.arange(5.0)
    gold_with_hole = np.array([0.0, 1.0, np.nan, 3.0, 4.0])
    curve = Curve.from_seeds({0: (x, x, x), 1: (x, x, gold_with_hole), 2: (x, x, x + 0.5)})
    np.testing.assert_array_equal(curve.pressure, x)
    assert np.isnan(curve.gold[1, 2]) and np.isfinite(np.delete(curve.gold, 2, axis=1)).all()
    with pytest.raises(ValueError, match="no point has gold"):
        Curve.from_seeds({0: (x, x, np.full(5, np.nan))})


def test_repeated_points_of_a_seed_are_averaged_not_overwritten():
    curve = Curve.from_points([0, 0, 1, 2], [1, 3, 1, 1], [5, 0, 1, 2])
    np.testing.assert_array_equal(curve.gold[0], [2.5, 1, 2])
    np.testing.assert_array_equal(curve.proxy[0], [2, 1, 1])
