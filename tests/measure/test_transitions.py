import numpy as np
import pytest

from goodhartlab.measure.curve import Curve
from goodhartlab.measure.synthetic import planted_curve, transition_detector_rates
from goodhartlab.measure.transitions import detect_transition, find_onset, find_peak


def test_detector_rates_on_planted_curves():
    rates = transition_detector_rates(150, seed=4)
    assert rates["detection_rate"] >= 0.9
    assert rates["false_positive_rate_gradual"] <= 0.1
    assert rates["false_positive_rate_control"] <= 0.05


def test_sharp_drop_is_located_with_an_interval():
    planted = planted_curve("sharp", break_level=7, seed=1)
    result = detect_transition(planted.curve)
    assert result.detected
    assert result.between == (7.0, 8.0)
    assert result.break_interval is not None and result.break_interval[0] <= 7 <= result.break_interval[1]
    onset = find_onset(planted.curve)
    assert onset.pressure == 8.0
    assert onset.frequency > 0.9


def test_no_flag_when_the_proxy_falls_with_gold():
    planted = planted_curve("sharp", break_level=6, seed=2)
    curve = planted.curve
    falling_proxy = curve.proxy - 5.0 * (curve.pressure > 6)
    result = detect_transition(Curve(curve.pressure, falling_proxy, curve.gold, "capability"))
    assert not result.detected and not result.proxy_rising


def test_peak_and_onset_of_an_inverted_u():
    x = np.linspace(0, 10, 21)
    rng = np.random.default_rng(0)
    gold = -((x - 4) ** 2) / 8 + rng.normal(0, 0.05, (4, x.size))
    proxy = x + rng.normal(0, 0.05, (4, x.size))
    curve = Curve(x, proxy, gold)
    peak = find_peak(curve)
    assert peak.pressure == pytest.approx(4.0, abs=0.5)
    assert peak.interval is not None and peak.interval[0] <= 4.0 <= peak.interval[1]
    onset = find_onset(curve)
    assert onset.pressure is not None and 4.0 < onset.pressure <= 6.0


def test_monotone_curve_has_no_onset():
    x = np.arange(8.0)
    curve = Curve(x, x[None, :] * 1.0, x[None, :] * 0.5)
    assert find_onset(curve).pressure is None
    assert not detect_transition(curve).detected


def test_curve_validation():
    with pytest.raises(ValueError, match="increasing"):
        Curve(np.array([0.0, 0.0]), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        Curve(np.array([0.0, 1.0]), np.zeros((1, 3)), np.zeros((1, 2)))


def test_a_fall_on_one_seed_with_too_few_levels_to_estimate_noise_is_not_significant():
    curve = Curve(np.array([0.0, 1.0, 2.0]), np.array([[0.0, 1.0, 2.0]]), np.array([[0.0, 1.0, 0.999]]))
    assert np.isnan(curve.gold_noise()).all()
    result = detect_transition(curve)
    assert not result.detected and np.isnan(result.drop_z)
    assert "noise unknown" in str(result)
    assert find_onset(curve).pressure is None
