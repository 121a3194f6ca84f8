"""Run a list of runs over a local process pool, with progress, resuming an interrupted sweep.

Runs already in the store are skipped; each finished run is written by the parent process in
one transaction, so killing the sweep (even with SIGKILL) loses at most the runs in flight. A run
that fails is recorded in the store with its traceback and the sweep goes on; the failures are
raised together at the end (`RunFailed`), and a rerun retries them.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from goodhartlab.config import config_dict
from goodhartlab.lab.registry import study_kind
from goodhartlab.lab.store import ResultsStore, StudyInfo, run_id
from goodhartlab.results import RunResult


@dataclass(frozen=True)
class RunSpec:
    """One run: a study kind, its config (the parsed dataclass, or a mapping for a user's import-path kind),
    a seed, and where it belongs (study, variant)."""

    study: StudyInfo
    variant: str
    kind: str
    config: Any = field(default_factory=dict)
    seed: int = 0

    @property
    def resolved(self) -> dict[str, Any]:
        """The config as stored: every field with its value, defaults included."""
        return config_dict(self.config) if hasattr(self.config, "__dataclass_fields__") else dict(self.config)

    @property
    def derived(self) -> dict[str, Any]:
        derive = getattr(self.config, "derived", None)
        return derive() if callable(derive) else {}

    @property
    def run_id(self) -> str:
        return run_id(self.study.study, self.kind, self.resolved, self.seed, self.derived)

    @property
    def label(self) -> str:
        return f"{self.study.study}/{self.variant}/seed={self.seed}"


class RunFailed(RuntimeError):
    """Runs raised; every other run finished and is in the store, and the failures are recorded there too."""


def _execute(spec: RunSpec) -> tuple[RunResult, float]:
    start = time.perf_counter()
    function = study_kind(spec.kind, allow_import=True).function()  # checked against the registry at the boundary
    result = function(spec.config, spec.seed)
    if not isinstance(result, RunResult):
        raise TypeError(f"study kind {spec.kind} returned {type(result).__name__}, not a RunResult")
    return result, time.perf_counter() - start


def _share_cores(workers: int) -> None:
    """Give each worker process its share of the cores: two processes of two-thread torch on two cores
    thrash and run several times slower than one thread each."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)
    if "torch" in sys.modules:  # inherited from a forked parent: the variables are read too late
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@dataclass
class SweepSummary:
    ran: int
    skipped: int
    seconds: float
    results: dict[str, RunResult] = field(default_factory=dict)
    """What the runs that ran returned, by run id."""


def run_sweep(runs: Sequence[RunSpec], store_path: str | Path, *, workers: int = 2,
              progress: bool = True, description: str = "runs") -> SweepSummary:
    """Execute the runs not yet in the store; `workers=1` runs them in this process."""
    ids = [spec.run_id for spec in runs]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep lists the same run (study, kind, config, seed) twice")
    start = time.perf_counter()
    failures: list[str] = []
    results: dict[str, RunResult] = {}
    with ResultsStore(store_path) as store:
        done = store.finished_ids()
        pending = [spec for spec in runs if spec.run_id not in done]
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, disable=not progress, transient=False) as bar:
            track = bar.add_task(description, total=len(runs), completed=len(runs) - len(pending))

            def save(spec: RunSpec, result: RunResult, seconds: float) -> None:
                store.save_run(spec.run_id, spec.study, spec.variant, spec.kind, spec.resolved, spec.seed, result,
                               seconds)
                results[spec.run_id] = result
                bar.advance(track)

            def fail(spec: RunSpec, error: BaseException) -> None:
                trace = "".join(traceback.format_exception(error))
                store.save_failure(spec.run_id, spec.study.study, spec.variant, spec.kind, spec.resolved, spec.seed,
                                   f"{type(error).__name__}: {error}", trace)
                failures.append(f"{spec.label}: {error}")

            if workers <= 1 or len(pending) <= 1:
                for spec in pending:
                    try:
                        outcome = _execute(spec)
                    except Exception as error:
                        fail(spec, error)
                        continue
                    save(spec, *outcome)
            else:
                with ProcessPoolExecutor(max_workers=workers, initializer=_share_cores,
                                         initargs=(workers,)) as pool:
                    futures: dict[Future[tuple[RunResult, float]], RunSpec] = {
                        pool.submit(_execute, spec): spec for spec in pending}
                    while futures:
                        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                        for future in finished:
                            spec = futures.pop(future)
                            try:
                                outcome = future.result()
                            except Exception as error:
                                fail(spec, error)
                                continue
                            save(spec, *outcome)
    if failures:
        listed = "; ".join(failures[:3]) + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
        raise RunFailed(f"{len(failures)} of {len(pending)} runs failed ({listed}); the other runs are stored, and "
                        "running the same command again retries the failed ones")
    return SweepSummary(len(pending), len(runs) - len(pending), time.perf_counter() - start, results)
