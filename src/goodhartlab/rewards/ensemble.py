"""Reward-model ensembles: mean, worst-case and uncertainty-weighted aggregation.

Coste et al. (2023) optimize mean(R_i), min_i R_i (WCO) or mean(R_i) − λ·var(R_i) (UWO) over k
reward models. Their code aggregates raw member scores (the normalization is commented out),
so a member with a larger scale dominates the min and the variance. Here each member is first
normalized on reference samples (say, the initial policy's), as Gao et al. recentre every RM.
The default normalization is robust (median and IQR): a z-score's standard deviation is ruled
by the outliers that heavy-tailed errors produce, and on the synthetic 5-member benchmark it
costs uncertainty-weighted aggregation a third of its gold at n = 1024 (docs/measure.md).
The variance is the population variance (ddof = 0), as in their best-of-n code; λ = 0.5 is the
value they found best for best-of-n.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from goodhartlab.measure.validation import as_finite

Aggregation = Literal["mean", "worst", "uncertainty"]
Normalization = Literal["zscore", "robust", "none"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "worst", "uncertainty")


def _location_scale(scores: NDArray[np.float64], how: Normalization) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if how == "zscore":
        return scores.mean(axis=-1), scores.std(axis=-1)
    if how == "robust":  # median and IQR/1.349: stable when rewards are heavy-tailed
        q25, q50, q75 = np.quantile(scores, [0.25, 0.5, 0.75], axis=-1)
        return q50, (q75 - q25) / 1.349
    raise ValueError(f"normalization must be 'zscore', 'robust' or 'none', got {how!r}")


@dataclass
class EnsembleReward:
    """Aggregate k member scores (members on axis 0) into one proxy reward."""

    aggregation: Aggregation = "mean"
    uncertainty_weight: float = 0.5
    normalization: Normalization = "robust"
    ddof: int = 0
    location_: NDArray[np.float64] | None = field(default=None, repr=False)
    scale_: NDArray[np.float64] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got "
                             f"{self.aggregation!r}")
        if self.uncertainty_weight < 0:
            raise ValueError(f"uncertainty_weight (λ) must be >= 0, got {self.uncertainty_weight}")

    def fit(self, reference_scores: ArrayLike) -> EnsembleReward:
        """Learn each member's location and scale from its scores on reference samples."""
        scores = as_finite(reference_scores, "reference_scores", ndim=2)
        if scores.shape[1] < 2:
            raise ValueError("reference_scores needs at least 2 samples per member (members x samples)")
        if self.normalization == "none":
            self.location_, self.scale_ = np.zeros(scores.shape[0]), np.ones(scores.shape[0])
            return self
        location, scale = _location_scale(scores, self.normalization)
        if np.any(scale <= 0):
            flat = np.flatnonzero(scale <= 0).tolist()
            raise ValueError(f"member(s) {flat} give the same score to every reference sample; "
                             "they cannot be normalized (use more varied reference samples)")
        self.location_, self.scale_ = location, scale
        return self

    def normalize(self, member_scores: ArrayLike) -> NDArray[np.float64]:
        scores = as_finite(member_scores, "member_scores")
        if self.normalization == "none":
            return scores
        if self.location_ is None or self.scale_ is None:
            raise RuntimeError("call fit(reference_scores) before aggregating, or set "
                               "normalization='none' to aggregate raw scores")
        if scores.shape[0] != self.location_.size:
            raise ValueError(f"fitted on {self.location_.size} members, got {scores.shape[0]}")
        shape = (-1,) + (1,) * (scores.ndim - 1)
        return (scores - self.location_.reshape(shape)) / self.scale_.reshape(shape)

    def aggregate(self, member_scores: ArrayLike) -> NDArray[np.float64]:
        scores = self.normalize(member_scores)
        if self.aggregation == "mean":
            return scores.mean(axis=0)
        if self.aggregation == "worst":
            return scores.min(axis=0)
        return scores.mean(axis=0) - self.uncertainty_weight * scores.var(axis=0, ddof=self.ddof)

    def disagreement(self, member_scores: ArrayLike) -> NDArray[np.float64]:
        """Variance across normalized members: it grows as the policy leaves the data (Coste et al.)."""
        return self.normalize(member_scores).var(axis=0, ddof=self.ddof)


@dataclass(frozen=True)
class ErrorCorrelation:
    matrix: NDArray[np.float64]
    mean_pairwise: float
    effective_size: float

    def __str__(self) -> str:
        k = self.matrix.shape[0]
        return (f"{k} members, mean pairwise error correlation {self.mean_pairwise:.2f}: "
                f"worth about {self.effective_size:.1f} independent member(s)")


def error_correlation(member_scores: ArrayLike, gold: ArrayLike) -> ErrorCorrelation:
    """How much the members' errors move together, and the ensemble size that is worth.

    A member's error is what is left of its score after a least-squares calibration on gold
    (so members and gold may live on any scales). Errors are compared by Spearman correlation,
    robust to the heavy tails that make ensembles fail. With mean pairwise correlation ρ̄, k
    members are worth k / (1 + (k − 1) ρ̄) independent ones (the variance of an equicorrelated
    mean), so shared errors (Eisenstein et al. 2023) show up as a number close to 1.
    """
    scores = as_finite(member_scores, "member_scores", ndim=2)
    target = as_finite(gold, "gold", ndim=1)
    if scores.shape[1] != target.size:
        raise ValueError(f"member_scores has {scores.shape[1]} samples per member but gold has "
                         f"{target.size}")
    k = scores.shape[0]
    if k < 2:
        raise ValueError("error correlation needs at least 2 members")
    design = np.column_stack([np.ones_like(target), target])
    coef, *_ = np.linalg.lstsq(design, scores.T, rcond=None)
    errors = scores - (design @ coef).T
    ranks = rankdata(errors, axis=1)  # Spearman's ρ is Pearson's on ranks; spearmanr gives a scalar for 2 members
    matrix = np.corrcoef(ranks)
    mean_pairwise = float(matrix[~np.eye(k, dtype=bool)].mean())
    effective = k / (1 + (k - 1) * max(mean_pairwise, -1 / (k - 1) + 1e-12))
    return ErrorCorrelation(matrix, mean_pairwise, float(np.clip(effective, 1.0, k)))
