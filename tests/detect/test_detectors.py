"""Each detector fires on a planted hack and stays quiet on its healthy twin when the case is clear, and its
building blocks agree with the libraries they stand in for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2

from goodhartlab.detect import (
    ENVIRONMENTS,
    CusumStatistic,
    FusedDetector,
    LawAlarm,
    MahalanobisScorer,
    PageHinkleyStatistic,
    fit_logistic,
    hellinger_distance,
    jensen_shannon_distance,
    ledoit_wolf,
    make_detector,
    synthetic_benchmark,
)
from goodhartlab.detect.scoring import gold_budget, leave_one_environment_out
from tests.detect.clear_cases import ONSET, clear_twins

CLEAR_CASES = {
    "proxy_saturation": "proxy_ceiling", "kl_acceleration": "kl_jump", "length_drift": "length",
    "entropy_collapse": "entropy", "distinct_n_collapse": "distinct_n", "ensemble_disagreement": "ensemble",
    "cusum_proxy_slope": "proxy_jump", "cusum_kl_slope": "kl_jump", "page_hinkley_proxy_slope": "proxy_jump",
    "page_hinkley_kl_slope": "kl_jump", "pan_js": "policy", "pan_hellinger": "policy",
    "latent_outlier": "embeddings", "law_alarm": "law",
}


@pytest.mark.parametrize(("name", "signal"), CLEAR_CASES.items())
def test_fires_on_the_planted_hack_and_stays_quiet_on_its_twin(name, signal):
    detector = make_detector(name)

    def seen(run):  # as its access level sees the run; the law alarm with one gold evaluation in 10
        return run.restricted(detector.access, gold_every=gold_budget(detector, 10))

    detector.fit([seen(clear_twins(signal, seed)[1]) for seed in range(100, 140)], false_alarm_rate=0.025)
    fired, quiet = 0, 0
    for seed in range(8):
        hacked, healthy = clear_twins(signal, seed)
        alarms = detector.trace(seen(hacked)).alarms
        fired += bool(alarms) and ONSET <= alarms[0].index <= ONSET + 25
        quiet += not detector.trace(seen(healthy)).alarms
    assert fired >= 7, f"{name} caught {fired} of 8 planted hacks within 25 evaluations of the onset"
    assert quiet >= 7, f"{name} alarmed on {8 - quiet} of 8 healthy twins"


def test_the_fused_detector_learns_from_some_environments_and_scores_a_held_out_one():
    bench = synthetic_benchmark(ENVIRONMENTS[:3], pairs=5)
    scores = leave_one_environment_out(bench, FusedDetector)
    pooled = scores[-1]
    assert pooled.auroc is not None and pooled.auroc > 0.8
    detector = FusedDetector()
    assert detector.skip_reason is not None and "train" in detector.skip_reason


def test_the_law_alarm_refuses_a_law_that_does_not_describe_the_data():
    hacked, _ = clear_twins("law", 0)
    falling = 1.0 - 0.3 * np.sqrt(hacked.kl)  # gold falls from the start: α ≤ 0 is outside the law's domain
    detector = LawAlarm()
    detector.reset()
    for step, kl, gold in zip(hacked.step, hacked.kl, falling, strict=True):
        assert detector.update({"step": step, "kl": kl, "gold": gold}) is None
    assert detector.verdict_ is not None and "≤ 0" in detector.verdict_


# -- building blocks against the libraries they stand in for ---------------------------------------------------


def test_ledoit_wolf_matches_scikit_learn_also_with_more_dimensions_than_samples():
    covariance = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(0)
    for n, p in ((200, 10), (30, 60)):
        samples = rng.standard_normal((n, p)) @ rng.standard_normal((p, p))
        ours, shrinkage = ledoit_wolf(samples)
        theirs, their_shrinkage = covariance.ledoit_wolf(samples)
        assert shrinkage == pytest.approx(their_shrinkage, rel=1e-10)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_mahalanobis_scorer_matches_a_per_sample_computation():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    batch = rng.standard_normal((50, 5)) * 3
    scorer = MahalanobisScorer().fit(reference)
    covariance, _ = ledoit_wolf(reference)
    precision = np.linalg.inv(covariance)
    centred = batch - reference.mean(axis=0)
    expected = np.array([row @ precision @ row for row in centred])
    np.testing.assert_allclose(scorer.squared_distances(batch), expected, rtol=1e-9)
    np.testing.assert_allclose(scorer.p_values(batch), chi2.sf(expected, 5), rtol=1e-9)
    with pytest.raises(ValueError, match="embeddings must be"):
        scorer.squared_distances(rng.standard_normal((3, 4)))


def test_page_hinkley_detects_where_river_does():
    drift = pytest.importorskip("river.drift")
    rng = np.random.default_rng(2)
    stream = np.concatenate([rng.normal(0, 1, 300), rng.normal(1.5, 1, 300)])
    theirs = drift.PageHinkley(min_instances=1, delta=0.005, threshold=20.0, mode="up")
    ours = PageHinkleyStatistic(delta=0.005)
    their_first = our_first = None
    for index, value in enumerate(stream):
        theirs.update(value)
        ours.update(value)
        if their_first is None and theirs.drift_detected:
            their_first = index
        if our_first is None and ours.increase > 20.0:
            our_first = index
    assert their_first is not None and our_first == their_first


def test_cusum_accumulates_a_shift_and_forgives_noise():
    cusum = CusumStatistic(drift=0.5)
    for value in [0.3, -0.2, 0.4, -0.1]:
        cusum.update(value)
    assert cusum.upper == 0.0
    for _ in range(4):
        cusum.update(2.0)
    assert cusum.upper == pytest.approx(4 * 1.5)
    assert cusum.lower == 0.0


def test_trusted_policy_distances_against_scipy_and_known_values():
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(4), 6), rng.dirichlet(np.ones(4), 6)
    np.testing.assert_allclose(jensen_shannon_distance(p, q), jensenshannon(p, q, axis=1), rtol=1e-10)
    assert hellinger_distance([[1.0, 0.0]], [[0.0, 1.0]]) == pytest.approx([1.0])
    assert jensen_shannon_distance([[1.0, 0.0]], [[0.0, 1.0]]) == pytest.approx([np.sqrt(np.log(2))])
    same = rng.dirichlet(np.ones(50), 3)
    assert np.all(jensen_shannon_distance(same, same) == 0.0)  # scipy gives NaN for some identical rows


def test_logistic_regression_matches_scikit_learn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 3))
    y = (x @ np.array([1.5, -2.0, 0.0]) + 0.3 + rng.standard_normal(400) > 1.0).astype(float)
    coef, intercept = fit_logistic(x, y, c=0.5)
    model = linear_model.LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(coef, model.coef_[0], atol=1e-4)
    assert intercept == pytest.approx(model.intercept_[0], abs=1e-4)
