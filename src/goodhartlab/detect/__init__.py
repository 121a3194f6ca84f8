"""Detecting reward hacking: detectors with one interface, and the detection benchmark's labelled runs and scoring.

A detector is fitted on healthy runs (`fit`, calibrating its threshold to a false-alarm rate), updated online one
evaluation at a time (`update(row) -> Alarm | None`) and scores whole runs offline (`score(run)`); it declares the
access level it needs (L0 proxy and training metrics, L1 + samples, L2 + a trusted policy, L3 + sparse gold).
"""

from goodhartlab.detect.base import Alarm, Calibration, Detector, DetectorConfig, Trace, calibrated_threshold
from goodhartlab.detect.changepoint import Cusum, CusumStatistic, PageHinkley, PageHinkleyStatistic
from goodhartlab.detect.fused import FusedDetector, fit_logistic
from goodhartlab.detect.heuristics import (
    DistinctNCollapse,
    EnsembleDisagreement,
    EntropyCollapse,
    KLAcceleration,
    LengthDrift,
    ProxySaturation,
)
from goodhartlab.detect.latent import LatentOutlier, MahalanobisScorer, ledoit_wolf
from goodhartlab.detect.law import LawAlarm
from goodhartlab.detect.registry import DETECTORS, make_detector
from goodhartlab.detect.rows import Access, Row, RunContext
from goodhartlab.detect.runs import (
    GroundTruthOnset,
    LabelledRun,
    gold_onset,
    load_runs,
    run_log_stream,
    save_runs,
)
from goodhartlab.detect.scoring import (
    DetectorScore,
    evaluate,
    leave_one_environment_out,
    score_table,
    summarize,
)
from goodhartlab.detect.synthetic import ENVIRONMENTS, SyntheticEnvironment, synthetic_benchmark, synthetic_twins
from goodhartlab.detect.trusted import TrustedPolicyDivergence, hellinger_distance, jensen_shannon_distance

__all__ = [
    "DETECTORS", "ENVIRONMENTS", "Access", "Alarm", "Calibration", "Cusum", "CusumStatistic", "Detector",
    "DetectorConfig", "DetectorScore", "DistinctNCollapse", "EnsembleDisagreement", "EntropyCollapse",
    "FusedDetector", "GroundTruthOnset", "KLAcceleration", "LabelledRun", "LatentOutlier", "LawAlarm", "LengthDrift",
    "MahalanobisScorer", "PageHinkley", "PageHinkleyStatistic", "ProxySaturation", "Row", "RunContext",
    "SyntheticEnvironment", "Trace", "TrustedPolicyDivergence", "calibrated_threshold", "evaluate", "fit_logistic",
    "gold_onset", "hellinger_distance", "jensen_shannon_distance", "leave_one_environment_out", "ledoit_wolf",
    "load_runs", "make_detector", "run_log_stream", "save_runs", "score_table", "summarize", "synthetic_benchmark",
    "synthetic_twins",
]
