"""Over-optimization scaling laws of Gao, Schulman & Hilton (2022), with d = √KL (nats):

    best-of-n:  R(d) = d (α − β d)          peak at d* = α / 2β,        R* = α² / 4β
    RL:         R(d) = d (α − β log d)      peak at d* = exp(α/β − 1),  R* = β d*

Gao et al. recentre gold so that R(0) = 0; a user's log rarely is, so by default an intercept
r0 is fitted too (it shifts the curve, never the peak's location). The gold returns to r0 at
d = α/β (best-of-n) or exp(α/β) (RL). Intervals come from a bootstrap over groups (prompts or
seeds), done on per-group sufficient statistics so thousands of resamples cost milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import xlogy

from goodhartlab.measure.validation import as_finite

MAX_BOOTSTRAP_GROUPS = 4096
"""More groups than this are merged at random into this many, so a log of millions of points bootstraps in
bounded memory and time (2,000 resamples of 4,096 group sums)."""
MAX_MAGNITUDE = 1e100
LawForm = Literal["bon", "rl"]
LAW_FORMS: tuple[LawForm, ...] = ("bon", "rl")


def law_features(d: NDArray[np.float64], form: LawForm) -> NDArray[np.float64]:
    """The columns multiplying (α, β): [d, −d²] or [d, −d log d]."""
    if form == "bon":
        return np.stack([d, -(d**2)], axis=-1)
    if form == "rl":
        return np.stack([d, -xlogy(d, d)], axis=-1)
    raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")


def law_value(d: ArrayLike, alpha: float, beta: float, form: LawForm, intercept: float = 0.0) -> NDArray[np.float64]:
    distance = np.asarray(d, dtype=np.float64)
    return intercept + law_features(distance, form) @ np.array([alpha, beta])


Floats = NDArray[np.float64]


def law_peak(alpha: ArrayLike, beta: ArrayLike, form: LawForm) -> tuple[Floats, Floats, Floats]:
    """Closed-form (d*, R* − r0, d where gold is back to r0); inf where β ≤ 0 (no peak)."""
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    has_peak = b > 0
    safe_b = np.where(has_peak, b, 1.0)
    if form == "bon":
        d_star = a / (2 * safe_b)
        gain = a**2 / (4 * safe_b)
        zero = a / safe_b
    elif form == "rl":
        with np.errstate(over="ignore"):
            d_star = np.exp(a / safe_b - 1)
            zero = np.e * d_star
        gain = safe_b * d_star
    else:
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    d_star = np.where(has_peak & (d_star >= 0), d_star, np.inf)
    return d_star, np.where(np.isfinite(d_star), gain, np.inf), np.where(np.isfinite(d_star), zero, np.inf)


@dataclass(frozen=True)
class Extrapolation:
    """How an early-data fit fared on the points it did not see."""

    points_beyond: int
    rmse: float
    observed_peak_kl: float
    observed_peak_gold: float
    predicted_peak_kl: float | None
    peak_kl_error: float | None
    peak_in_interval: bool


@dataclass(frozen=True)
class LawFit:
    form: LawForm
    alpha: float
    beta: float
    intercept: float
    alpha_ci: tuple[float, float]
    beta_ci: tuple[float, float]
    peak_kl: float | None
    peak_gold: float | None
    peak_kl_ci: tuple[float, float]
    peak_gold_ci: tuple[float, float]
    baseline_return_kl: float | None
    max_kl: float | None
    points: int
    groups: int
    residual_std: float
    confidence: float
    extrapolation: Extrapolation | None = None

    def predict(self, kl: ArrayLike) -> NDArray[np.float64]:
        return law_value(np.sqrt(np.asarray(kl, dtype=np.float64)), self.alpha, self.beta,
                         self.form, self.intercept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: infinities (no peak in the interval) become None."""
        def clean(value: Any) -> Any:
            if isinstance(value, float) and not np.isfinite(value):
                return None
            if isinstance(value, tuple | list):
                return [clean(v) for v in value]
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value
        return clean(asdict(self))  # type: ignore[no-any-return,unused-ignore]


class FitError(ValueError):
    """The data cannot support the requested fit (too few points, no spread in KL)."""


def _solve(xtx: NDArray[np.float64], xty: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(np.linalg.solve(xtx, xty[..., None])[..., 0], dtype=np.float64)


def _quantiles(values: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail], method="nearest")
    return float(low), float(high)


