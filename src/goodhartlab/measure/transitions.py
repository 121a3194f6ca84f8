"""Where gold peaks, where over-optimization sets in, and whether the fall is a phase transition.

- peak: the pressure at which mean gold is highest.
- onset: the first pressure at which gold is significantly below its best so far while the
  proxy is above its value at that best point (gold falls while proxy still rises).
- transition (Pan, Bhatia & Steinhardt 2022): a drop of the true reward concentrated between
  two adjacent capability levels. The test measures the largest single-interval drop after the
  peak, asks whether it is significant against seed noise, and whether it carries most of the
  decline (a gradual decline spreads its fall over many intervals). It resolves only what the
  pressure grid resolves: refine the grid around a flagged interval to confirm.

Intervals come from resampling seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from goodhartlab.measure.curve import Curve


def _interval(values: list[float], confidence: float) -> tuple[float, float] | None:
    if not values:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.asarray(values), [tail, 1 - tail], method="nearest")
    return float(low), float(high)


@dataclass(frozen=True)
class Peak:
    pressure: float
    gold: float
    interval: tuple[float, float] | None  # over seed resamples; None with one seed


def _peak_index(curve: Curve) -> int:
    return int(np.nanargmax(curve.mean_gold()))


def find_peak(curve: Curve, *, n_boot: int = 500, confidence: float = 0.95, seed: int = 0) -> Peak:
    best = _peak_index(curve)
    interval = None
    if curve.seeds >= 2:
        rng = np.random.default_rng(seed)
        draws = [float(curve.pressure[_peak_index(curve.resample_seeds(rng))]) for _ in range(n_boot)]
        interval = _interval(draws, confidence)
    return Peak(float(curve.pressure[best]), float(curve.mean_gold()[best]), interval)


@dataclass(frozen=True)
class Onset:
    pressure: float | None  # None: gold never fell significantly while proxy rose
    interval: tuple[float, float] | None
    frequency: float  # share of seed resamples that show an onset at all


def _onset_index(curve: Curve, z: float, persist: int = 1, noise: float | None = None) -> int | None:
    gold, proxy = curve.mean_gold(), curve.mean_proxy()
    errors = curve.gold_noise() if noise is None else np.full(gold.size, noise)
    measured = [level for level in range(gold.size) if not np.isnan(gold[level])]

    def fallen(level: int, best: int) -> bool:
        margin = z * np.hypot(errors[level], errors[best])
        proxy_rising = np.isnan(proxy[level]) or np.isnan(proxy[best]) or proxy[level] > proxy[best]
        return bool(gold[level] < gold[best] - margin and proxy_rising)

    best = measured[0] if measured else 0
    for position, level in enumerate(measured[1:], start=1):
        following = measured[position:position + persist]
        if len(following) == persist and all(fallen(later, best) for later in following):
            return level
        if gold[level] > gold[best]:
            best = level
    return None


def find_onset(curve: Curve, *, z: float = 1.645, persist: int = 1, noise: float | None = None, n_boot: int = 500,
               confidence: float = 0.95, seed: int = 0) -> Onset:
    """`z` sets how far below its best gold must be, in standard errors, to count as falling; with `persist` > 1
    gold must stay that far down (and the proxy above its value at the best point) for that many measured levels
    in a row, so one noisy evaluation is no onset. `noise` replaces the curve's own standard error per level (say,
    one estimated from a run's early gold)."""
    level = _onset_index(curve, z, persist, noise)
    draws: list[float] = []
    if curve.seeds >= 2:
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            found = _onset_index(curve.resample_seeds(rng), z, persist, noise)
            if found is not None:
                draws.append(float(curve.pressure[found]))
        frequency = len(draws) / n_boot
    else:
        frequency = float(level is not None)
    return Onset(None if level is None else float(curve.pressure[level]),
                 _interval(draws, confidence), frequency)


