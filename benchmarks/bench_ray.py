"""The Ray backend against the local pool: a CPU-bound sweep on 1 and 2 CPUs under each, and the cost of scheduling.

    python benchmarks/bench_ray.py [--runs 12] [--tiny-runs 100] [--repeats 3]

A run is the synthetic best-of-n study (`bestofn_goodhart`, 400 prompts x a pool of 4,096: NumPy, under a second).
Each backend's executor (`lab.backends`: the local pool of worker processes, Ray tasks) is started with 1 and with
2 CPUs, its processes pinned to that many cores (CPU affinity, which they inherit), and warmed up (its workers
started, goodhartlab imported), then given the sweep; the time from the first submission to the last result is the
sweep's work, and the speed-up from 1 CPU to 2 is the ratio (the goal is 1.8x or more on an idle machine). Ray's
overhead per run is its work time minus the local pool's, per run, on the same CPUs. Scheduling: tiny runs
(milliseconds of work) through each warm executor on 2 CPUs give what each adds to a run. The driver's claim and
store write, the same on both backends, are measured apart (a claim and a stored result per run, in the store's own
transactions), and so is what a sweep pays once: starting the local pool (every `run_sweep` starts one) and
starting a local Ray. Each figure is the fastest of --repeats tries: on a shared machine the fastest is the one
least slowed by others; the load average before and after says how busy it was.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goodhartlab.config import parse_config
from goodhartlab.lab.backends import Executor, LocalBackend, RayBackend, execute
from goodhartlab.lab.runner import RunSpec
from goodhartlab.lab.store import ResultsStore, StudyInfo
from goodhartlab.lab.synthetic import BestOfNGoodhartConfig

WORK = {"prompts": 400, "pool": 4096, "ns": [1, 4, 16, 64, 256, 1024, 4096], "early_max_kl": None}
TINY = {"prompts": 2, "pool": 16, "ns": [1, 2, 4, 8, 16], "early_max_kl": None}


def runs(settings: dict[str, Any], count: int, study: str) -> list[RunSpec]:
    config = parse_config(BestOfNGoodhartConfig, settings)
    return [RunSpec(StudyInfo(study, study), "v", "bestofn_goodhart", config, seed) for seed in range(count)]


def drive(executor: Executor, specs: list[RunSpec]) -> float:
    """Seconds from the first submission to the last result, keeping the executor full."""
    start = time.perf_counter()
    queue, busy = deque(specs), 0
    while queue or busy:
        while queue and executor.free() > 0:
            executor.submit(queue.popleft())
            busy += 1
        for _, message in executor.finished(timeout=1.0):
            busy -= 1
            assert message[0] == "done", message
    return time.perf_counter() - start


def best(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--tiny-runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import ray

    work, tiny = runs(WORK, args.runs, "work"), runs(TINY, args.tiny_runs, "tiny")
    load_before = os.getloadavg()
    one_run = best(args.repeats, lambda: execute(work[0])[1])
    tiny_run = best(args.repeats, lambda: execute(tiny[0])[1])
    seconds: dict[tuple[str, int], float] = {}
    per_run_ms: dict[str, float] = {}
    starts: dict[str, float] = {}

    cores = os.sched_getaffinity(0)
    for cpus in (1, 2):
        os.sched_setaffinity(0, sorted(cores)[:cpus])  # the pool and its workers run on `cpus` cores only
        started = time.perf_counter()
        executor = LocalBackend().executor(cpus)
        drive(executor, runs(TINY, cpus, "warm-up"))  # every worker started and has imported goodhartlab
        starts[f"local pool of {cpus}"] = time.perf_counter() - started
        seconds["local", cpus] = best(args.repeats, lambda executor=executor: drive(executor, work))
        if cpus == 2:
            per_run_ms["local"] = 1000 * best(args.repeats, lambda executor=executor: drive(executor, tiny)) / len(tiny)
        executor.close(kill=False)

    for cpus in (1, 2):
        os.sched_setaffinity(0, sorted(cores)[:cpus])  # Ray's processes, started now, inherit it
        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
        backend = RayBackend()
        executor = backend.executor(cpus)
        drive(executor, runs(TINY, 2 * cpus, "warm-up"))
        starts[f"Ray of {cpus}"] = time.perf_counter() - started
        seconds["ray", cpus] = best(args.repeats, lambda executor=executor: drive(executor, work))
        if cpus == 2:
            per_run_ms["ray"] = 1000 * best(args.repeats, lambda executor=executor: drive(executor, tiny)) / len(tiny)
        executor.close(kill=False)
        ray.shutdown()
    os.sched_setaffinity(0, cores)

    def store_cost() -> float:
        """The driver's work for one run: claim it, then store its result, in the store's own transactions."""
        result = execute(tiny[0])[0]
        with tempfile.TemporaryDirectory() as folder, ResultsStore(Path(folder) / "r.sqlite") as store:
            start = time.perf_counter()
            for spec in tiny:
                store.claim(spec.run_id)
                store.save_run(spec.run_id, spec.study, spec.variant, spec.kind, spec.resolved, spec.seed, result, 0.0)
            return (time.perf_counter() - start) / len(tiny)

    store_ms = 1000 * best(args.repeats, store_cost)
    load_after = os.getloadavg()

    print(f"{args.runs} runs of {one_run:.2f} s each (bestofn_goodhart, {WORK['prompts']} prompts x pool "
          f"{WORK['pool']}); {os.cpu_count()} cores, load average {load_before[0]:.2f} before, {load_after[0]:.2f} "
          "after")
    print(f"  {'backend':8} {'1 CPU':>8} {'2 CPUs':>8} {'speed-up':>9}")
    for backend_name in ("local", "ray"):
        one, two = seconds[backend_name, 1], seconds[backend_name, 2]
        print(f"  {backend_name:8} {one:7.2f}s {two:7.2f}s {one / two:8.2f}x")
    for cpus in (1, 2):
        ray_s, local_s = seconds["ray", cpus], seconds["local", cpus]
        print(f"  Ray against the local pool, {cpus} CPU(s): {ray_s / local_s:.2f}x the time, "
              f"{1000 * (ray_s - local_s) / args.runs:+.0f} ms per run")
    print(f"scheduling, {args.tiny_runs} tiny runs ({1000 * tiny_run:.1f} ms of work each) on 2 CPUs: local pool "
          f"{per_run_ms['local']:.1f} ms per run, Ray {per_run_ms['ray']:.1f} ms per run "
          f"({per_run_ms['ray'] - per_run_ms['local']:+.1f} ms)")
    print(f"the driver's claim and store write: {store_ms:.1f} ms per run (both backends)")
    print("paid once per sweep: " + ", ".join(f"starting the {name} {value:.1f} s" for name, value in starts.items()))


if __name__ == "__main__":
    main()