def fit_law(kl: ArrayLike, gold: ArrayLike, form: LawForm = "bon", *, groups: ArrayLike | None = None,
            max_kl: float | None = None, intercept: bool = True, n_boot: int = 2000,
            confidence: float = 0.95, seed: int = 0) -> LawFit:
    """Fit a Gao et al. law to (KL in nats per sequence, gold) points by least squares.

    `groups` labels each point's prompt or seed; the bootstrap resamples whole groups (each point
    is its own group when none are given). With `max_kl`, only points at KL ≤ max_kl are fitted
    and the rest measure the extrapolation error.
    """
    if form not in LAW_FORMS:
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    kl_all = as_finite(kl, "kl", ndim=1)
    gold_all = as_finite(gold, "gold", ndim=1)
    if kl_all.shape != gold_all.shape:
        raise ValueError(f"kl has {kl_all.size} points but gold has {gold_all.size}")
    largest = max(float(np.abs(kl_all).max(initial=0.0)), float(np.abs(gold_all).max(initial=0.0)))
    if largest > MAX_MAGNITUDE:
        raise FitError(f"values up to {largest:.3g} are too large to fit (squares would overflow); a KL or reward "
                       "of that size is a logging error, or rescale the rewards")
    if np.any(kl_all < 0):
        raise ValueError(f"kl must be >= 0 (nats per sequence); the smallest is {kl_all.min():.4g}. "
                         "A negative KL usually means a k1 estimate on a small batch: log k3 instead")
    labels = np.arange(kl_all.size) if groups is None else np.asarray(groups)
    if labels.shape != kl_all.shape:
        raise ValueError(f"groups has {labels.size} labels for {kl_all.size} points")
    seen = np.ones(kl_all.size, dtype=bool) if max_kl is None else kl_all <= max_kl
    n_params = 2 + int(intercept)
    if seen.sum() <= n_params:
        where = "" if max_kl is None else f" at KL <= {max_kl}"
        raise FitError(f"too few points to fit the {form} law: {int(seen.sum())} point(s){where}, "
                       f"need at least {n_params + 1}")
    d = np.sqrt(kl_all[seen])
    y = gold_all[seen]
    design = law_features(d, form)
    if intercept:
        design = np.column_stack([design, np.ones_like(d)])
    if np.linalg.matrix_rank(design) < n_params:
        raise FitError(f"the points span too little KL to fit the {form} law (distinct KL values: "
                       f"{np.unique(kl_all[seen]).size}); add points at more KL values")
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - design @ coef

    # Bootstrap over groups via per-group X'X and X'y, in memory bounded by the number of groups.
    rng = np.random.default_rng(seed)
    group_ids, group_index = np.unique(labels[seen], return_inverse=True)
    n_groups = group_ids.size
    if n_groups > MAX_BOOTSTRAP_GROUPS:  # exchangeable groups: resampling random blocks of them resamples them
        group_index = rng.permutation(n_groups)[group_index] % MAX_BOOTSTRAP_GROUPS
        n_groups = MAX_BOOTSTRAP_GROUPS
    xtx_g = np.empty((n_groups, n_params, n_params))
    xty_g = np.empty((n_groups, n_params))
    for i in range(n_params):
        xty_g[:, i] = np.bincount(group_index, weights=design[:, i] * y, minlength=n_groups)
        for j in range(i, n_params):
            xtx_g[:, i, j] = xtx_g[:, j, i] = np.bincount(group_index, weights=design[:, i] * design[:, j],
                                                          minlength=n_groups)
    counts = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot).astype(np.float64)
    xtx_b = np.einsum("bg,gij->bij", counts, xtx_g)
    xty_b = counts @ xty_g
    usable = np.linalg.matrix_rank(xtx_b) == n_params
    boot = _solve(xtx_b[usable], xty_b[usable])
    if boot.shape[0] < n_boot // 2:
        raise FitError(f"too few groups ({n_groups}) for a stable bootstrap of the {form} law")

    if not np.isfinite(coef).all() or not np.isfinite(boot).all():
        raise FitError(f"the {form} law's fit is not finite on these values; rescale them")
    alpha, beta = float(coef[0]), float(coef[1])
    r0 = float(coef[2]) if intercept else 0.0
    with np.errstate(over="ignore"):  # a peak too far to square in floating point is no peak in reach: inf
        d_star, gain, zero = law_peak(alpha, beta, form)
        boot_d, boot_gain, _ = law_peak(boot[:, 0], boot[:, 1], form)
        boot_peak_kl, boot_peak_gold = boot_d**2, boot_gain + (boot[:, 2] if intercept else 0.0)
        peak_kl = float(d_star**2) if np.isfinite(d_star**2) else None
    fit = LawFit(
        form=form, alpha=alpha, beta=beta, intercept=r0,
        alpha_ci=_quantiles(boot[:, 0], confidence), beta_ci=_quantiles(boot[:, 1], confidence),
        peak_kl=peak_kl, peak_gold=float(gain + r0) if peak_kl is not None else None,
        peak_kl_ci=_quantiles(boot_peak_kl, confidence),
        peak_gold_ci=_quantiles(boot_peak_gold, confidence),
        baseline_return_kl=float(zero**2) if peak_kl is not None else None,
        max_kl=max_kl, points=int(seen.sum()), groups=int(n_groups),
        residual_std=float(np.sqrt(residuals @ residuals / max(seen.sum() - n_params, 1))),
        confidence=confidence,
    )
    if max_kl is None or seen.all():
        return fit
    return _with_extrapolation(fit, kl_all, gold_all, seen)


def _with_extrapolation(fit: LawFit, kl: NDArray[np.float64], gold: NDArray[np.float64],
                        seen: NDArray[np.bool_]) -> LawFit:
    unseen = ~seen
    rmse = float(np.sqrt(np.mean((fit.predict(kl[unseen]) - gold[unseen]) ** 2)))
    levels, index = np.unique(kl, return_inverse=True)
    mean_gold = np.bincount(index, weights=gold) / np.bincount(index)
    best = int(np.argmax(mean_gold))
    observed_kl = float(levels[best])
    low, high = fit.peak_kl_ci
    return LawFit(**{**fit.__dict__, "extrapolation": Extrapolation(
        points_beyond=int(unseen.sum()), rmse=rmse,
        observed_peak_kl=observed_kl, observed_peak_gold=float(mean_gold[best]),
        predicted_peak_kl=fit.peak_kl,
        peak_kl_error=None if fit.peak_kl is None else fit.peak_kl - observed_kl,
        peak_in_interval=bool(low <= observed_kl <= high),
    )})
