"""Statistics for rare events (reward tampering rates) and for detectors (AUROC)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta as beta_dist
from scipy.stats import norm, rankdata

from goodhartlab.measure.validation import as_finite


def _check_counts(successes: int, trials: int) -> None:
    if trials < 1 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval: well behaved near 0 and 1, unlike the normal approximation."""
    _check_counts(successes, trials)
    _check_confidence(confidence)
    z = norm.isf((1 - confidence) / 2)
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (conservative) two-sided binomial interval."""
    _check_counts(successes, trials)
    _check_confidence(confidence)
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta_dist.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta_dist.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def rate_upper_bound(successes: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided exact upper bound on an event rate; with no events, 1 − (1 − c)^(1/n) ≈ 3/n at 95%."""
    _check_counts(successes, trials)
    _check_confidence(confidence)
    if successes == trials:
        return 1.0
    return float(beta_dist.ppf(confidence, successes + 1, trials - successes))


def rule_of_three(trials: int) -> float:
    """The familiar approximation: no events in n trials bounds the rate by 3/n at 95%."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    return 3.0 / trials


def prob_at_least_one(rate: float, trials: int) -> float:
    """Chance that `trials` independent trials see the event at least once."""
    if not 0 <= rate <= 1 or trials < 0:
        raise ValueError(f"need 0 <= rate <= 1 and trials >= 0, got rate={rate}, trials={trials}")
    return float(-math.expm1(trials * math.log1p(-rate))) if rate < 1 else float(trials > 0)


def trials_needed(rate: float, probability: float = 0.95) -> int:
    """Fewest trials that see an event of this rate at least once with the given probability."""
    if not 0 < rate <= 1:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    _check_confidence(probability)
    if rate == 1:
        return 1
    return math.ceil(math.log1p(-probability) / math.log1p(-rate))


def trials_to_bound(rate: float, confidence: float = 0.95) -> int:
    """Event-free trials needed to claim the rate is below `rate` at `confidence`."""
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    _check_confidence(confidence)
    return math.ceil(math.log1p(-confidence) / math.log1p(-rate))


@dataclass(frozen=True)
class AUROC:
    value: float
    interval: tuple[float, float]
    positives: int
    negatives: int


def auroc(scores: ArrayLike, labels: ArrayLike, confidence: float = 0.95) -> AUROC:
    """Area under the ROC curve (ties count one half) with DeLong's confidence interval.

    Positives (label 1) should score higher. The variance follows DeLong, DeLong & Clarke-Pearson
    (1988), computed with ranks as in Sun & Xu (2014); the interval is clipped to [0, 1].
    """
    values = as_finite(scores, "scores", ndim=1)
    flags = np.asarray(labels)
    if flags.shape != values.shape:
        raise ValueError(f"scores has {values.size} entries but labels has {flags.size}")
    if not np.isin(flags, [0, 1]).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    _check_confidence(confidence)
    positive, negative = values[flags == 1], values[flags == 0]
    m, n = positive.size, negative.size
    if m == 0 or n == 0:
        raise ValueError(f"AUROC needs both classes; got {m} positive(s) and {n} negative(s)")
    all_ranks = rankdata(np.concatenate([positive, negative]))
    pos_ranks, neg_ranks = rankdata(positive), rankdata(negative)
    area = (all_ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (all_ranks[:m] - pos_ranks) / n  # per positive: share of negatives it beats
    v01 = 1 - (all_ranks[m:] - neg_ranks) / m  # per negative: share of positives above it
    variance = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    half = norm.isf((1 - confidence) / 2) * math.sqrt(variance)
    return AUROC(float(area), (max(0.0, area - half), min(1.0, area + half)), m, n)
