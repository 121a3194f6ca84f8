"""The unbiased best-of-n estimator over a pool (Nakano et al. 2021, App. I; Gao et al. 2022).

For one prompt with N scored samples sorted ascending by proxy, the expected gold score of the
proxy-argmax over a uniformly random n-subset is

    E_n = Σ_{i=n}^{N} C(i−1, n−1) / C(N, n) · gold_(i)

The weights depend only on (N, n), so one weight matrix serves every prompt and the whole
estimate is a sort plus one matrix product. The same weights applied to the proxy give the proxy
curve. Ties in proxy are broken uniformly at random, which is the same as giving every member
of a tied block the block's mean gold score.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln

from goodhartlab.measure.kl import kl_bestofn
from goodhartlab.measure.scaling import LawFit, fit_law
from goodhartlab.measure.validation import as_finite, as_positive_ints

# About 16 MB of float64 per block: large enough that two threads overlap their sorts well,
# small enough that the sorted copies stay out of swap on a laptop.
_BLOCK_ELEMENTS = 1 << 21


def bestofn_weights(pool_size: int, ns: ArrayLike) -> NDArray[np.float64]:
    """Weights of shape (pool_size, len(ns)): column j weighs the ascending-sorted pool for ns[j].

    Computed with log-gamma, not exact binomials, so a pool of tens of thousands costs microseconds.
    """
    counts = as_positive_ints(ns, "ns")
    if pool_size < 1:
        raise ValueError(f"pool_size must be >= 1, got {pool_size}")
    if counts.max() > pool_size:
        raise ValueError(f"n = {int(counts.max())} exceeds the pool size {pool_size}; "
                         "best-of-n needs at least n samples per prompt")
    rank = np.arange(1, pool_size + 1, dtype=np.float64)[:, None]  # 1-indexed position i
    n = counts.astype(np.float64)[None, :]
    log_total = gammaln(pool_size + 1) - gammaln(n + 1) - gammaln(pool_size - n + 1)
    with np.errstate(invalid="ignore"):
        log_weight = gammaln(rank) - gammaln(n) - gammaln(np.maximum(rank - n + 1, 1)) - log_total
    weights = np.where(rank >= n, np.exp(log_weight), 0.0)
    return weights / weights.sum(axis=0, keepdims=True)


@dataclass(frozen=True)
class BestOfNCurve:
    """Expected proxy and gold of best-of-n at each n, per prompt and averaged over prompts."""

    ns: NDArray[np.int64]
    kl: NDArray[np.float64]
    proxy_per_prompt: NDArray[np.float64]  # (prompts, len(ns))
    gold_per_prompt: NDArray[np.float64]

    @property
    def proxy(self) -> NDArray[np.float64]:
        return self.proxy_per_prompt.mean(axis=0)

    @property
    def gold(self) -> NDArray[np.float64]:
        return self.gold_per_prompt.mean(axis=0)

    @property
    def gold_se(self) -> NDArray[np.float64]:
        """Standard error over prompts (the pool itself is taken as given)."""
        prompts = self.gold_per_prompt.shape[0]
        if prompts < 2:
            return np.full(len(self.ns), np.nan)
        return self.gold_per_prompt.std(axis=0, ddof=1) / np.sqrt(prompts)

    @property
    def proxy_se(self) -> NDArray[np.float64]:
        prompts = self.proxy_per_prompt.shape[0]
        if prompts < 2:
            return np.full(len(self.ns), np.nan)
        return self.proxy_per_prompt.std(axis=0, ddof=1) / np.sqrt(prompts)


def fit_bestofn_law(curve: BestOfNCurve, *, max_kl: float | None = None, seed: int = 0) -> LawFit:
    """The best-of-n law over every (prompt, n) point, bootstrapped over prompts (Gao et al. fit the mean;
    fitting the points lets the bootstrap resample whole prompts)."""
    prompts = curve.gold_per_prompt.shape[0]
    groups = np.repeat(np.arange(prompts), curve.ns.size)
    return fit_law(np.tile(curve.kl, prompts), curve.gold_per_prompt.ravel(), "bon", groups=groups, max_kl=max_kl,
                   seed=seed)


PEAK_DROP_KEYS = ("gold_peak_n", "gold_drop_to_n", "gold_drop", "gold_drop_low", "gold_drop_high",
                  "prompts_falling")


@dataclass(frozen=True)
class PeakDrop:
    """How far mean gold falls from its peak n to the largest n, paired prompt by prompt."""

    peak_n: int
    last_n: int
    drop: float  # mean over prompts of gold at peak_n minus gold at last_n; 0 when the peak is last_n
    interval: tuple[float, float] | None  # bootstrap over prompts; None with a single prompt
    prompts_falling: int  # prompts whose own gold is lower at last_n than at peak_n
    prompts: int

    def to_dict(self) -> dict[str, float | int | None]:
        """Flat scalars, so a stored run's summary shows them in the report's table."""
        low, high = self.interval or (None, None)
        values = (self.peak_n, self.last_n, self.drop, low, high, self.prompts_falling)
        return dict(zip(PEAK_DROP_KEYS, values, strict=True))


def peak_drop(curve: BestOfNCurve, *, confidence: float = 0.95, resamples: int = 2000,
              seed: int = 0) -> PeakDrop:
    """Is the fall after the gold peak real, or noise between prompts?

    The drop is paired (each prompt against itself at the two n), so the spread between prompts'
    levels cancels; the interval resamples prompts. The peak n is picked on these same prompts,
    which makes the interval a little optimistic: read it beside the law fit's β interval.
    Differences within rounding (a flat top, a prompt whose gold never changes) count as no fall.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    gold = curve.gold
    rounding = 1e-9 * max(1.0, float(np.abs(curve.gold_per_prompt).max()))
    peak = int(np.argmax(gold))
    if gold[-1] >= gold[peak] - rounding:
        peak = len(gold) - 1
    per_prompt = curve.gold_per_prompt[:, peak] - curve.gold_per_prompt[:, -1]
    interval = None
    if per_prompt.size > 1:
        rng = np.random.default_rng(seed)
        means = per_prompt[rng.integers(0, per_prompt.size, (resamples, per_prompt.size))].mean(axis=1)
        tail = (1 - confidence) / 2
        low, high = np.quantile(means, [tail, 1 - tail])
        interval = (float(low), float(high))
    return PeakDrop(peak_n=int(curve.ns[peak]), last_n=int(curve.ns[-1]), drop=float(per_prompt.mean()),
                    interval=interval, prompts_falling=int((per_prompt > rounding).sum()),
                    prompts=int(per_prompt.size))


