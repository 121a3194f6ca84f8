"""One reading of a curve: where gold peaks, where it starts to fall, whether the fall is a transition,
and whether a fitted law describes the data at all. `goodhartlab fit` and the report both use it, so
they never disagree about a curve.

A law fit is only an answer when it describes the data: α and β inside the law's domain, and
residuals no larger than the noise explains. Otherwise the observed peak and onset are the answer,
and the law is reported as not describing these data; in particular, a law without a peak never
overrules an onset the data show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from goodhartlab.measure.curve import Curve
from goodhartlab.measure.scaling import LawFit
from goodhartlab.measure.transitions import Onset, Peak, TransitionTest, detect_transition, find_onset, find_peak

RESIDUAL_NOISE_RATIO = 3.0
"""A law whose residual standard deviation exceeds this many times the noise of one observation misses the
data's shape, not just its noise."""


@dataclass(frozen=True)
class LawVerdict:
    describes: bool
    reason: str  # one sentence: why the law does or does not describe the data


@dataclass(frozen=True)
class CurveAnalysis:
    curve: Curve
    peak: Peak
    onset: Onset
    transition: TransitionTest
    law: LawFit | None
    law_verdict: LawVerdict | None

    @property
    def gold_turned(self) -> bool:
        """Gold fell significantly while the proxy rose (an onset), whatever any law says."""
        return self.onset.pressure is not None

    def summary(self) -> str:
        """One sentence on what the data show, the observed answer first."""
        unit = "step" if self.curve.pressure_kind == "steps" else self.curve.pressure_kind
        if self.gold_turned:
            said = f"gold peaks at {unit} {self.peak.pressure:.4g} and falls from {unit} {self.onset.pressure:.4g} on"
        elif self.peak.pressure < self.curve.pressure[-1]:
            said = (f"gold is highest at {unit} {self.peak.pressure:.4g}; the fall after it is within the noise, so no "
                    "onset is claimed")
        else:
            said = "gold has not turned down in these data"
        if self.law_verdict is not None and not self.law_verdict.describes:
            said += f"; the fitted law does not describe these data ({self.law_verdict.reason})"
        return said


def judge_law(law: LawFit, curve: Curve, onset: Onset) -> LawVerdict:
    """Whether `law` describes the data behind `curve` (see the module's docstring)."""
    if not law.alpha > 0:
        return LawVerdict(False, f"α = {law.alpha:.3g} ≤ 0 says gold falls from the start, which the law's form "
                          "does not allow for a policy that improves at all")
    if law.peak_kl is None and onset.pressure is not None:
        return LawVerdict(False, f"β = {law.beta:.3g} ≤ 0 gives no peak, yet gold fell from "
                          f"{onset.pressure:.4g} on")
    sigma = _observation_noise(curve)
    if math.isfinite(sigma) and sigma > 0 and law.residual_std > RESIDUAL_NOISE_RATIO * sigma:
        return LawVerdict(False, f"its residuals (σ = {law.residual_std:.3g}) are {law.residual_std / sigma:.1f} times "
                          f"the noise of the data (σ = {sigma:.3g})")
    if law.peak_kl is None:
        return LawVerdict(True, "β ≤ 0: the law has no peak, and gold has not turned down in these data")
    return LawVerdict(True, "α and β in the law's domain, residuals within the noise")


def _observation_noise(curve: Curve) -> float:
    """The standard deviation of one observation of gold at a level (the curve's standard error times √seeds)."""
    noise = curve.gold_noise()
    if not np.isfinite(noise).any():
        return math.nan
    return float(np.nanmedian(noise) * math.sqrt(curve.seeds))


def analyze(curve: Curve, law: LawFit | None = None, *, seed: int = 0) -> CurveAnalysis:
    """Peak, onset and transition of `curve`, and the verdict on `law` (fitted to the same data) if given."""
    peak, onset = find_peak(curve, seed=seed), find_onset(curve, seed=seed)
    transition = detect_transition(curve, seed=seed)
    verdict = judge_law(law, curve, onset) if law is not None else None
    return CurveAnalysis(curve, peak, onset, transition, law, verdict)
