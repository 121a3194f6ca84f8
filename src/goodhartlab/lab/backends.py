"""Where runs compute: worker processes of this machine (`local`) or tasks on a Ray cluster (`ray`).

A backend only computes. The driver, `lab.runner.run_sweep`, is the one place that decides what is
pending, claims runs, retries a run whose worker died, and writes the store; a backend runs the specs it
is handed and gives back one message per run:

    ("done", RunResult, seconds, environment)   the run finished; `environment` says where it ran
    ("failed", reason, traceback)               the study raised, or returned something that cannot be stored
    ("died", reason)                            the process running it died (a signal, the OOM killer, a lost node)

Each run gets as many threads (OpenMP, MKL, torch) as CPUs it was given: the local pool divides the
machine's cores among its workers; a Ray task takes the `num_cpus` its study kind declares
(`lab.registry.StudyKind.resources`), and a GPU when its config asks for `device: cuda`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Literal, Protocol

from goodhartlab.lab.registry import Resources, study_kind
from goodhartlab.lab.store import environment
from goodhartlab.results import RunResult

if TYPE_CHECKING:
    from goodhartlab.lab.runner import RunSpec

BACKENDS = ("local", "ray")
BackendName = Literal["local", "ray"]
START_METHOD_ENV = "GOODHARTLAB_START_METHOD"
"""How local workers start: 'spawn' (the default: a fresh interpreter that inherits no threads, locks or torch
state from the parent) or 'forkserver'/'fork'."""
RAY_REQUIREMENT = "ray==2.60.0"
Message = tuple[Any, ...]


class BackendError(ValueError):
    """A backend cannot be used as asked (Ray missing or unreachable, a run the cluster cannot place)."""


# -- one run, wherever it computes ------------------------------------------------------------------------------


def execute(spec: RunSpec) -> tuple[RunResult, float]:
    """Run one spec here: (its result, seconds); a study that returns no RunResult, or a summary that cannot be
    stored, is an error of that run."""
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


def run_message(spec: RunSpec, where: dict[str, Any]) -> Message:
    """Run one spec and say how it went, as the driver reads it; `where` joins the run's environment."""
    try:
        result, seconds = execute(spec)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM in the driver running it: the sweep stops
        raise
    except BaseException as error:  # SystemExit from a study is a failure of that run, not the worker's end
        return "failed", f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error))
    gpus = _visible_gpus()
    return "done", result, seconds, {**environment(), "host": socket.gethostname(), **({"gpus": gpus} if gpus else {}),
                                     **where}


def _visible_gpus() -> list[str]:
    """The CUDA devices this process saw, by name, when the run loaded torch: where a number came from."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def use_threads(threads: int) -> None:
    """Give this process `threads` threads for OpenMP, MKL and torch: as many as the CPUs its run was given. NumPy's
    BLAS reads its setting once, as it loads: a worker gets it in its environment at start (`_thread_variables`;
    Ray sets OMP_NUM_THREADS from num_cpus), and this covers what loads later and torch."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def available_cpus() -> int:
    """The CPUs this process may run on (a container's or `taskset`'s share, not every CPU of the host)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _thread_variables(threads: int) -> Iterator[None]:
    """The thread settings in this process's environment while a worker process starts, which inherits them."""
    before = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    os.environ.update({variable: str(threads) for variable in THREAD_VARIABLES})
    try:
        yield
    finally:
        for variable, value in before.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def resources_of(spec: RunSpec) -> Resources:
    return study_kind(spec.kind, allow_import=True).resources(spec.config)


class Executor(Protocol):
    """Runs specs concurrently: at most `free()` more at a time."""

    def free(self) -> int: ...

    def submit(self, spec: RunSpec) -> None: ...

    def finished(self, timeout: float) -> list[tuple[RunSpec, Message]]:
        """The runs that ended within `timeout` seconds, each with its message."""
        ...

    def close(self, *, kill: bool) -> None: ...


class Backend(Protocol):
    name: str

    def default_workers(self) -> int:
        """Runs at a time when the user gives no --workers."""
        ...

    def check(self, runs: Sequence[RunSpec]) -> None:
        """Refuse, before anything runs, runs this backend could never place."""
        ...

    def prepare(self, kind: str, items: Sequence[tuple[Any, int]]) -> None:
        """Run `kind`'s preparation for these (config, seed) pairs where the runs will run."""
        ...

    def executor(self, size: int) -> Executor: ...

    def close(self) -> None: ...


def open_backend(name: str, address: str | None = None) -> Backend:
    """The backend `name`; `address` is a Ray cluster's (None: start a local Ray, or use the one this process
    is connected to)."""
    if name == "local":
        if address is not None:
            raise BackendError("--address names a Ray cluster; it goes with --backend ray")
        return LocalBackend()
    if name == "ray":
        return RayBackend(address)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


# -- local worker processes -------------------------------------------------------------------------------------


