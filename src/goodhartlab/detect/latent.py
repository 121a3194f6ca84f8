"""The latent outlier score (L1): how far each response's embedding lies from the reference policy's samples.

The reference's mean and a Ledoit–Wolf shrunk covariance (well conditioned even with fewer samples than
dimensions, as 256 MiniLM embeddings of 384 dimensions are) give each sample a squared Mahalanobis distance; under a
Gaussian reference it is χ² with `dim` degrees of freedom, so each sample gets a p-value, and each evaluation the
share of samples with p < alpha (InfoRM's outlier probability, per step), pooled over the last few evaluations. The
reference is the policy's own completions before training — `RunContext.reference_embeddings`, or else the first
evaluation's samples, which are then not scored.

Distances are one matrix product with the whitening factor, never a loop over samples: that is what makes scoring
10,000 embeddings cheap (benchmarks/bench_mahalanobis.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import cholesky, solve_triangular
from scipy.special import chdtrc

from goodhartlab.config import above, at_least
from goodhartlab.detect.base import Detector, DetectorConfig
from goodhartlab.detect.rows import Access, Row, RunContext
from goodhartlab.measure.validation import as_finite

LATENT = "latent outlier"


def ledoit_wolf(samples: ArrayLike) -> tuple[NDArray[np.float64], float]:
    """(shrunk covariance, shrinkage) of Ledoit & Wolf (2004), toward μ·I with μ the mean variance.

    The same estimator as scikit-learn's `covariance.ledoit_wolf` (maximum-likelihood covariance, centred data),
    without its dependency; a test holds the two together.
    """
    x = as_finite(samples, "samples", ndim=2)
    n, p = x.shape
    if n < 2:
        raise ValueError(f"Ledoit–Wolf needs at least 2 samples, got {n}")
    x = x - x.mean(axis=0)
    covariance = x.T @ x / n
    mu = float(np.trace(covariance)) / p
    squared = x**2
    beta_sum = float(np.sum(squared.T @ squared))
    delta_sum = float(np.sum(covariance**2))
    beta = (beta_sum / n - delta_sum) / (p * n)
    delta = (delta_sum - 2 * mu * float(np.trace(covariance)) + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1 - shrinkage) * covariance
    shrunk.flat[:: p + 1] += shrinkage * mu
    return shrunk, shrinkage


@dataclass
class MahalanobisScorer:
    """Fit on reference embeddings; then distances, χ² p-values and outlier rates for any batch, vectorized."""

    mean_: NDArray[np.float64] | None = None
    whitening_: NDArray[np.float64] | None = None  # W with W Wᵀ = Σ⁻¹: d² = ‖(x − μ) W‖²
    shrinkage_: float | None = None

    def fit(self, reference: ArrayLike) -> MahalanobisScorer:
        samples = as_finite(reference, "reference embeddings", ndim=2)
        covariance, self.shrinkage_ = ledoit_wolf(samples)
        self.mean_ = samples.mean(axis=0)
        try:
            lower = cholesky(covariance, lower=True)
        except np.linalg.LinAlgError:
            raise ValueError("the reference embeddings have no spread in some direction (a constant dimension?); "
                             "the covariance cannot be inverted") from None
        self.whitening_ = solve_triangular(lower, np.eye(covariance.shape[0]), lower=True).T
        return self

    @property
    def dim(self) -> int:
        return 0 if self.mean_ is None else int(self.mean_.size)

    def squared_distances(self, embeddings: ArrayLike) -> NDArray[np.float64]:
        if self.mean_ is None or self.whitening_ is None:
            raise RuntimeError("call fit(reference) first")
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"embeddings must be (samples, {self.dim}), got shape {x.shape}")
        whitened = (x - self.mean_) @ self.whitening_
        return np.einsum("ij,ij->i", whitened, whitened)

    def p_values(self, embeddings: ArrayLike) -> NDArray[np.float64]:
        """Per sample: P(χ²_dim ≥ d²), small for an outlier (scipy.special's χ² survival ufunc, which
        scipy.stats.chi2.sf wraps at many times the cost for a small batch)."""
        return np.asarray(chdtrc(self.dim, self.squared_distances(embeddings)), dtype=np.float64)

    def outlier_rate(self, embeddings: ArrayLike, alpha: float = 0.01) -> float:
        return float(np.mean(self.p_values(embeddings) < alpha))


@dataclass
class LatentOutlierConfig(DetectorConfig):
    alpha: float = 0.01
    """A sample with p < alpha is an outlier."""
    window: int = 5
    """The rate is over the samples of the last `window` evaluations: one evaluation's few samples make a coarse,
    noisy share."""
    min_reference: int = 16
    """Fewest reference samples to fit the scorer on."""

    def __post_init__(self) -> None:
        super().__post_init__()
        above(self, "alpha", 0)
        at_least(self, "window", 1)
        at_least(self, "min_reference", 2)


class LatentOutlier(Detector[LatentOutlierConfig]):
    kind = "latent_outlier"
    access = Access.L1
    family = LATENT
    config_class = LatentOutlierConfig
    default_threshold = 0.2

    @property
    def needs(self) -> tuple[str, ...]:
        return ("embeddings",)

    @property
    def signal(self) -> str:
        return (f"share of samples with Mahalanobis p < {self.config.alpha:g} against the reference policy, last "
                f"{self.config.window} evaluation(s)")

    def _start(self, context: RunContext) -> str | None:
        self._scorer: MahalanobisScorer | None = None
        self._recent: deque[tuple[int, int]] = deque(maxlen=self.config.window)  # (outliers, samples)
        if context.reference_embeddings is not None:
            return self._fit_reference(context.reference_embeddings)
        return None

    def _fit_reference(self, reference: NDArray[np.float64]) -> str | None:
        if reference.ndim != 2 or reference.shape[0] < self.config.min_reference:
            return (f"the reference needs at least {self.config.min_reference} embedded samples, got shape "
                    f"{reference.shape}")
        try:
            self._scorer = MahalanobisScorer().fit(reference)
        except ValueError as error:
            return f"cannot fit the reference: {error}"
        return None

    def _observe(self, row: Row) -> float | None:
        if row.embeddings is None:
            return None
        if self._scorer is None:  # no reference given: the first samples are the policy's before training
            self._skip = self._fit_reference(row.embeddings)
            return None
        if row.embeddings.ndim != 2 or row.embeddings.shape[1] != self._scorer.dim:
            self._problem(f"step {row.step:g}: embeddings of shape {row.embeddings.shape}, the reference's have "
                          f"{self._scorer.dim} dimensions")
            return None
        outliers = int(np.count_nonzero(self._scorer.p_values(row.embeddings) < self.config.alpha))
        self._recent.append((outliers, row.embeddings.shape[0]))
        return sum(o for o, _ in self._recent) / max(sum(n for _, n in self._recent), 1)
