"""Synthetic Goodhart: proxies built from a known gold, so every curve has a known answer.

- regressional: proxy = gold + Gaussian noise. Gold stays monotone in proxy; best-of-n gold is
  e_n / √2 for unit variances (e_n the expected maximum of n standard normals).
- extremal: proxy = gold + heavy-tailed (Student-t) noise. Selecting the proxy's maximum
  selects the noise's tail, so gold peaks and falls back toward 0.
- ensembles: k members whose errors share a component of weight ρ (Eisenstein et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from goodhartlab.measure.curve import Curve


def _noise(rng: np.random.Generator, shape: tuple[int, ...], df: float | None) -> NDArray[np.float64]:
    return rng.standard_normal(shape) if df is None else rng.standard_t(df, shape)


def goodhart_pool(prompts: int, pool: int, *, df: float | None = None, noise_scale: float = 1.0,
                  seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(proxy, gold), each (prompts, pool); df=None gives regressional, a finite df extremal noise."""
    rng = np.random.default_rng(seed)
    gold = rng.standard_normal((prompts, pool))
    return gold + noise_scale * _noise(rng, (prompts, pool), df), gold


def ensemble_pool(prompts: int, pool: int, *, members: int = 5, shared: float = 0.0,
                  df: float | None = 1.5, noise_scale: float = 1.0,
                  seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(member_scores (members, prompts, pool), gold): error_m = √ρ·shared + √(1−ρ)·own_m."""
    if not 0 <= shared <= 1:
        raise ValueError(f"shared (ρ) must lie in [0, 1], got {shared}")
    rng = np.random.default_rng(seed)
    gold = rng.standard_normal((prompts, pool))
    common = _noise(rng, (prompts, pool), df)
    own = _noise(rng, (members, prompts, pool), df)
    errors = np.sqrt(shared) * common + np.sqrt(1 - shared) * own
    return gold + noise_scale * errors, gold


@dataclass(frozen=True)
class PlantedCurve:
    curve: Curve
    kind: str  # "sharp", "gradual" or "none"
    break_level: int | None  # index of the level after which a sharp drop happens


def planted_curve(kind: str, *, levels: int = 12, seeds: int = 5, drop: float = 1.0,
                  noise: float = 0.15, break_level: int | None = None, seed: int = 0) -> PlantedCurve:
    """Gold and proxy against a capability axis, with a known shape.

    Gold rises for a third of the axis, then: `sharp` falls by `drop` between two adjacent
    levels; `gradual` falls by the same amount spread over the rest of the axis; `none` keeps
    rising (a control whose proxy equals its gold). The proxy always rises. The sharp drop
    follows `break_level` (drawn at random past the rise when None).
    """
    if kind not in ("sharp", "gradual", "none"):
        raise ValueError(f"kind must be 'sharp', 'gradual' or 'none', got {kind!r}")
    rng = np.random.default_rng(seed)
    x = np.arange(levels, dtype=np.float64)
    rise_end = levels // 3
    base = 0.3 * np.minimum(x, rise_end) / max(rise_end, 1)
    if kind == "sharp":
        if break_level is None:
            break_level = int(rng.integers(rise_end, levels - 2))
        if not rise_end <= break_level < levels - 1:
            raise ValueError(f"break_level must lie in [{rise_end}, {levels - 2}], got {break_level}")
        gold_mean = base - drop * (x > break_level)
    elif kind == "gradual":
        gold_mean = base - drop * np.clip((x - rise_end) / (levels - 1 - rise_end), 0, 1)
    else:
        gold_mean = 0.3 * x / (levels - 1)
    proxy_mean = 0.3 * x / (levels - 1) if kind == "none" else 0.1 * x
    gold = gold_mean + noise * rng.standard_normal((seeds, levels))
    proxy = proxy_mean + (0 if kind == "none" else noise) * rng.standard_normal((seeds, levels))
    if kind == "none":
        proxy = gold.copy()
    return PlantedCurve(Curve(x, proxy, gold, "capability"), kind,
                        break_level if kind == "sharp" else None)


def transition_detector_rates(trials: int = 200, *, seed: int = 0, **curve_options: float) -> dict[str, float]:
    """Share of planted curves the transition detector flags, per kind of decline."""
    from goodhartlab.measure.transitions import detect_transition

    rates = {}
    for index, kind in enumerate(("sharp", "gradual", "none")):
        flagged = sum(
            detect_transition(planted_curve(kind, seed=seed * 1_000_003 + index * trials + trial,
                                            **curve_options).curve,  # type: ignore[arg-type]
                              n_boot=0).detected
            for trial in range(trials))
        rates[kind] = flagged / trials
    return {"detection_rate": rates["sharp"], "false_positive_rate_gradual": rates["gradual"],
            "false_positive_rate_control": rates["none"], "trials_per_kind": float(trials)}