def _average_tied_blocks(sorted_proxy: NDArray[np.float64], sorted_gold: NDArray[np.float64]) -> NDArray[np.float64]:
    starts = np.ones_like(sorted_proxy, dtype=bool)
    starts[:, 1:] = sorted_proxy[:, 1:] != sorted_proxy[:, :-1]
    block = np.cumsum(starts.ravel()) - 1  # row starts are block starts, so ids never straddle rows
    sums = np.bincount(block, weights=sorted_gold.ravel())
    sizes = np.bincount(block)
    return (sums / sizes)[block].reshape(sorted_gold.shape)


def _score_chunk(proxy: NDArray[np.float64], gold: NDArray[np.float64],
                 weights: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    # An unstable sort is fine: tied blocks are averaged below, so their order never matters.
    order = np.argsort(proxy, axis=1)
    sorted_proxy = np.take_along_axis(proxy, order, axis=1)
    sorted_gold = np.take_along_axis(gold, order, axis=1)
    if np.any(sorted_proxy[:, 1:] == sorted_proxy[:, :-1]):
        sorted_gold = _average_tied_blocks(sorted_proxy, sorted_gold)
    return sorted_proxy @ weights, sorted_gold @ weights


def bestofn_curve(proxy_scores: ArrayLike, gold_scores: ArrayLike, ns: ArrayLike,
                  *, threads: int | None = None) -> BestOfNCurve:
    """Best-of-n curves from a pool: arrays of shape (prompts, pool) or (pool,) for one prompt.

    Prompts are processed in row blocks on `threads` threads (default: all cores); NumPy's sort
    releases the GIL, so the sort that dominates the cost runs in parallel.
    """
    proxy = as_finite(proxy_scores, "proxy_scores", ndim=(1, 2))
    gold = as_finite(gold_scores, "gold_scores", ndim=(1, 2))
    if proxy.shape != gold.shape:
        raise ValueError(f"proxy_scores has shape {proxy.shape} but gold_scores has {gold.shape}; "
                         "every answer needs both scores")
    proxy, gold = np.atleast_2d(proxy), np.atleast_2d(gold)
    counts = as_positive_ints(ns, "ns")
    weights = bestofn_weights(proxy.shape[1], counts)
    rows_per_block = max(1, _BLOCK_ELEMENTS // proxy.shape[1])
    starts = range(0, proxy.shape[0], rows_per_block)
    workers = min(threads or os.cpu_count() or 1, len(starts))
    def score(start: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        block = slice(start, start + rows_per_block)
        return _score_chunk(proxy[block], gold[block], weights)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(score, starts))
    else:
        results = [score(start) for start in starts]
    return BestOfNCurve(
        ns=counts,
        kl=np.atleast_1d(kl_bestofn(counts)),
        proxy_per_prompt=np.concatenate([p for p, _ in results]),
        gold_per_prompt=np.concatenate([g for _, g in results]),
    )


def bestofn_ragged(proxy_scores: list[ArrayLike], gold_scores: list[ArrayLike], ns: ArrayLike) -> BestOfNCurve:
    """Best-of-n curves when prompts have pools of different sizes (grouped by size internally)."""
    if len(proxy_scores) != len(gold_scores):
        raise ValueError(f"{len(proxy_scores)} proxy pools but {len(gold_scores)} gold pools")
    counts = as_positive_ints(ns, "ns")
    pools = [(as_finite(p, f"proxy_scores[{i}]", ndim=1), as_finite(g, f"gold_scores[{i}]", ndim=1))
             for i, (p, g) in enumerate(zip(proxy_scores, gold_scores, strict=True))]
    proxy_out = np.empty((len(pools), len(counts)))
    gold_out = np.empty_like(proxy_out)
    sizes = np.array([p.size for p, _ in pools])
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        if size < counts.max():
            raise ValueError(f"prompt {int(members[0])} has a pool of {int(size)} answers, fewer "
                             f"than the largest n = {int(counts.max())}")
        curve = bestofn_curve(np.stack([pools[i][0] for i in members]),
                              np.stack([pools[i][1] for i in members]), counts)
        proxy_out[members], gold_out[members] = curve.proxy_per_prompt, curve.gold_per_prompt
    return BestOfNCurve(ns=counts, kl=np.atleast_1d(kl_bestofn(counts)),
                        proxy_per_prompt=proxy_out, gold_per_prompt=gold_out)
