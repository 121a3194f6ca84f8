import numpy as np
import pytest

from goodhartlab.measure.scaling import FitError, fit_law, law_peak, law_value


@pytest.mark.parametrize(("form", "alpha", "beta"), [("bon", 1.0, 0.25), ("rl", 1.0, 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_parameters_within_one_percent(form, alpha, beta, seed):
    # Gao et al.'s forms with R(0) = 0, 40 points, noise σ = 0.01 (rlhf-anchors §1.2 [measured]).
    rng = np.random.default_rng(seed)
    d = np.linspace(0.05, 3.5, 40)
    gold = law_value(d, alpha, beta, form) + rng.normal(0, 0.01, d.size)
    fit = fit_law(d**2, gold, form, intercept=False)
    assert fit.alpha == pytest.approx(alpha, rel=0.01)
    assert fit.beta == pytest.approx(beta, rel=0.01)
    assert fit.alpha_ci[0] <= alpha <= fit.alpha_ci[1] or abs(fit.alpha - alpha) < 0.005


def test_fit_with_intercept_recovers_offset_and_peak():
    d = np.linspace(0, 3, 30)
    gold = law_value(d, 1.0, 0.25, "bon", intercept=0.7)
    fit = fit_law(d**2, gold, "bon")
    assert fit.intercept == pytest.approx(0.7)
    assert fit.peak_kl == pytest.approx(4.0)  # d* = α/2β = 2
    assert fit.peak_gold == pytest.approx(0.7 + 1.0)  # α²/4β above the baseline
    assert fit.baseline_return_kl == pytest.approx(16.0)  # d = α/β = 4


def test_closed_forms():
    d_star, gain, zero = law_peak(1.0, 0.5, "rl")
    assert d_star == pytest.approx(np.exp(1.0))
    assert gain == pytest.approx(0.5 * np.exp(1.0))
    assert zero == pytest.approx(np.exp(2.0))
    assert law_value(d_star, 1.0, 0.5, "rl") == pytest.approx(gain)
    assert law_value(zero, 1.0, 0.5, "rl") == pytest.approx(0.0, abs=1e-12)
    assert np.isinf(law_peak(1.0, -0.1, "bon")[0])  # no peak when β ≤ 0


@pytest.mark.parametrize(("form", "alpha", "beta"), [("bon", 1.0, 0.25), ("rl", 1.2, 0.5)])
def test_early_data_fit_predicts_the_planted_peak_inside_its_interval(form, alpha, beta):
    rng = np.random.default_rng(7)
    seeds = 8
    d = np.linspace(0.1, 4.0, 25)
    d_star = float(law_peak(alpha, beta, form)[0])
    kl = np.tile(d**2, seeds)
    gold = law_value(np.sqrt(kl), alpha, beta, form) + rng.normal(0, 0.05, kl.size)
    groups = np.repeat(np.arange(seeds), d.size)
    early = 0.8 * d_star**2  # only data before the peak
    fit = fit_law(kl, gold, form, groups=groups, max_kl=early)
    low, high = fit.peak_kl_ci
    assert low <= d_star**2 <= high
    assert fit.extrapolation is not None
    assert fit.extrapolation.points_beyond == int((kl > early).sum())
    assert fit.extrapolation.rmse < 0.2


def test_fit_errors_are_clear():
    with pytest.raises(FitError, match="too few points"):
        fit_law([0.1, 0.2, 0.3], [0.0, 0.1, 0.2], "bon")
    with pytest.raises(FitError, match="span too little KL"):
        fit_law([1.0] * 6, [0.0, 0.1, 0.2, 0.1, 0.0, 0.3], "bon")
    with pytest.raises(ValueError, match="kl must be >= 0"):
        fit_law([-0.1, 0.2, 0.3, 0.4, 0.5], [0.0] * 5, "rl")
    with pytest.raises(ValueError, match="not finite"):
        fit_law([0.1, 0.2, 0.3, 0.4, 0.5], [0.0, np.nan, 0, 0, 0], "rl")
    with pytest.raises(ValueError, match="form"):
        fit_law([0.1, 0.2, 0.3, 0.4, 0.5], [0.0] * 5, "linear")  # type: ignore[arg-type]


def test_same_seed_same_numbers():
    rng = np.random.default_rng(0)
    kl = rng.uniform(0, 9, 60)
    gold = law_value(np.sqrt(kl), 1.0, 0.3, "bon") + rng.normal(0, 0.1, 60)
    assert fit_law(kl, gold, seed=3, form="bon") == fit_law(kl, gold, seed=3, form="bon")
