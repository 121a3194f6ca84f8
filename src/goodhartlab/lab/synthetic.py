"""The synthetic Goodhart studies: proxies built from a known gold, so every curve has a known answer.

Each is a study kind of the lab's registry: a config dataclass with defaults that run in seconds on a
laptop, and a function (config, seed) -> RunResult. The runner stores the resolved config with the
results, so each number in the report can be regenerated from its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from goodhartlab.config import above, at_least, between, config_dict
from goodhartlab.measure.bestofn import BestOfNCurve, bestofn_curve, fit_bestofn_law
from goodhartlab.measure.scaling import FitError
from goodhartlab.measure.synthetic import (
    ensemble_pool,
    goodhart_pool,
    planted_curve,
    transition_detector_rates,
)
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.rewards.ensemble import EnsembleReward, error_correlation

DEFAULT_NS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _curve_points(curve: BestOfNCurve) -> CurvePoints:
    return CurvePoints(curve.kl.tolist(), curve.proxy.tolist(), curve.gold.tolist(), "kl")


def _fits(curve: BestOfNCurve, early_max_kl: float | None) -> dict[str, Any]:
    """The best-of-n law on all the points, and on the early points only when `early_max_kl` is set."""
    summary: dict[str, Any] = {"fit": fit_bestofn_law(curve).to_dict()}
    if early_max_kl is not None:
        try:
            summary["early_fit"] = fit_bestofn_law(curve, max_kl=early_max_kl).to_dict()
        except FitError as error:
            summary["early_fit_error"] = str(error)
    return summary


@dataclass
class BestOfNGoodhartConfig:
    noise: Literal["gaussian", "student_t"] = "gaussian"  # regressional (gaussian) or extremal (student_t)
    df: float = 1.5  # the Student-t's degrees of freedom
    prompts: int = 200
    pool: int = 2048
    ns: tuple[int, ...] = DEFAULT_NS
    early_max_kl: float | None = 1.9  # fit the law on n <= 16 and extrapolate

    def __post_init__(self) -> None:
        above(self, "df", 0)
        at_least(self, "prompts", 1)
        _check_ns(self.ns, self.pool)
        above(self, "early_max_kl", 0)


def _check_ns(ns: tuple[int, ...], pool: int) -> None:
    from goodhartlab.config import ConfigError

    if not ns or min(ns) < 1 or max(ns) > pool:
        raise ConfigError("ns", f"must list n between 1 and the pool ({pool}), got {list(ns)}")


def bestofn_goodhart(cfg: BestOfNGoodhartConfig, seed: int) -> RunResult:
    """Best-of-n against a proxy = gold + noise: regressional vs extremal Goodhart."""
    proxy, gold = goodhart_pool(cfg.prompts, cfg.pool, seed=seed,
                                df=None if cfg.noise == "gaussian" else cfg.df)
    curve = bestofn_curve(proxy, gold, cfg.ns)
    return RunResult({"best-of-n": _curve_points(curve)}, _fits(curve, cfg.early_max_kl))


@dataclass
class EnsembleGoodhartConfig:
    aggregation: Literal["single", "mean", "worst", "uncertainty"] = "mean"  # single: member 0 alone
    shared: float = 0.0  # ρ, the weight of the error component all members share
    members: int = 5
    uncertainty_weight: float = 0.5
    df: float | None = 1.5  # Student-t degrees of freedom of the errors; null: Gaussian
    prompts: int = 100
    pool: int = 2048
    reference: int = 256  # samples per prompt used to normalize the members
    ns: tuple[int, ...] = DEFAULT_NS

    def __post_init__(self) -> None:
        between(self, "shared", 0, 1)
        at_least(self, "members", 2)
        at_least(self, "uncertainty_weight", 0)
        above(self, "df", 0)
        at_least(self, "prompts", 1)
        between(self, "reference", 2, self.pool)
        _check_ns(self.ns, self.pool)


def ensemble_goodhart(cfg: EnsembleGoodhartConfig, seed: int) -> RunResult:
    """Best-of-n against an aggregated ensemble of proxies with independent or shared errors."""
    members, gold = ensemble_pool(cfg.prompts, cfg.pool, members=cfg.members, shared=cfg.shared,
                                  df=cfg.df, seed=seed)
    reference = members[:, :, : cfg.reference].reshape(cfg.members, -1)
    if cfg.aggregation == "single":
        proxy = members[0]
    else:
        ensemble = EnsembleReward(cfg.aggregation, cfg.uncertainty_weight).fit(reference)
        proxy = ensemble.aggregate(members)
    curve = bestofn_curve(proxy, gold, cfg.ns)
    errors = error_correlation(reference, gold[:, : cfg.reference].ravel())
    return RunResult(
        {f"shared error weight ρ = {cfg.shared:g}": _curve_points(curve)},
        {"gold_at_largest_n": float(curve.gold[-1]), "largest_n": int(curve.ns[-1]),
         "error_correlation": errors.mean_pairwise, "effective_members": errors.effective_size},
    )


@dataclass
class PlantedTransitionConfig:
    shape: Literal["sharp", "gradual", "none"] = "sharp"
    levels: int = 12
    drop: float = 1.0
    noise: float = 0.15
    break_level: int = 7

    def __post_init__(self) -> None:
        at_least(self, "levels", 4)
        at_least(self, "noise", 0)
        if self.shape == "sharp":
            between(self, "break_level", self.levels // 3, self.levels - 2)


def planted_transition(cfg: PlantedTransitionConfig, seed: int) -> RunResult:
    """One seed of a capability sweep with a known shape: sharp drop, gradual decline or none."""
    planted = planted_curve(cfg.shape, levels=cfg.levels, seeds=1, drop=cfg.drop, noise=cfg.noise,
                            break_level=cfg.break_level if cfg.shape == "sharp" else None, seed=seed)
    curve = planted.curve
    return RunResult({"planted capability sweep": CurvePoints(
        curve.pressure.tolist(), curve.proxy[0].tolist(), curve.gold[0].tolist(), "capability")})


@dataclass
class DetectorRatesConfig:
    trials: int = 200
    seeds: int = 5  # seeds per planted curve
    noise: float = 0.15
    drop: float = 1.0

    def __post_init__(self) -> None:
        at_least(self, "trials", 1)
        at_least(self, "seeds", 1)
        at_least(self, "noise", 0)


def detector_rates(cfg: DetectorRatesConfig, seed: int) -> RunResult:
    """Detection and false-positive rates of the transition test on planted curves."""
    rates = transition_detector_rates(cfg.trials, seed=seed, seeds=cfg.seeds, noise=cfg.noise,
                                      drop=cfg.drop)
    return RunResult({}, {**rates, **config_dict(cfg)})
