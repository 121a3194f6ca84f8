"""Run a list of runs on local worker processes, with progress, resuming an interrupted sweep.

Runs already in the store are skipped; each finished run is written by the parent process in one
transaction, so killing the sweep (even with SIGKILL) loses at most the runs in flight. The workers
are processes of their own that die with the parent (Linux), so killing only the parent leaves no
orphan. Ctrl-C (or SIGTERM) stops the workers at once and keeps every run that finished. A run that
raises, or whose worker dies (the OS's out-of-memory killer, a signal), fails alone: it is recorded
in the store with its reason and the sweep goes on; the failures are raised together at the end
(`RunFailed`), and a rerun retries them. Two sweeps on one store share the work: each claims a run
before running it, and neither runs what the other has claimed.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from goodhartlab.config import config_dict
from goodhartlab.lab.registry import study_kind
from goodhartlab.lab.store import ResultsStore, StudyInfo, run_id
from goodhartlab.results import RunResult

START_METHOD_ENV = "GOODHARTLAB_START_METHOD"
"""How workers start: 'spawn' (the default: a fresh interpreter that inherits no threads, locks or torch state
from the parent) or 'forkserver'/'fork'."""


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


def _execute(spec: RunSpec) -> tuple[RunResult, float]:
    start = time.perf_counter()
    function = study_kind(spec.kind, allow_import=True).function()  # checked against the registry at the boundary
    result = function(spec.config, spec.seed)
    if not isinstance(result, RunResult):
        raise TypeError(f"study kind {spec.kind} returned {type(result).__name__}, not a RunResult")
    try:
        json.dumps(result.summary, default=_jsonable_or_fail, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"study kind {spec.kind} returned a summary that cannot be stored: {error}") from None
    return result, time.perf_counter() - start


def _jsonable_or_fail(value: Any) -> Any:
    for method in ("tolist", "to_dict"):
        if hasattr(value, method):
            return getattr(value, method)()
    raise TypeError(f"a {type(value).__name__} (use numbers, strings, lists or dicts)")


# -- workers ----------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so no worker outlives a killed sweep."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(connection: Connection, threads: int, parent: int) -> None:
    """A worker: run the specs it is sent, one at a time, and send back each result or failure."""
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    while True:
        try:
            spec = connection.recv()
        except EOFError:
            return
        if spec is None:
            return
        try:
            result, seconds = _execute(spec)
            message: tuple[Any, ...] = ("done", result, seconds)
        except BaseException as error:  # SystemExit from a study is a failure of that run, not the worker's end
            message = ("failed", f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error)))
        connection.send(message)


@dataclass
class _Worker:
    process: Any
    connection: Connection
    spec: RunSpec | None = None


class _Pool:
    """`size` worker processes, each running one spec at a time; a dead worker is noticed and replaced."""

    def __init__(self, size: int) -> None:
        method = os.environ.get(START_METHOD_ENV, "spawn")
        self.context: Any = multiprocessing.get_context(method)
        self.threads = max(1, (os.cpu_count() or 1) // size)
        self.workers = [self._start() for _ in range(size)]

    def _start(self) -> _Worker:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child_end, self.threads, os.getpid()),
                                       daemon=True)
        process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def idle(self) -> Iterator[_Worker]:
        return (worker for worker in self.workers if worker.spec is None)

    def busy(self) -> list[_Worker]:
        return [worker for worker in self.workers if worker.spec is not None]

    def send(self, worker: _Worker, spec: RunSpec) -> None:
        worker.spec = spec
        worker.connection.send(spec)

    def finished(self, timeout: float) -> list[tuple[RunSpec, tuple[Any, ...]]]:
        """The (spec, message) pairs of workers that finished a run or died, within `timeout` seconds."""
        busy = self.busy()
        waiting = {worker.connection: worker for worker in busy} | {worker.process.sentinel: worker for worker in busy}
        ready = wait(list(waiting), timeout=timeout)
        done: list[tuple[RunSpec, tuple[Any, ...]]] = []
        for worker in {id(waiting[r]): waiting[r] for r in ready}.values():
            spec = worker.spec
            assert spec is not None
            try:
                message = worker.connection.recv() if worker.connection.poll() else None
            except (EOFError, OSError):
                message = None
            if message is None:  # the process ended without an answer: killed
                worker.process.join(timeout=1)
                message = ("failed", f"its worker process died ({_exit_reason(worker.process.exitcode)})", "")
                self.workers[self.workers.index(worker)] = self._start()
            else:
                worker.spec = None
            done.append((spec, message))
        return done

    def close(self, *, kill: bool) -> None:
        for worker in self.workers:
            if kill:
                with contextlib.suppress(Exception):
                    worker.process.kill()
            else:
                with contextlib.suppress(Exception):
                    worker.connection.send(None)
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.connection.close()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = "; SIGKILL is also what the out-of-memory killer sends" if name == "SIGKILL" else ""
        return f"{name}{hint}"
    return f"exit status {code}"


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


def run_sweep(runs: Sequence[RunSpec], store_path: str | Path, *, workers: int = 2,
              progress: bool = True, description: str = "runs") -> SweepSummary:
    """Execute the runs not yet in the store; `workers=1` runs them in this process."""
    ids = [spec.run_id for spec in runs]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep lists the same run (study, kind, config, seed) twice")
    start = time.perf_counter()
    failures: list[str] = []
    results: dict[str, RunResult] = {}
    elsewhere = 0
    with ResultsStore(store_path) as store, _terminate_as_interrupt():
        done = store.finished_ids()
        pending = deque(spec for spec in runs if spec.run_id not in done)
        planned = len(pending)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, disable=not progress, transient=False) as bar:
            track = bar.add_task(description, total=len(runs), completed=len(runs) - len(pending))

            def finish(spec: RunSpec, message: tuple[Any, ...]) -> None:
                if message[0] == "done":
                    _, result, seconds = message
                    store.save_run(spec.run_id, spec.study, spec.variant, spec.kind, spec.resolved, spec.seed,
                                   result, seconds)
                    results[spec.run_id] = result
                    bar.advance(track)
                else:
                    _, reason, trace = message
                    store.save_failure(spec.run_id, spec.study.study, spec.variant, spec.kind, spec.resolved,
                                       spec.seed, reason, trace)
                    failures.append(f"{spec.label}: {reason}")

            def next_claimed() -> RunSpec | None:
                nonlocal elsewhere
                while pending:
                    spec = pending.popleft()
                    claim = store.claim(spec.run_id)
                    if claim == "mine":
                        return spec
                    if claim == "elsewhere":
                        elsewhere += 1
                return None

            try:
                if workers <= 1 or planned <= 1:
                    while (spec := next_claimed()) is not None:
                        try:
                            result, seconds = _execute(spec)
                        except Exception as error:
                            finish(spec, ("failed", f"{type(error).__name__}: {error}",
                                          "".join(traceback.format_exception(error))))
                            continue
                        finish(spec, ("done", result, seconds))
                else:
                    _run_on_workers(min(workers, planned), next_claimed, finish)
            except KeyboardInterrupt as stop:
                store.release_claims()
                raise Interrupted(len(results), str(stop) or "SIGINT") from None
            finally:
                store.release_claims()
    if failures:
        listed = "; ".join(failures[:3]) + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
        raise RunFailed(f"{len(failures)} of {planned} runs failed ({listed}); the other runs are stored, and "
                        "running the same command again retries the failed ones")
    return SweepSummary(len(results), len(runs) - planned, time.perf_counter() - start, results, elsewhere)


def _run_on_workers(size: int, next_claimed: Any, finish: Any) -> None:
    pool = _Pool(size)
    stopped = True
    try:
        while True:
            for worker in list(pool.idle()):
                spec = next_claimed()
                if spec is None:
                    break
                pool.send(worker, spec)
            if not pool.busy():
                break
            for spec, message in pool.finished(timeout=1.0):
                finish(spec, message)
        stopped = False
    finally:
        pool.close(kill=stopped)