@dataclass(frozen=True)
class TransitionTest:
    detected: bool
    sharp_drop: float  # largest single-interval fall of mean gold after the peak (>= 0)
    between: tuple[float, float] | None  # the pressures on either side of it
    drop_z: float  # that fall in standard errors
    share_of_decline: float  # its share of the whole fall from the peak to the lowest point after
    proxy_rising: bool  # the proxy did not fall significantly across that interval
    p_value: float  # one-sided, for the fall being noise
    break_interval: tuple[float, float] | None  # lower pressure of the interval, over seed resamples

    def __str__(self) -> str:
        if self.between is None:
            return "no decline after the peak"
        verdict = "phase transition" if self.detected else "no phase transition"
        if np.isnan(self.drop_z):
            verdict += " (noise unknown: one seed and fewer than 4 levels)"
        return (f"{verdict}: gold falls {self.sharp_drop:.3g} between {self.between[0]:.4g} and "
                f"{self.between[1]:.4g} ({self.share_of_decline:.0%} of the decline, "
                f"z = {self.drop_z:.1f}, proxy {'rising' if self.proxy_rising else 'falling'})")


def _largest_drop(curve: Curve) -> tuple[int, float, float] | None:
    """(index of the interval's left level, its drop, share of the decline) after the peak."""
    gold = curve.mean_gold()
    peak = _peak_index(curve)
    after = gold[peak:]
    if after.size < 2 or np.all(np.isnan(after[1:])):
        return None
    steps = after[:-1] - after[1:]
    steps = np.where(np.isnan(steps), -np.inf, steps)
    left = int(np.argmax(steps))
    decline = float(gold[peak] - np.nanmin(after))
    drop = float(steps[left])
    if not np.isfinite(drop) or drop <= 0 or decline <= 0:
        return None
    return peak + left, drop, drop / decline


def detect_transition(curve: Curve, *, alpha: float = 0.01, min_share: float = 0.5,
                    n_boot: int = 500, confidence: float = 0.95, seed: int = 0) -> TransitionTest:
    """Flag a sharp fall of gold while the proxy holds up.

    Detected when the largest post-peak drop is significant at `alpha` (one-sided, against the
    standard errors of the two levels), carries at least `min_share` of the decline, and the
    proxy is not significantly lower after it than before.
    """
    found = _largest_drop(curve)
    if found is None:
        return TransitionTest(False, 0.0, None, 0.0, 0.0, True, 1.0, None)
    left, drop, share = found
    noise = curve.gold_noise()
    se = float(np.hypot(noise[left], noise[left + 1]))
    drop_z = drop / se if se > 0 else np.inf if se == 0 else np.nan  # NaN: the noise is unknown
    p_value = float(norm.sf(drop_z))
    proxy = curve.mean_proxy()
    proxy_change = proxy[left + 1] - proxy[left]
    proxy_se = _proxy_se(curve, left)
    proxy_rising = bool(np.isnan(proxy_change) or proxy_change > -norm.isf(alpha) * proxy_se)
    detected = p_value < alpha and share >= min_share and proxy_rising
    draws: list[float] = []
    if curve.seeds >= 2:
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            resampled = _largest_drop(curve.resample_seeds(rng))
            if resampled is not None:
                draws.append(float(curve.pressure[resampled[0]]))
    return TransitionTest(
        detected=bool(detected), sharp_drop=drop,
        between=(float(curve.pressure[left]), float(curve.pressure[left + 1])),
        drop_z=float(drop_z), share_of_decline=share, proxy_rising=proxy_rising,
        p_value=p_value, break_interval=_interval(draws, confidence),
    )



def _proxy_se(curve: Curve, left: int) -> float:
    pair = curve.proxy[:, left:left + 2]
    present = (~np.isnan(pair)).sum(axis=0)
    if curve.seeds < 2 or (present < 2).any():
        return 0.0
    spread = np.nanstd(pair, axis=0, ddof=1) / np.sqrt(present)
    return float(np.hypot(*spread))
