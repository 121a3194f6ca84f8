"""Change points in the proxy's and the KL's slopes: CUSUM and Page–Hinkley (L0 baselines).

The series watched is the slope between consecutive evaluations, Δy/Δstep, standardized by its mean and standard
deviation over the run's warm-up, so thresholds are in standard deviations and carry across environments.

- CUSUM (Page 1954, tabular): S⁺ ← max(0, S⁺ + z − k), S⁻ ← max(0, S⁻ − z − k) against the warm-up's level.
- Page–Hinkley: river's recurrence (`river.drift.PageHinkley`: deviations from the running mean, less δ, with a
  forgetting factor α; the statistic is the cumulative sum above its running minimum). river only exposes a
  drift flag and resets itself after one; the benchmark needs the statistic to calibrate and rank, so it is
  written out here, and a test holds it to river's detection points.

Neither resets after an alarm: the base contract re-arms once the statistic is back under the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from goodhartlab.config import above, at_least, between, one_of
from goodhartlab.detect.base import Detector, DetectorConfig
from goodhartlab.detect.heuristics import HEURISTIC, TINY, mean_and_spread
from goodhartlab.detect.rows import Access, Row, RunContext

Direction = Literal["up", "down", "both"]


class CusumStatistic:
    """Two-sided tabular CUSUM of standardized values against level 0, allowance `drift` (k)."""

    def __init__(self, drift: float = 0.5) -> None:
        self.drift = drift
        self.upper = 0.0
        self.lower = 0.0

    def update(self, z: float) -> None:
        self.upper = max(0.0, self.upper + z - self.drift)
        self.lower = max(0.0, self.lower - z - self.drift)


class PageHinkleyStatistic:
    """river's Page–Hinkley recurrence, its two one-sided statistics exposed (`increase`, `decrease`).

    river starts its running maximum of the downward sum at −1, which for sums below −1 reports a decrease that
    never happened; it starts at −∞ here (the up side is identical to river's).
    """

    def __init__(self, delta: float = 0.005, alpha: float = 1 - 0.0001) -> None:
        self.delta, self.alpha = delta, alpha
        self.count = 0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = math.inf
        self.max_decrease = -math.inf

    def update(self, x: float) -> None:
        self.count += 1
        self.mean += (x - self.mean) / self.count
        deviation = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + deviation - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + deviation + self.delta
        self.min_increase = min(self.min_increase, self.sum_increase)
        self.max_decrease = max(self.max_decrease, self.sum_decrease)

    @property
    def increase(self) -> float:
        return self.sum_increase - self.min_increase

    @property
    def decrease(self) -> float:
        return self.max_decrease - self.sum_decrease


@dataclass
class SlopeChangeConfig(DetectorConfig):
    signal: Literal["proxy", "kl"] = "proxy"
    direction: Direction = "both"
    """Which change counts: the slope rising ('up'), falling ('down') or either."""
    warmup: int = 10
    """Slopes that set the standardization (and the CUSUM's reference level)."""
    drift: float = 0.5
    """CUSUM's allowance k, in warm-up standard deviations."""
    delta: float = 0.005
    """Page–Hinkley's δ (in warm-up standard deviations)."""
    alpha: float = 1 - 0.0001
    """Page–Hinkley's forgetting factor."""

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of(self, "signal", ("proxy", "kl"))
        one_of(self, "direction", ("up", "down", "both"))
        at_least(self, "warmup", 3)
        at_least(self, "drift", 0)
        at_least(self, "delta", 0)
        between(self, "alpha", 0, 1)
        above(self, "alpha", 0)


class _SlopeChange(Detector[SlopeChangeConfig]):
    access = Access.L0
    family = HEURISTIC
    config_class = SlopeChangeConfig

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.config.signal,)

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.config.signal}_slope"

    @property
    def signal(self) -> str:
        return f"{self.config.signal} slope, standardized on the warm-up ({self.config.direction})"

    def _start(self, context: RunContext) -> str | None:
        self._last: tuple[float, float] | None = None
        self._warm: list[float] = []
        self._scale: tuple[float, float] | None = None
        return None

    def _slope(self, row: Row) -> float | None:
        """The standardized slope from the previous row carrying the signal, once warmed up."""
        value = getattr(row, self.config.signal)
        if value is None:
            return None
        last, self._last = self._last, (row.step, value)
        if last is None:
            return None
        if row.step <= last[0]:
            self._problem(f"step {row.step:g} does not follow step {last[0]:g}; no slope taken")
            return None
        x = (value - last[1]) / (row.step - last[0])
        if self._scale is None:
            self._warm.append(x)
            if len(self._warm) < self.config.warmup:
                return None
            mean, spread = mean_and_spread(self._warm)
            self._scale = mean, max(spread, abs(mean) * 1e-6, TINY)
            return None
        mean, spread = self._scale
        return (x - mean) / spread

    def _pick(self, up: float, down: float) -> float:
        if self.config.direction == "up":
            return up
        if self.config.direction == "down":
            return down
        return max(up, down)


class Cusum(_SlopeChange):
    kind = "cusum"
    default_threshold = 5.0

    def _start(self, context: RunContext) -> str | None:
        self._cusum = CusumStatistic(self.config.drift)
        return super()._start(context)

    def _observe(self, row: Row) -> float | None:
        z = self._slope(row)
        if z is None:
            return None
        self._cusum.update(z)
        return self._pick(self._cusum.upper, self._cusum.lower)


class PageHinkley(_SlopeChange):
    kind = "page_hinkley"
    default_threshold = 10.0

    def _start(self, context: RunContext) -> str | None:
        self._test = PageHinkleyStatistic(self.config.delta, self.config.alpha)
        return super()._start(context)

    def _observe(self, row: Row) -> float | None:
        z = self._slope(row)
        if z is None:
            return None
        self._test.update(z)
        return self._pick(self._test.increase, self._test.decrease)
