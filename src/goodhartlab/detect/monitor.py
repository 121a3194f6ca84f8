"""Watching one run: the detectors a user can run without labels, with the thresholds the benchmark calibrated.

`Monitor` is what `goodhartlab monitor` replays a log through and what the training callbacks (TRL, Stable-
Baselines3) update at every logged step. Its thresholds, and what each detector is known to do (false alarms on
healthy twins, lead time, AUROC), come from the detection benchmark (`goodhartlab detect bench`), stored with the
package in `calibration.json`; without it the detectors use their own default thresholds, and the monitor says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from goodhartlab.detect.base import Alarm
from goodhartlab.detect.registry import DETECTORS, AnyDetector, make_detector
from goodhartlab.detect.rows import Row, RunContext, as_row

CALIBRATION_FILE = "calibration.json"
TRAINED_DETECTORS = ("fused_logistic",)
"""Detectors that must be trained on labelled runs first: not run by a monitor unless the calibration holds them."""


@dataclass(frozen=True)
class Calibrated:
    """One detector's benchmark threshold, and how it did on held-out environments at that threshold."""

    detector: str
    threshold: float
    false_alarms_per_1k: float | None  # per 1,000 healthy-twin evaluations
    false_positive_rate: float | None  # share of healthy twins with any alarm
    true_positive_rate: float | None  # share of hacked runs alarmed
    median_lead: float | None  # evaluations from the alarm to gold's onset; negative: late
    auroc: float | None
    benchmark: str  # which benchmark version and tier

    def describe(self) -> str:
        def shown(value: float | None, fmt: str) -> str:
            return "?" if value is None or not math.isfinite(value) else format(value, fmt)

        return (f"benchmark ({self.benchmark}): {shown(self.false_alarms_per_1k, '.1f')} false alarms per 1,000 "
                f"healthy evaluations, median lead {shown(self.median_lead, '+.0f')} evaluations, AUROC "
                f"{shown(self.auroc, '.2f')}")


def load_calibration(path: str | Path | None = None) -> dict[str, Calibrated]:
    """The benchmark's thresholds: `path`, or the package's own file; empty when there is none."""
    try:
        text = (Path(path).read_text(encoding="utf-8") if path is not None else
                resources.files(__package__).joinpath(CALIBRATION_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if path is not None:
            raise ValueError(f"{path}: no such calibration file") from None
        return {}
    try:
        data = json.loads(text)
        return {entry["detector"]: Calibrated(**entry) for entry in data["detectors"]}
    except (ValueError, KeyError, TypeError) as error:
        where = path or f"goodhartlab/detect/{CALIBRATION_FILE}"
        raise ValueError(f"{where}: not a calibration file ({error})") from None


class Monitor:
    """The detectors of one run, updated a row at a time.

    `detectors`: names from `goodhartlab.detect.DETECTORS` (default: every one that needs no training), or built
    detectors. Each named detector takes its threshold from `calibration` (default: the benchmark's)."""

    def __init__(self, detectors: Sequence[str | AnyDetector] | None = None,
                 calibration: Mapping[str, Calibrated] | None = None) -> None:
        self.calibration = dict(load_calibration() if calibration is None else calibration)
        chosen = detectors if detectors is not None else [name for name in DETECTORS
                                                          if name not in TRAINED_DETECTORS]
        self.detectors: list[AnyDetector] = []
        for item in chosen:
            if isinstance(item, str):
                if item not in DETECTORS:
                    raise ValueError(f"unknown detector {item!r}; known: {', '.join(DETECTORS)}")
                if item in TRAINED_DETECTORS:
                    raise ValueError(f"{item} must be trained on labelled runs before it can watch one; run it "
                                     "through the benchmark (goodhartlab detect bench)")
                detector = make_detector(item)
                known = self.calibration.get(item)
                if known is not None:
                    detector.threshold_ = known.threshold  # fitted on the benchmark's healthy runs
                self.detectors.append(detector)
            else:
                self.detectors.append(item)
        self.alarms: list[Alarm] = []

    @property
    def calibrated(self) -> bool:
        return any(detector.name in self.calibration for detector in self.detectors)

    @property
    def skipped(self) -> dict[str, str]:
        """The detectors with nothing to say about this run (a signal it does not carry), with why."""
        return {detector.name: reason for detector in self.detectors if (reason := detector.skip_reason) is not None}

    @property
    def running(self) -> list[str]:
        skipped = self.skipped
        return [detector.name for detector in self.detectors if detector.name not in skipped]

    def start(self, context: RunContext | None = None) -> None:
        """A new run: every detector reset (a context whose signals are known skips, at once, the detectors that
        need another)."""
        self.alarms = []
        for detector in self.detectors:
            detector.reset(context)

    def update(self, row: Row | Mapping[str, Any]) -> list[Alarm]:
        """Feed one logged evaluation to every detector; the alarms it raised."""
        row = as_row(row)
        raised = [alarm for detector in self.detectors if (alarm := detector.update(row)) is not None]
        self.alarms += raised
        return raised

    def describe(self, alarm: Alarm) -> str:
        """One line: where the alarm is, on what, and what the benchmark says of its detector."""
        kl = "" if alarm.kl is None else f" (KL {alarm.kl:.3g} nats)"
        known = self.calibration.get(alarm.detector)
        record = known.describe() if known is not None else "uncalibrated: the detector's default threshold"
        return f"step {alarm.step:g}{kl}: {alarm.detector} on {alarm.signal} [{alarm.access}] — {record}"
