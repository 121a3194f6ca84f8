"""Best-of-n estimator: 1,000 prompts x a pool of 12,600 x 50 values of n (Coste et al.'s scale).

Baseline, measured in the same run: the direct method of Coste et al.'s `unbiased_sampler`,
exact binomial coefficients C(i−1, n−1)/C(N, n) as Python integers for every n, then a
per-prompt weighted sum over the proxy-sorted pool. Both get the same unsorted pool and sort it.
Usage: python benchmarks/bench_bestofn.py [--prompts 1000] [--pool 12600] [--values 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import comb

from goodhartlab.measure.bestofn import bestofn_curve


def direct(proxy: np.ndarray, gold: np.ndarray, ns: np.ndarray) -> np.ndarray:
    pool = proxy.shape[1]
    order = np.argsort(proxy, axis=1, kind="stable")
    sorted_gold = np.take_along_axis(gold, order, axis=1)
    result = np.empty(len(ns))
    for j, n in enumerate(ns):
        total = comb(pool, int(n), exact=True)
        coeffs = np.array([comb(i - 1, int(n) - 1, exact=True) / total for i in range(n, pool + 1)])
        result[j] = np.mean(np.sum(coeffs * sorted_gold[:, n - 1:], axis=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=12600)
    parser.add_argument("--values", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gold = rng.standard_normal((args.prompts, args.pool))
    proxy = gold + rng.standard_t(1.5, gold.shape)
    ns = np.unique(np.round(np.geomspace(1, args.pool - 100, args.values * 2)).astype(int))
    ns = ns[np.linspace(0, ns.size - 1, args.values).astype(int)]

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = bestofn_curve(proxy, gold, ns)
        times.append(time.perf_counter() - start)
    ours_s = min(times)
    start = time.perf_counter()
    reference = direct(proxy, gold, ns)
    direct_s = time.perf_counter() - start
    error = float(np.max(np.abs(ours.gold - reference)))
    print(f"best-of-n estimator, {args.prompts} prompts x pool {args.pool} x {ns.size} values of n")
    print(f"  goodhartlab (log-gamma weights, threaded sort): {ours_s:.3f} s (best of {args.repeats})")
    print(f"  direct (exact binomials, Coste et al.):          {direct_s:.1f} s")
    print(f"  speed-up: {direct_s / ours_s:.0f}x   max |difference| in gold: {error:.2e}")


if __name__ == "__main__":
    main()
