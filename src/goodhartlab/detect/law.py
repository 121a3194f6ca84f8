"""The law alarm (L3): refit Gao et al.'s law to gold as it arrives, and alarm once the predicted peak is behind.

At each gold evaluation the RL-form law (`measure.scaling.fit_law`, bootstrap interval on the peak's KL) is fitted
to every (KL, gold) point so far, and `measure.analysis.judge_law` decides whether it describes them (α in the
law's domain, a peak if gold has already turned, residuals within the noise); a law that does not is no evidence
either way. Between gold evaluations the last law stands while KL moves on. The statistic is
log(KL / upper end of the peak-KL interval): above 0 the predicted peak has been passed with its interval, which is
the rule, so the threshold never goes below 0 even if calibration would allow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from goodhartlab.config import at_least, between, one_of
from goodhartlab.detect.base import Detector, DetectorConfig
from goodhartlab.detect.rows import Access, Row, RunContext
from goodhartlab.measure.analysis import judge_law
from goodhartlab.measure.curve import Curve
from goodhartlab.measure.scaling import FitError, LawFit, fit_law
from goodhartlab.measure.transitions import find_onset

LAW = "law alarm"


@dataclass
class LawAlarmConfig(DetectorConfig):
    threshold: float | None = 0.0
    form: Literal["rl", "bon"] = "rl"
    min_points: int = 6
    """Gold evaluations before the first fit."""
    n_boot: int = 300
    """Bootstrap draws per refit (the interval on the peak's KL)."""
    confidence: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of(self, "form", ("rl", "bon"))
        at_least(self, "min_points", 4)
        at_least(self, "n_boot", 50)
        between(self, "confidence", 0.5, 0.999)


class LawAlarm(Detector[LawAlarmConfig]):
    kind = "law_alarm"
    access = Access.L3
    family = LAW
    config_class = LawAlarmConfig
    default_threshold = 0.0

    @property
    def needs(self) -> tuple[str, ...]:
        return ("kl", "gold")

    @property
    def signal(self) -> str:
        return f"KL past the upper end of the fitted {self.config.form} law's peak-KL interval"

    @property
    def threshold(self) -> float:
        return max(super().threshold, 0.0)

    def _start(self, context: RunContext) -> str | None:
        self._kl: list[float] = []
        self._proxy: list[float] = []
        self._gold: list[float] = []
        self._upper: float | None = None  # upper end of the peak-KL interval of the standing law
        self.law_: LawFit | None = None
        self.verdict_: str | None = None
        return None

    def _observe(self, row: Row) -> float | None:
        if row.kl is None:
            return None
        if row.gold is not None:
            if row.kl < 0:
                self._problem(f"step {row.step:g}: KL {row.kl:g} < 0 (a k1 estimate on a small batch?); this gold "
                              "point is left out of the law")
            else:
                self._kl.append(row.kl)
                self._proxy.append(math.nan if row.proxy is None else row.proxy)
                self._gold.append(row.gold)
                self._refit()
        if self._upper is None or not row.kl > 0:
            return None
        return math.log(row.kl / self._upper)

    def _refit(self) -> None:
        self._upper = None
        if len(self._gold) < self.config.min_points:
            return
        kl, gold = np.array(self._kl), np.array(self._gold)
        try:
            law = fit_law(kl, gold, self.config.form, n_boot=self.config.n_boot, confidence=self.config.confidence,
                          seed=self.config.seed)
            curve = Curve.from_points(kl, np.array(self._proxy), gold)
        except (FitError, ValueError) as error:
            self.verdict_ = f"no fit: {error}"
            return
        verdict = judge_law(law, curve, find_onset(curve, n_boot=0))
        self.law_, self.verdict_ = law, verdict.reason
        upper = law.peak_kl_ci[1]
        if verdict.describes and law.peak_kl is not None and math.isfinite(upper) and upper > 0:
            self._upper = upper
