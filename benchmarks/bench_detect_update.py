"""Detector update cost per logged evaluation, for every detector, in µs.

Each detector is fitted on healthy synthetic runs and then updated online, one row at a time, over runs it has not
seen, as a training callback would (what its access level sees: the law alarm with one gold evaluation in 20, and
also with gold at every evaluation). Baseline, measured in the same run: building the Row from a logged mapping
(`Row.from_mapping`), the least a callback does per logged step. Samples are 16 embeddings of 8 dimensions and
8 states x 4 actions per evaluation.
Usage: python benchmarks/bench_detect_update.py [--pairs 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from goodhartlab.detect import DETECTORS, Row, make_detector, synthetic_benchmark
from goodhartlab.detect.runs import LabelledRun
from goodhartlab.detect.scoring import L3_GOLD_EVERY, gold_budget


def online_cost(detector: Any, runs: list[LabelledRun]) -> float:
    """Seconds per update over `runs`, rows prepared beforehand."""
    prepared = [(run.context(), run.rows()) for run in runs]
    rows = sum(len(r) for _, r in prepared)
    start = time.perf_counter()
    for context, run_rows in prepared:
        detector.reset(context)
        for row in run_rows:
            detector.update(row)
    return (time.perf_counter() - start) / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench = synthetic_benchmark(pairs=args.pairs, samples=True)
    names = sorted(bench)
    training = [run for name in names[1:] for run in bench[name]]
    evaluated = bench[names[0]]

    logged = [{"step": float(s), "kl": float(k), "proxy": float(p), "length": float(n)}
              for run in evaluated for s, k, p, n in zip(run.step, run.kl, run.proxy, run.length, strict=True)]
    start = time.perf_counter()
    for _ in range(args.repeats):
        for mapping in logged:
            Row.from_mapping(mapping)
    baseline_us = 1e6 * (time.perf_counter() - start) / (args.repeats * len(logged))

    print(f"detector update cost per logged evaluation ({len(evaluated)} runs x {len(evaluated[0])} evaluations)")
    print(f"  baseline: Row.from_mapping of a logged step: {baseline_us:.1f} µs")
    cases: list[tuple[str, str, int | None]] = [(name, name, L3_GOLD_EVERY) for name in DETECTORS]
    cases.append(("law_alarm (gold every evaluation)", "law_alarm", None))
    for label, name, gold_every in cases:
        detector = make_detector(name)
        budget = gold_budget(detector, gold_every)
        seen = [run.restricted(detector.access, gold_every=budget) for run in training]
        if hasattr(detector, "train"):
            detector.train(seen)
        detector.fit([run for run in seen if not run.hacked])
        views = [run.restricted(detector.access, gold_every=budget) for run in evaluated]
        cost = min(online_cost(detector, views) for _ in range(args.repeats))
        print(f"  {label:36s} {detector.access}  {1e6 * cost:8.1f} µs   ({1e6 * cost / baseline_us:6.1f}x baseline)")


if __name__ == "__main__":
    main()
