"""The driver of a sweep: what is pending, who runs it, and the store, with progress and resuming.

`run_sweep` is the one place that decides what is pending, claims runs, and writes the store; where the
runs compute is a backend's business (`lab.backends`: local worker processes, or a Ray cluster), and a
backend only computes. Runs already in the store are skipped; each finished run is written by this
process in one transaction, so killing the sweep (even with SIGKILL) loses at most the runs in flight.
Local workers die with the parent (Linux), and a Ray job's tasks end with its driver, so killing only
the driver leaves no orphan. Ctrl-C (or SIGTERM) stops the runs in flight at once and keeps every run
that finished. A run that raises fails alone; a run whose worker dies (the OS's out-of-memory killer, a
signal, a lost node) is tried once more, then fails alone. Failures are recorded in the store with their
reason and the sweep goes on; they are raised together at the end (`RunFailed`), and a rerun retries
them. Two sweeps on one store share the work: each claims a run before running it, and neither runs what
the other has claimed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from goodhartlab.config import config_dict
from goodhartlab.lab.backends import Backend, Message, open_backend, run_message
from goodhartlab.lab.store import ResultsStore, StudyInfo, run_id
from goodhartlab.results import RunResult

RETRIES_AFTER_DEATH = 1
"""A run whose worker died is tried this many more times before it is stored as failed."""


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
    """Runs failed; every other run finished and is in the store, and the failures are recorded there too."""


class Interrupted(KeyboardInterrupt):
    """The sweep was stopped (Ctrl-C or SIGTERM); the runs that finished are in the store."""

    def __init__(self, finished: int, signal_name: str = "SIGINT") -> None:
        super().__init__(f"{signal_name}: {finished} runs finished and stored")
        self.finished, self.signal_name = finished, signal_name


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a sweep the way Ctrl-C does: workers stopped, finished runs kept."""
    if multiprocessing.current_process().name != "MainProcess" or not _in_main_thread():
        yield
        return

    def handler(number: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(number).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# -- the sweep --------------------------------------------------------------------------------------------------


@dataclass
class SweepSummary:
    ran: int
    skipped: int
    seconds: float
    results: dict[str, RunResult] = field(default_factory=dict)
    """What the runs that ran returned, by run id."""
    elsewhere: int = 0
    """Runs another sweep on the same store had claimed, left to it."""
    retried: int = 0
    """Runs whose worker died and that were tried again."""


@contextlib.contextmanager
def using_backend(backend: str | Backend, address: str | None = None) -> Iterator[Backend]:
    """`backend` itself when it is open already (the caller closes it), else the named one, opened and closed
    here."""
    if not isinstance(backend, str):
        yield backend
        return
    opened = open_backend(backend, address)
    try:
        yield opened
    finally:
        opened.close()


def run_sweep(runs: Sequence[RunSpec], store_path: str | Path, *, workers: int | None = None,
              backend: str | Backend = "local", address: str | None = None, progress: bool = True,
              description: str = "runs") -> SweepSummary:
    """Execute the runs not yet in the store on `backend` ('local' or 'ray', or an open `lab.backends`
    backend); `workers` runs at a time (default: 2 locally, the cluster's CPUs on Ray), and locally
    `workers=1` runs them in this process. `address` names a Ray cluster."""
    with using_backend(backend, address) as computer:
        computer.check(runs)  # before the store is touched: a sweep that cannot run writes nothing
        return sweep_checked(runs, store_path, computer, workers=workers, progress=progress, description=description)


def sweep_checked(runs: Sequence[RunSpec], store_path: str | Path, computer: Backend, *, workers: int | None = None,
                  progress: bool = True, description: str = "runs") -> SweepSummary:
    """`run_sweep` on an open backend whose `check(runs)` has passed (`run_studies` checks before it prepares)."""
    ids = [spec.run_id for spec in runs]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep lists the same run (study, kind, config, seed) twice")
    store_path = Path(store_path)
    start = time.perf_counter()
    failures: list[str] = []
    results: dict[str, RunResult] = {}
    deaths: dict[str, int] = {}
    retry: deque[RunSpec] = deque()
    elsewhere = 0
    size = workers if workers is not None else computer.default_workers()
    with ResultsStore(store_path) as store, _terminate_as_interrupt():
        done = store.finished_ids()
        pending = deque(spec for spec in runs if spec.run_id not in done)
        planned = len(pending)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, disable=not progress, transient=False) as bar:
            track = bar.add_task(description, total=len(runs), completed=len(runs) - len(pending))

            def finish(spec: RunSpec, message: Message) -> None:
                if message[0] == "died":
                    deaths[spec.run_id] = deaths.get(spec.run_id, 0) + 1
                    if deaths[spec.run_id] <= RETRIES_AFTER_DEATH:
                        retry.append(spec)  # still claimed: no other sweep takes it meanwhile
                        return
                    message = ("failed", f"{message[1]}; tried once more, its worker died again", "")
                if message[0] == "done":
                    _, result, seconds, where = message
                    store.save_run(spec.run_id, spec.study, spec.variant, spec.kind, spec.resolved, spec.seed,
                                   result, seconds, where)
                    results[spec.run_id] = result
                    bar.advance(track)
                else:
                    _, reason, trace = message
                    store.save_failure(spec.run_id, spec.study.study, spec.variant, spec.kind, spec.resolved,
                                       spec.seed, reason, trace)
                    failures.append(f"{spec.label}: {reason}")

            def next_claimed() -> RunSpec | None:
                nonlocal elsewhere
                if retry:
                    return retry.popleft()
                while pending:
                    spec = pending.popleft()
                    claim = store.claim(spec.run_id)
                    if claim == "mine":
                        return spec
                    if claim == "elsewhere":
                        elsewhere += 1
                return None

            try:
                if computer.name == "local" and (size <= 1 or planned <= 1):
                    while (spec := next_claimed()) is not None:
                        finish(spec, run_message(spec, {"backend": "local"}))
                elif planned:
                    _run_on(computer, max(1, min(size, planned)), next_claimed, finish)
            except KeyboardInterrupt as stop:
                store.release_claims()
                raise Interrupted(len(results), str(stop) or "SIGINT") from None
            finally:
                store.release_claims()
    if failures:
        listed = "; ".join(failures[:3]) + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
        raise RunFailed(f"{len(failures)} of {planned} runs failed ({listed}); the other runs are stored, and "
                        "running the same command again retries the failed ones")
    return SweepSummary(len(results), len(runs) - planned, time.perf_counter() - start, results, elsewhere,
                        len(deaths))


def _run_on(computer: Backend, size: int, next_claimed: Any, finish: Any) -> None:
    """Keep `size` runs in flight on the backend's executor until nothing is left to claim or running."""
    executor = computer.executor(size)
    stopped = True
    busy = 0
    try:
        while True:
            while executor.free() > 0:
                spec = next_claimed()
                if spec is None:
                    break
                executor.submit(spec)
                busy += 1
            if busy == 0:
                break
            for spec, message in executor.finished(timeout=1.0):
                busy -= 1
                finish(spec, message)
        stopped = False
    finally:
        executor.close(kill=stopped)
