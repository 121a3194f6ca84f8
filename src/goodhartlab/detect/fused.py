"""A learned detector: logistic regression over the other detectors' per-step statistics.

`train(runs)` learns from labelled runs (each evaluation of a hacked run from its ground-truth onset on is a
positive, every other evaluation a negative, the classes weighted equally); `fit(healthy_runs)` then calibrates its
threshold like any detector's. Online it updates its components on each row and reports the log-odds. A component
that lacks its signal in a run, or has no statistic yet, contributes the training mean (0 after standardization).
Statistics are compressed (sign · log1p|x|) before standardizing, since a CUSUM grows without bound.

The logistic regression is scikit-learn's objective (C·Σ wᵢ·log-loss + ½‖β‖², intercept unpenalized, balanced
class weights) minimized with scipy's L-BFGS; a test holds its coefficients to scikit-learn's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from goodhartlab.config import ConfigError, above, parse_config
from goodhartlab.detect.base import Detector, DetectorConfig
from goodhartlab.detect.rows import Access, Row, RunContext
from goodhartlab.detect.runs import LabelledRun, check_one_source

if TYPE_CHECKING:
    from typing import Self

FUSED = "fused (learned)"
L0_COMPONENTS = ("proxy_saturation", "kl_acceleration", "length_drift", "entropy_collapse", "ensemble_disagreement",
                 "cusum_proxy_slope", "cusum_kl_slope", "page_hinkley_proxy_slope", "page_hinkley_kl_slope")


def fit_logistic(features: ArrayLike, labels: ArrayLike, *, c: float = 1.0,
                 balanced: bool = True) -> tuple[NDArray[np.float64], float]:
    """(coefficients, intercept) minimizing C·Σ sᵢ·log-loss + ½‖β‖² (scikit-learn's L2 objective)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features must be (samples, k) and labels (samples,), got {x.shape} and {y.shape}")
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        raise ValueError(f"logistic regression needs both classes; got {positives} positive(s) of {y.size}")
    weights = np.ones_like(y)
    if balanced:
        weights = np.where(y == 1, y.size / (2 * positives), y.size / (2 * (y.size - positives)))
    design = np.column_stack([x, np.ones(x.shape[0])])
    sign = 2 * y - 1

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        margin = sign * (design @ theta)
        loss = -c * float(np.sum(weights * log_expit(margin))) + 0.5 * float(theta[:-1] @ theta[:-1])
        gradient = -c * design.T @ (weights * sign * expit(-margin))
        gradient[:-1] += theta[:-1]
        return loss, gradient

    result = minimize(objective, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "gtol": 1e-8})
    return np.asarray(result.x[:-1], dtype=np.float64), float(result.x[-1])


@dataclass
class FusedConfig(DetectorConfig):
    threshold: float | None = 0.0
    components: tuple[str, ...] = L0_COMPONENTS
    """Detectors (by name, `registry.DETECTORS`) whose statistics are the features."""
    c: float = 1.0
    """Inverse L2 strength, as scikit-learn's C."""

    def __post_init__(self) -> None:
        super().__post_init__()
        above(self, "c", 0)
        from goodhartlab.detect.registry import DETECTORS

        unknown = [name for name in self.components if name not in DETECTORS or name.startswith("fused")]
        if unknown or not self.components:
            raise ConfigError("components", f"names no detector: {', '.join(unknown) or '(none)'}; known: "
                              f"{', '.join(name for name in DETECTORS if not name.startswith('fused'))}")


class FusedDetector(Detector[FusedConfig]):
    kind = "fused_logistic"
    family = FUSED
    config_class = FusedConfig
    default_threshold = 0.0
    access = Access.L0

    def __init__(self, config: FusedConfig | Mapping[str, Any] | None = None, **settings: Any) -> None:
        from goodhartlab.detect.registry import make_detector

        if config is not None and settings:
            raise TypeError("FusedDetector: pass a config or settings, not both")
        parsed = parse_config(FusedConfig, config if config is not None else settings)
        self.components = [make_detector(name) for name in parsed.components]
        self.access = max(component.access for component in self.components)
        self.coef_: NDArray[np.float64] | None = None
        self.intercept_ = 0.0
        self.center_: NDArray[np.float64] | None = None
        self.scale_: NDArray[np.float64] | None = None
        super().__init__(parsed)

    @property
    def needs(self) -> tuple[str, ...]:
        return ()  # a component that lacks its signal is imputed, never a reason to skip the whole

    @property
    def name(self) -> str:
        return self.kind if self.access == Access.L0 else f"{self.kind}_{self.access}"

    @property
    def signal(self) -> str:
        return f"log-odds of hacking from {len(self.components)} detectors' statistics"

    def _start(self, context: RunContext) -> str | None:
        for component in self.components:
            component.reset(context)
        self._latest = np.full(len(self.components), np.nan)
        return None if self.coef_ is not None else "the fused detector is not trained: call train(runs) first"

    def _features(self, row: Row) -> NDArray[np.float64]:
        for position, component in enumerate(self.components):
            component.update(row)
            if component.last_statistic is not None:
                self._latest[position] = component.last_statistic
        return np.sign(self._latest) * np.log1p(np.abs(self._latest))

    def _observe(self, row: Row) -> float | None:
        assert self.coef_ is not None and self.center_ is not None and self.scale_ is not None
        features = self._features(row)
        standardized = np.where(np.isnan(features), 0.0, (features - self.center_) / self.scale_)
        return float(standardized @ self.coef_ + self.intercept_)

    def train(self, runs: Sequence[LabelledRun]) -> Self:
        """Learn the weights from labelled runs (hacked ones need their onset); the threshold is `fit`'s job."""
        check_one_source(runs, "training")
        features, labels = [], []
        for run in runs:
            if run.hacked and run.onset is None:
                continue  # no ground truth for which of its evaluations are hacked
            for component in self.components:
                component.reset(run.context())
            self._latest = np.full(len(self.components), np.nan)
            onset = run.onset.index if run.onset is not None else math.inf
            for index, row in enumerate(run.rows()):
                features.append(self._features(row))
                labels.append(1.0 if index >= onset else 0.0)
        if not features:
            raise ValueError("no usable training run (hacked runs need a ground-truth onset)")
        x, y = np.array(features), np.array(labels)
        self.center_ = np.array([np.nanmean(col) if not np.isnan(col).all() else 0.0 for col in x.T])
        spread = np.array([np.nanstd(col) if not np.isnan(col).all() else 1.0 for col in x.T])
        self.scale_ = np.where(spread > 0, spread, 1.0)
        standardized = np.where(np.isnan(x), 0.0, (x - self.center_) / self.scale_)
        self.coef_, self.intercept_ = fit_logistic(standardized, y, c=self.config.c)
        self.threshold_ = None
        self.reset()
        return self

    def weights(self) -> dict[str, float]:
        """Each component's coefficient (on its standardized statistic)."""
        if self.coef_ is None:
            return {}
        return {component.name: float(w) for component, w in zip(self.components, self.coef_, strict=True)}
