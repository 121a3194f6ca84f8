"""A curve: proxy and gold against pressure, one row per seed (missing gold allowed)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Curve:
    """Proxy and gold on a common pressure grid; arrays are (seeds, levels), NaN where not measured."""

    pressure: NDArray[np.float64]
    proxy: NDArray[np.float64]
    gold: NDArray[np.float64]
    pressure_kind: str = "kl"

    def __post_init__(self) -> None:
        levels = self.pressure.shape[0]
        for name in ("proxy", "gold"):
            values = getattr(self, name)
            if values.ndim != 2 or values.shape[1] != levels:
                raise ValueError(f"{name} must have shape (seeds, {levels}), got {values.shape}")
        if levels < 2 or np.any(np.diff(self.pressure) <= 0):
            raise ValueError("pressure must hold at least 2 strictly increasing levels")
        if np.isinf(self.proxy).any() or np.isinf(self.gold).any():
            raise ValueError("proxy and gold must be finite (NaN marks a level that was not measured)")
        if np.isnan(self.gold).all(axis=0).any():
            missing = self.pressure[np.isnan(self.gold).all(axis=0)]
            raise ValueError(f"no seed has gold at pressure {missing.tolist()}; drop those levels")

    @classmethod
    def from_points(cls, pressure: ArrayLike, proxy: ArrayLike, gold: ArrayLike,
                    seed: ArrayLike | None = None, pressure_kind: str = "kl") -> Curve:
        """Gather flat (pressure, proxy, gold, seed) points onto the grid of distinct pressures;
        a seed's points at one pressure are averaged (NaN where none of them was measured)."""
        x = np.asarray(pressure, dtype=np.float64)
        seeds = np.zeros(x.size, dtype=np.int64) if seed is None else np.asarray(seed)
        levels, level_index = np.unique(x, return_inverse=True)
        seed_ids, seed_index = np.unique(seeds, return_inverse=True)
        grids = []
        for values in (proxy, gold):
            flat = np.asarray(values, dtype=np.float64)
            measured = ~np.isnan(flat)
            total = np.zeros((seed_ids.size, levels.size))
            count = np.zeros((seed_ids.size, levels.size))
            np.add.at(total, (seed_index[measured], level_index[measured]), flat[measured])
            np.add.at(count, (seed_index[measured], level_index[measured]), 1)
            with np.errstate(invalid="ignore"):
                grids.append(np.where(count > 0, total / count, np.nan))
        return cls(levels, grids[0], grids[1], pressure_kind)

    @classmethod
    def from_seeds(cls, series: Mapping[int, tuple[ArrayLike, ArrayLike, ArrayLike]],
                   pressure_kind: str = "kl") -> Curve:
        """One curve from each seed's (pressure, proxy, gold), dropping points without gold.

        Seeds on a shared grid (best-of-n's n, training episodes) are gathered level by level. Seeds
        measured at pressures of their own (the KL an RL or DPO checkpoint reached differs by seed)
        are interpolated onto their pressures inside the range every seed reaches, so each level
        has every seed and the intervals over seeds mean something; beyond that range a mean
        would be of some seeds only.
        """
        kept = {}
        for seed, (pressure, proxy, gold) in series.items():
            x, p, g = (np.asarray(values, dtype=np.float64) for values in (pressure, proxy, gold))
            measured = ~np.isnan(g)
            if measured.any():
                kept[seed] = average_repeats(x[measured], p[measured], g[measured])
        if not kept:
            raise ValueError("no point has gold")
        grids = [grid for grid, _, _ in kept.values()]
        union = np.unique(np.concatenate(grids))
        shared = sum(grid.size for grid in grids) > 1.5 * union.size  # most levels measured by several seeds
        low, high = max(grid[0] for grid in grids), min(grid[-1] for grid in grids)
        common = union[(union >= low) & (union <= high)]
        if len(kept) == 1 or shared or common.size < 2:
            seeds = [seed for seed, (grid, _, _) in kept.items() for _ in grid]
            x, p, g = (np.concatenate([part[i] for part in kept.values()]) for i in range(3))
            return cls.from_points(x, p, g, seeds, pressure_kind)
        gold = np.array([np.interp(common, grid, g) for grid, _, g in kept.values()])
        proxy = np.array([np.interp(common, grid[~np.isnan(p)], p[~np.isnan(p)]) if (~np.isnan(p)).any()
                          else np.full(common.size, np.nan) for grid, p, _ in kept.values()])
        return cls(common, proxy, gold, pressure_kind)

    @property
    def seeds(self) -> int:
        return int(self.gold.shape[0])

    def mean_gold(self) -> NDArray[np.float64]:
        return np.nanmean(self.gold, axis=0)

    def mean_proxy(self) -> NDArray[np.float64]:
        with warnings.catch_warnings():  # a level where no seed logged the proxy stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.proxy, axis=0)

    def resample_seeds(self, rng: np.random.Generator) -> Curve:
        rows = rng.integers(0, self.seeds, self.seeds)
        gold = self.gold[rows]
        if np.isnan(gold).all(axis=0).any():  # a resample lost a level: keep the original rows
            return self
        return Curve(self.pressure, self.proxy[rows], gold, self.pressure_kind)

    def gold_noise(self) -> NDArray[np.float64]:
        """Standard error of the mean gold at each level.

        Several seeds: the within-level variance pooled over levels, divided by the seeds present.
        One seed: σ from the median absolute second difference (white noise has Var = 6σ²), which
        a single sharp drop barely moves; with fewer than 4 levels it cannot be estimated (NaN), so
        no fall counts as significant.
        """
        present = (~np.isnan(self.gold)).sum(axis=0)
        if self.seeds >= 2 and (present >= 2).any():
            deviations = self.gold - self.mean_gold()
            dof = max(int((present[present >= 2] - 1).sum()), 1)
            sigma = np.sqrt(np.nansum(deviations[:, present >= 2] ** 2) / dof)
            return sigma / np.sqrt(np.maximum(present, 1))
        series = self.mean_gold()
        if series.size < 4:
            return np.full_like(series, np.nan)
        second = np.diff(series, 2)
        sigma = 1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6.0)
        return np.full_like(series, sigma)


def average_repeats(x: NDArray[np.float64], proxy: NDArray[np.float64], gold: NDArray[np.float64]
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """One point per distinct pressure, in order: gold averaged, proxy averaged where measured."""
    levels, index = np.unique(x, return_inverse=True)
    gold_mean = np.bincount(index, weights=gold) / np.bincount(index)
    measured = ~np.isnan(proxy)
    with np.errstate(invalid="ignore"):
        proxy_mean = np.bincount(index, weights=np.where(measured, proxy, 0.0)) / np.bincount(index, weights=measured)
    return levels, proxy_mean, gold_mean
