"""Run a list of runs over a local process pool, with progress, resuming an interrupted sweep.

Runs already in the store are skipped; each finished run is written by the parent process in
one transaction, so killing the sweep (even with SIGKILL) loses at most the runs in flight.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from goodhartlab.lab.store import ResultsStore, RunResult, run_id

Task = Callable[[dict[str, Any], int], RunResult]


@dataclass(frozen=True)
class RunSpec:
    """One run: `task` is 'module:function', called as function(config, seed) -> RunResult."""

    study: str
    variant: str
    task: str
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def run_id(self) -> str:
        return run_id(self.study, self.task, self.config, self.seed)

    @property
    def label(self) -> str:
        return f"{self.study}/{self.variant}/seed={self.seed}"


def import_object(path: str, what: str, form: str = "package.module:function") -> Any:
    """The object a 'package.module:name' path names; `what` says what it is, in the error."""
    module_name, _, name = path.partition(":")
    if not name:
        raise ValueError(f"{what} {path!r} must be '{form}'")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load {what} {path!r}: {error}") from None


def resolve_task(task: str) -> Task:
    function: Task = import_object(task, "task")
    return function


class RunFailed(RuntimeError):
    """A run raised; the runs that finished before it, or while it was failing, are kept in the store."""


def _execute(spec: RunSpec) -> tuple[RunResult, float]:
    start = time.perf_counter()
    task = resolve_task(spec.task)
    try:
        result = task(dict(spec.config), spec.seed)
    except Exception as error:
        raise RunFailed(f"run {spec.label} failed: {error}") from error
    if not isinstance(result, RunResult):
        raise TypeError(f"task {spec.task} returned {type(result).__name__}, not a RunResult")
    return result, time.perf_counter() - start


def _share_cores(workers: int) -> None:
    """Give each worker process its share of the cores: two processes of two-thread torch on two cores
    thrash and run several times slower than one thread each."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)
    if "torch" in sys.modules:  # inherited from a forked parent: the variables are read too late
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@dataclass(frozen=True)
class SweepSummary:
    ran: int
    skipped: int
    seconds: float


def run_sweep(runs: Sequence[RunSpec], store_path: str | Path, *, workers: int = 2,
              progress: bool = True, description: str = "runs") -> SweepSummary:
    """Execute the runs not yet in the store; `workers=1` runs them in this process."""
    ids = [spec.run_id for spec in runs]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep lists the same run (study, task, config, seed) twice")
    start = time.perf_counter()
    with ResultsStore(store_path) as store:
        done = store.finished_ids()
        pending = [spec for spec in runs if spec.run_id not in done]
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, disable=not progress, transient=False) as bar:
            track = bar.add_task(description, total=len(runs), completed=len(runs) - len(pending))

            def save(spec: RunSpec, result: RunResult, seconds: float) -> None:
                store.save_run(spec.run_id, spec.study, spec.variant, spec.task, spec.config,
                               spec.seed, result, seconds)
                bar.advance(track)

            if workers <= 1 or len(pending) <= 1:
                for spec in pending:
                    save(spec, *_execute(spec))
            else:
                with ProcessPoolExecutor(max_workers=workers, initializer=_share_cores,
                                         initargs=(workers,)) as pool:
                    futures: dict[Future[tuple[RunResult, float]], RunSpec] = {
                        pool.submit(_execute, spec): spec for spec in pending}
                    failure: Exception | None = None
                    while futures:
                        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                        for future in finished:
                            spec = futures.pop(future)
                            if future.cancelled():
                                continue
                            try:
                                save(spec, *future.result())
                            except Exception as error:  # runs not started are dropped; running ones are kept
                                if failure is None:
                                    failure = error
                                    for other in futures:
                                        other.cancel()
                    if failure is not None:
                        raise failure
    return SweepSummary(len(pending), len(runs) - len(pending), time.perf_counter() - start)
