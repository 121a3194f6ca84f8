"""The detector contract every detector keeps: fit / reset / update / score, alarms that carry their fields, a
reason (never a traceback) when a signal is missing, bad values reported and never averaged, and a calibrated
threshold that holds its false-alarm rate on new healthy runs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import binom

from goodhartlab.config import ConfigError
from goodhartlab.detect import (
    DETECTORS,
    Access,
    Alarm,
    Cusum,
    Detector,
    DetectorConfig,
    EntropyCollapse,
    LengthDrift,
    Row,
    RunContext,
    calibrated_threshold,
    make_detector,
    synthetic_twins,
)
from goodhartlab.detect.scoring import gold_budget
from goodhartlab.detect.synthetic import ENVIRONMENTS, SyntheticEnvironment

SHARP = ENVIRONMENTS[0]


@pytest.fixture(scope="module")
def twins():
    return synthetic_twins(SHARP, 0, samples=True)


@pytest.fixture(scope="module")
def fused_training():
    return [run for pair in range(3) for run in synthetic_twins(SHARP, 100 + pair, samples=True)]


def fresh(name, training):
    detector = make_detector(name)
    if hasattr(detector, "train"):
        detector.train(training)
    return detector


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_keeps_the_contract(name, twins, fused_training):
    detector = fresh(name, fused_training)
    hacked, healthy = (run.restricted(detector.access, gold_every=gold_budget(detector, 10)) for run in twins)
    assert isinstance(detector.access, Access) and detector.family and detector.name == name
    assert detector.fit([healthy]) is detector and detector.calibration_ is not None
    assert detector.calibration_.runs == 1 and not detector.calibration_.guaranteed  # 1 run cannot bound 5%
    score = detector.score(hacked)
    assert isinstance(score, float) and not math.isnan(score)
    detector.reset(hacked.context())
    alarms = [alarm for row in hacked.rows() if (alarm := detector.update(row)) is not None]
    for alarm in alarms:
        assert isinstance(alarm, Alarm)
        assert alarm.detector == name and alarm.access == str(detector.access) and alarm.signal
        assert alarm.step == hacked.step[alarm.index] and alarm.kl == hacked.kl[alarm.index]
        assert alarm.statistic > alarm.threshold
        assert set(alarm.to_dict()) >= {"step", "kl", "signal", "detector", "access"}
    assert detector.trace(hacked).alarms == alarms  # online and offline passes agree; reset clears the state
    assert detector.score(hacked) == score


def test_an_alarm_is_raised_once_per_crossing():
    detector = LengthDrift(warmup=3, window=2, threshold=0.5)
    lengths = [100, 100, 100, 100, 200, 200, 200, 100, 100, 100, 200, 200]
    alarms = [detector.update(Row(step=i, length=v)) for i, v in enumerate(lengths)]
    assert [i for i, a in enumerate(alarms) if a is not None] == [5, 11]


@pytest.mark.parametrize("name", DETECTORS)
def test_a_run_without_the_signal_is_skipped_with_a_reason(name, fused_training):
    hacked, _ = synthetic_twins(SHARP, 1)  # no samples: no embeddings, no policy distributions
    bare = replace(hacked, length=None, entropy=None, distinct_n=None, ensemble_scores=None,
                   gold=np.full(len(hacked), np.nan))
    detector = fresh(name, fused_training)
    trace = detector.trace(bare)
    if set(detector.needs) <= bare.signals:
        assert trace.skipped is None
        return
    assert trace.skipped is not None and "does not log" in trace.skipped
    assert math.isnan(trace.score) and not trace.alarms


def test_a_stream_without_the_signal_says_so_after_its_first_rows():
    detector = EntropyCollapse()
    detector.reset()  # a live stream: what it will carry is unknown
    for step in range(5):
        assert detector.update({"step": step, "kl": 0.1 * step, "proxy": 0.2}) is None
    assert detector.skip_reason == "no row so far carried entropy"


def test_a_healthy_set_without_the_signal_cannot_calibrate():
    _, healthy = synthetic_twins(SHARP, 2)
    with pytest.raises(ValueError, match="none of the 1 healthy run"):
        EntropyCollapse().fit([replace(healthy, entropy=None)])


def test_nan_and_infinite_values_are_reported_and_never_averaged():
    detector = LengthDrift(warmup=3, window=3)
    values = [100.0, 101.0, math.nan, 99.0, math.inf, 100.0, 100.0, 100.0]
    statistics = []
    for step, value in enumerate(values):
        detector.update({"step": step, "length": value})
        statistics.append(detector.last_statistic)
    assert detector.problem_count == 2
    assert "step 2: length is nan" in detector.problems[0] and "inf" in detector.problems[1]
    assert statistics[2] is None and statistics[4] is None
    assert all(s is None or math.isfinite(s) for s in statistics)
    assert statistics[-1] == pytest.approx(0.0, abs=0.02)  # the baseline is 100, 101, 99: no NaN in it
    embedding_row = Row(step=0, embeddings=np.array([[0.0, np.nan]]))
    assert embedding_row.bad_value("embeddings") == "1 non-finite value(s)"


def test_rows_from_mappings_name_a_misspelt_signal():
    with pytest.raises(ValueError, match="entropie"):
        Row.from_mapping({"step": 1, "entropie": 2.0})
    with pytest.raises(ValueError, match="must be a number"):
        Row.from_mapping({"step": 1, "kl": "high"})
    with pytest.raises(ValueError, match="needs its 'step'"):
        Row.from_mapping({"kl": 1.0})


def test_fit_refuses_hacked_runs_and_mixed_sources(twins):
    hacked, healthy = twins
    with pytest.raises(ValueError, match="healthy runs only"):
        Cusum().fit([healthy, hacked])
    with pytest.raises(ValueError, match="mixes real and synthetic"):
        Cusum().fit([healthy, replace(healthy, run_id="real-one", source="real")])


def test_settings_are_validated_once_with_the_field_named():
    with pytest.raises(ConfigError, match="warmup"):
        LengthDrift(warmup=1)
    with pytest.raises(ConfigError, match="false_alarm_rate"):
        LengthDrift(false_alarm_rate=1.0)
    with pytest.raises(ConfigError, match="widnow"):
        LengthDrift(widnow=5)
    with pytest.raises(ConfigError, match="signal"):
        Cusum(signal="gold")


def test_a_detector_cannot_declare_less_access_than_it_needs():
    class Peeking(Detector[DetectorConfig]):
        kind = "peeking"
        access = Access.L0
        family = "test"
        config_class = DetectorConfig
        default_threshold = 0.0
        needs = ("gold",)  # type: ignore[assignment]

        def _start(self, context: RunContext) -> None:
            return None

        def _observe(self, row: Row) -> float | None:
            return row.gold

    with pytest.raises(TypeError, match="declares access L0 but needs gold"):
        Peeking()


def test_the_conformal_threshold_bounds_the_rate():
    scores = list(range(1, 20))  # 19 scores: the 19th smallest is exceeded by a new one with p = 1/20
    assert calibrated_threshold(scores, 0.05) == (19.0, True)
    assert calibrated_threshold(scores, 0.5) == (10.0, True)
    assert calibrated_threshold(scores[:5], 0.05) == (5.0, False)


def test_every_environment_weighs_the_same_in_the_threshold_whatever_its_number_of_runs():
    many_quiet = [float(score) for score in range(1, 181)]  # 180 runs of one environment, scores 1..180
    few_loud = [1000.0 + score for score in range(1, 20)]  # 19 runs of another, all above them
    pooled, _ = calibrated_threshold(many_quiet + few_loud, 0.10)
    assert pooled < 1000  # pooled by run, the loud environment is under 10% of the runs: every one of them alarms
    groups = ["quiet"] * len(many_quiet) + ["loud"] * len(few_loud)
    threshold, guaranteed = calibrated_threshold(many_quiet + few_loud, 0.10, groups)
    assert guaranteed
    rates = [sum(score > threshold for score in runs) / len(runs) for runs in (many_quiet, few_loud)]
    assert sum(rates) / 2 <= 0.10 and rates[1] < 0.2  # the mean rate over environments holds, the loud one included
    assert calibrated_threshold(many_quiet, 0.10, ["quiet"] * len(many_quiet)) == calibrated_threshold(many_quiet, 0.10)
    with pytest.raises(ValueError, match="labels for"):
        calibrated_threshold(many_quiet, 0.10, ["quiet"])


def test_calibration_hits_its_false_alarm_target_on_new_healthy_runs():
    quiet = SyntheticEnvironment("calibration", rows=60)
    healthy = [synthetic_twins(quiet, pair)[1] for pair in range(600)]
    calibration, fresh_runs = healthy[:199], healthy[199:]
    rate = 0.1
    for detector in (EntropyCollapse(), Cusum(signal="kl", direction="up")):
        detector.fit(calibration, false_alarm_rate=rate)
        alarmed = sum(bool(detector.trace(run).alarms) for run in fresh_runs)
        low, high = binom.ppf([0.0005, 0.9995], len(fresh_runs), rate)
        assert low <= alarmed <= high, f"{detector.name}: {alarmed} of {len(fresh_runs)} healthy runs alarmed"
