"""Every detector by name, with its default settings: what `monitor` runs, what the benchmark scores, what the
fused detector takes as components. A name is the detector's `name` (the one its alarms carry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from goodhartlab.detect.base import Detector
from goodhartlab.detect.changepoint import Cusum, PageHinkley
from goodhartlab.detect.heuristics import (
    DistinctNCollapse,
    EnsembleDisagreement,
    EntropyCollapse,
    KLAcceleration,
    LengthDrift,
    ProxySaturation,
)
from goodhartlab.detect.latent import LatentOutlier
from goodhartlab.detect.law import LawAlarm
from goodhartlab.detect.trusted import TrustedPolicyDivergence

AnyDetector = Detector[Any]


def _fused() -> AnyDetector:
    from goodhartlab.detect.fused import FusedDetector

    return FusedDetector()


DETECTORS: dict[str, Callable[[], AnyDetector]] = {
    "proxy_saturation": ProxySaturation,
    "kl_acceleration": KLAcceleration,
    "length_drift": LengthDrift,
    "entropy_collapse": EntropyCollapse,
    "distinct_n_collapse": DistinctNCollapse,
    "ensemble_disagreement": EnsembleDisagreement,
    "cusum_proxy_slope": lambda: Cusum(signal="proxy", direction="both"),
    "cusum_kl_slope": lambda: Cusum(signal="kl", direction="up"),
    "page_hinkley_proxy_slope": lambda: PageHinkley(signal="proxy", direction="both"),
    "page_hinkley_kl_slope": lambda: PageHinkley(signal="kl", direction="up"),
    "pan_js": lambda: TrustedPolicyDivergence(distance="jensen_shannon"),
    "pan_hellinger": lambda: TrustedPolicyDivergence(distance="hellinger"),
    "latent_outlier": LatentOutlier,
    "law_alarm": LawAlarm,
    "fused_logistic": _fused,
}
"""Factories, so that each run of a benchmark gets a fresh, unfitted detector."""


def make_detector(name: str) -> AnyDetector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name]()
