"""The synthetic Goodhart studies: tasks for the runner, each a function (config, seed) -> RunResult.

Configs are dataclasses with defaults that run in seconds on a laptop; the runner stores the
config with the results, so each number in the report can be regenerated from its row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np

from goodhartlab.lab.store import CurvePoints, RunResult
from goodhartlab.measure.bestofn import BestOfNCurve, bestofn_curve
from goodhartlab.measure.scaling import FitError, fit_law
from goodhartlab.measure.synthetic import (
    ensemble_pool,
    goodhart_pool,
    planted_curve,
    transition_detector_rates,
)
from goodhartlab.rewards.ensemble import EnsembleReward, error_correlation

DEFAULT_NS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ConfigT = TypeVar("ConfigT")


def check_field_names(kind: type, config: dict[str, Any]) -> None:
    """Name any setting the config dataclass lacks (a typo in a spec is an error)."""
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{kind.__name__} has no field(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")


def parse_config(kind: type[ConfigT], config: dict[str, Any]) -> ConfigT:
    """Build a config dataclass, naming any unknown field."""
    check_field_names(kind, config)
    return kind(**config)


def _curve_points(curve: BestOfNCurve) -> CurvePoints:
    return CurvePoints(curve.kl.tolist(), curve.proxy.tolist(), curve.gold.tolist(), "kl")


def _fits(curve: BestOfNCurve, early_max_kl: float | None) -> dict[str, Any]:
    """The best-of-n law over every (prompt, n) point, bootstrapped over prompts."""
    prompts = curve.gold_per_prompt.shape[0]
    kl = np.tile(curve.kl, prompts)
    gold = curve.gold_per_prompt.ravel()
    groups = np.repeat(np.arange(prompts), curve.ns.size)
    summary: dict[str, Any] = {"fit": fit_law(kl, gold, "bon", groups=groups).to_dict()}
    if early_max_kl is not None:
        try:
            summary["early_fit"] = fit_law(kl, gold, "bon", groups=groups,
                                           max_kl=early_max_kl).to_dict()
        except FitError as error:
            summary["early_fit_error"] = str(error)
    return summary


@dataclass
class BestOfNGoodhartConfig:
    noise: str = "gaussian"  # "gaussian" (regressional) or "student_t" (extremal)
    df: float = 1.5
    prompts: int = 200
    pool: int = 2048
    ns: tuple[int, ...] = DEFAULT_NS
    early_max_kl: float | None = 1.9  # fit the law on n <= 16 and extrapolate


def bestofn_goodhart(config: dict[str, Any], seed: int) -> RunResult:
    """Best-of-n against a proxy = gold + noise: regressional vs extremal Goodhart."""
    cfg = parse_config(BestOfNGoodhartConfig, config)
    if cfg.noise not in ("gaussian", "student_t"):
        raise ValueError(f"noise must be 'gaussian' or 'student_t', got {cfg.noise!r}")
    proxy, gold = goodhart_pool(cfg.prompts, cfg.pool, seed=seed,
                                df=None if cfg.noise == "gaussian" else cfg.df)
    curve = bestofn_curve(proxy, gold, cfg.ns)
    return RunResult({"best-of-n": _curve_points(curve)}, _fits(curve, cfg.early_max_kl))


@dataclass
class EnsembleGoodhartConfig:
    aggregation: str = "mean"  # "single" (member 0 alone), "mean", "worst", "uncertainty"
    shared: float = 0.0  # ρ, the weight of the error component all members share
    members: int = 5
    uncertainty_weight: float = 0.5
    df: float | None = 1.5
    prompts: int = 100
    pool: int = 2048
    reference: int = 256  # samples per prompt used to normalize the members
    ns: tuple[int, ...] = DEFAULT_NS


def ensemble_goodhart(config: dict[str, Any], seed: int) -> RunResult:
    """Best-of-n against an aggregated ensemble of proxies with independent or shared errors."""
    cfg = parse_config(EnsembleGoodhartConfig, config)
    members, gold = ensemble_pool(cfg.prompts, cfg.pool, members=cfg.members, shared=cfg.shared,
                                  df=cfg.df, seed=seed)
    reference = members[:, :, : cfg.reference].reshape(cfg.members, -1)
    if cfg.aggregation == "single":
        proxy = members[0]
    else:
        ensemble = EnsembleReward(cfg.aggregation, cfg.uncertainty_weight).fit(reference)  # type: ignore[arg-type]
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
    kind: str = "sharp"
    levels: int = 12
    drop: float = 1.0
    noise: float = 0.15
    break_level: int = 7


def planted_transition(config: dict[str, Any], seed: int) -> RunResult:
    """One seed of a capability sweep with a known shape: sharp drop, gradual decline or none."""
    cfg = parse_config(PlantedTransitionConfig, config)
    planted = planted_curve(cfg.kind, levels=cfg.levels, seeds=1, drop=cfg.drop, noise=cfg.noise,
                            break_level=cfg.break_level if cfg.kind == "sharp" else None, seed=seed)
    curve = planted.curve
    return RunResult({"planted capability sweep": CurvePoints(
        curve.pressure.tolist(), curve.proxy[0].tolist(), curve.gold[0].tolist(), "capability")})


@dataclass
class DetectorRatesConfig:
    trials: int = 200
    seeds: int = 5
    noise: float = 0.15
    drop: float = 1.0


def detector_rates(config: dict[str, Any], seed: int) -> RunResult:
    """Detection and false-positive rates of the transition test on planted curves."""
    cfg = parse_config(DetectorRatesConfig, config)
    rates = transition_detector_rates(cfg.trials, seed=seed, seeds=cfg.seeds, noise=cfg.noise,
                                      drop=cfg.drop)
    return RunResult({}, {**rates, **asdict(cfg)})