class LocalBackend:
    """Worker processes of this machine; `workers=1` (in `run_sweep`) runs in the driver's own process."""

    name = "local"

    def default_workers(self) -> int:
        return 2

    def check(self, runs: Sequence[RunSpec]) -> None:
        return None  # a run asking for a GPU this machine lacks says so when its study starts

    def prepare(self, kind: str, items: Sequence[tuple[Any, int]]) -> None:
        preparation = study_kind(kind, allow_import=True).preparation()
        if preparation is not None:
            preparation(items)

    def executor(self, size: int) -> Executor:
        return _Pool(size)

    def close(self) -> None:
        return None


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
    use_threads(threads)
    while True:
        try:
            spec = connection.recv()
        except EOFError:
            return
        if spec is None:
            return
        connection.send(run_message(spec, {"backend": "local"}))


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
        self.threads = max(1, available_cpus() // size)
        self.workers = [self._start() for _ in range(size)]

    def _start(self) -> _Worker:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child_end, self.threads, os.getpid()),
                                       daemon=True)
        with _thread_variables(self.threads):  # read by OpenBLAS and MKL as they load, before the worker runs
            process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def free(self) -> int:
        return sum(worker.spec is None for worker in self.workers)

    def submit(self, spec: RunSpec) -> None:
        worker = next(worker for worker in self.workers if worker.spec is None)
        worker.spec = spec
        worker.connection.send(spec)

    def finished(self, timeout: float) -> list[tuple[RunSpec, Message]]:
        busy = [worker for worker in self.workers if worker.spec is not None]
        waiting = {worker.connection: worker for worker in busy} | {worker.process.sentinel: worker for worker in busy}
        ready = wait(list(waiting), timeout=timeout)
        done: list[tuple[RunSpec, Message]] = []
        for worker in {id(waiting[r]): waiting[r] for r in ready}.values():
            spec = worker.spec
            assert spec is not None
            try:
                message = worker.connection.recv() if worker.connection.poll() else None
            except (EOFError, OSError):
                message = None
            if message is None:  # the process ended without an answer: killed
                worker.process.join(timeout=1)
                message = ("died", f"its worker process died ({_exit_reason(worker.process.exitcode)})")
                self.workers[self.workers.index(worker)] = self._start()
            else:
                worker.spec = None
            done.append((spec, message))
        return done

    def close(self, *, kill: bool) -> None:
        """Stop the workers: asked to finish (`kill=False`), or killed at once on an interrupt, where the wait for
        them is bounded so that Ctrl-C returns within seconds (a killed worker also dies with its parent)."""
        for worker in self.workers:
            if kill:
                with contextlib.suppress(Exception):
                    worker.process.kill()
            else:
                with contextlib.suppress(Exception):
                    worker.connection.send(None)
        deadline = time.monotonic() + (1.0 if kill else 5.0)
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=0 if kill else 5)
            worker.connection.close()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = "; SIGKILL is also what the out-of-memory killer sends" if name == "SIGKILL" else ""
        return f"{name}{hint}"
    return f"exit status {code}"


# -- Ray --------------------------------------------------------------------------------------------------------


def _ray_run(spec: RunSpec, threads: int) -> Message:
    """A Ray task: one run, with the threads its CPUs allow, answering where it ran."""
    import ray

    use_threads(threads)
    context = ray.get_runtime_context()
    return run_message(spec, {"backend": "ray", "node_id": context.get_node_id(),
                              "resources": context.get_assigned_resources()})


def _ray_prepare(kind: str, items: Sequence[tuple[Any, int]], threads: int) -> None:
    use_threads(threads)
    LocalBackend().prepare(kind, items)


class RayBackend:
    """Each run a Ray task with the resources its study kind declares, spread over the cluster's nodes; results
    come back to the driver, which alone writes the store. A Ray this process is already connected to is used
    as it is (and left running); otherwise `address` is connected to (None: a Ray started here for the sweep)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise BackendError(f"--backend ray needs Ray, which is not installed: pip install '{RAY_REQUIREMENT}' "
                               "(or goodhartlab[dist])") from None
        self.ray: Any = ray
        self.address = address
        self.owned = not ray.is_initialized()
        if not self.owned and address not in (None, "auto", "local") and not address.startswith("ray://"):
            connected = ray.get_runtime_context().gcs_address
            if address != connected:
                raise BackendError(f"--address {address}: this process is already connected to the Ray cluster at "
                                   f"{connected}; one process talks to one cluster")
        if self.owned:
            if address not in (None, "auto", "local"):
                _check_reachable(address)
            options: dict[str, Any] = {"include_dashboard": False} if address in (None, "local") else {}
            try:
                ray.init(address=address, logging_level=logging.WARNING, **options)
            except Exception as error:
                where = f"at {address}" if address else "on this machine"
                raise BackendError(f"cannot start or reach a Ray cluster {where} ({_first_line(error)}); check the "
                                   "address (`ray status` on the head node prints it)") from None
        self._run = ray.remote(_ray_run)
        self._prepare = ray.remote(_ray_prepare)

    def default_workers(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def nodes(self) -> list[dict[str, float]]:
        """The resources each live node offers."""
        return [dict(node.get("Resources", {})) for node in self.ray.nodes() if node.get("Alive")]

    def check(self, runs: Sequence[RunSpec]) -> None:
        nodes = self.nodes()
        seen: set[Resources] = set()
        for spec in runs:
            need = resources_of(spec)
            if need in seen:
                continue
            seen.add(need)
            if any(_fits(need, node) for node in nodes):
                continue
            offered = "; ".join(sorted({_describe_node(node) for node in nodes})) or "no live node"
            asked = f"{need.describe()}{' (device: cuda)' if need.num_gpus else ''}"
            if need.num_gpus and not any(node.get("GPU", 0) >= need.num_gpus for node in nodes):
                advice = "use device: auto or cpu, or add a node with a GPU to the cluster"
            else:
                advice = "add a larger node to the cluster, or run it with --backend local"
            raise BackendError(f"{spec.label} asks for {asked} per run, but no node of the Ray cluster has that "
                               f"(its nodes offer: {offered}); {advice}")

    def options(self, need: Resources) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": need.num_cpus, "num_gpus": need.num_gpus, "max_retries": 0,
                                   "scheduling_strategy": "SPREAD"}
        if need.memory:
            options["memory"] = need.memory
        return options

    def prepare(self, kind: str, items: Sequence[tuple[Any, int]]) -> None:
        if study_kind(kind, allow_import=True).prepare is None:
            return
        needs = [study_kind(kind, allow_import=True).resources(config) for config, _ in items]
        need = max(needs, key=lambda n: (n.num_gpus, n.num_cpus, n.memory))
        reference = self._prepare.options(**self.options(need)).remote(kind, list(items), _threads(need))
        try:
            self.ray.get(reference)
        except self.ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            raise (cause if isinstance(cause, Exception) else RuntimeError(_first_line(error))) from None

    def executor(self, size: int) -> Executor:
        return _RayExecutor(self, size)

    def close(self) -> None:
        if self.owned:
            with contextlib.suppress(Exception):
                self.ray.shutdown()


def _threads(need: Resources) -> int:
    return max(1, int(need.num_cpus))


def _fits(need: Resources, node: dict[str, float]) -> bool:
    return (node.get("CPU", 0) >= need.num_cpus and node.get("GPU", 0) >= need.num_gpus
            and (not need.memory or node.get("memory", 0) >= need.memory))


def _describe_node(node: dict[str, float]) -> str:
    return Resources(node.get("CPU", 0), node.get("GPU", 0), int(node.get("memory", 0))).describe()


class _RayExecutor:
    """At most `size` runs in flight as Ray tasks. Ray does not retry them (max_retries=0): the driver retries a
    run whose worker died, once, so the count of tries is the same on every backend."""

    def __init__(self, backend: RayBackend, size: int) -> None:
        self.backend, self.size = backend, size
        self.ray = backend.ray
        self.inflight: dict[Any, RunSpec] = {}

    def free(self) -> int:
        return self.size - len(self.inflight)

    def submit(self, spec: RunSpec) -> None:
        need = resources_of(spec)
        reference = self.backend._run.options(**self.backend.options(need), name=spec.label).remote(
            spec, _threads(need))
        self.inflight[reference] = spec

    def finished(self, timeout: float) -> list[tuple[RunSpec, Message]]:
        if not self.inflight:
            return []
        ready, rest = self.ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        exceptions = self.ray.exceptions
        done: list[tuple[RunSpec, Message]] = []
        for reference in ready:
            spec = self.inflight.pop(reference)
            try:
                message = self.ray.get(reference)
            except exceptions.RayTaskError as error:  # raised outside the study: the spec could not be unpickled
                message = ("failed", _first_line(error), str(error))
            except exceptions.RayError as error:  # the worker or its node died, or the task was lost
                message = ("died", f"its Ray worker died ({type(error).__name__}: {_first_line(error)})")
            done.append((spec, message))
        return done

    def close(self, *, kill: bool) -> None:
        for reference in list(self.inflight):
            with contextlib.suppress(Exception):
                self.ray.cancel(reference, force=True)
        self.inflight.clear()


def _check_reachable(address: str) -> None:
    """A Ray address nothing answers at is one clear error in seconds, not Ray's minute of retries."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise BackendError(f"--address {address}: expected HOST:PORT (the head node's GCS address, e.g. "
                           "127.0.0.1:6379), ray://HOST:10001 for Ray Client, or auto")
    reason = unreachable(host, int(port))
    if reason is not None:
        raise BackendError(f"--address {address}: no Ray cluster answers there ({reason}); start one with `ray start "
                           "--head` or check the address (`ray status` on the head node prints it)")


def unreachable(host: str, port: int, timeout: float = 5.0) -> str | None:
    """Why nothing answers at host:port within `timeout` seconds (None when something does): one clear error in
    seconds instead of a client's minutes of retries."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return None
    except OSError as error:
        return error.strerror or type(error).__name__


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


__all__ = ["BACKENDS", "Backend", "BackendError", "BackendName", "Executor", "LocalBackend", "RayBackend",
           "execute", "open_backend", "run_message", "use_threads"]
