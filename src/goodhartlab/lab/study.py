"""Running studies, the one sequence `run`, `bestofn` and `demo` share: check the store, prepare, sweep,
report.

The store lives in `out/results.sqlite` and the report in `out/report.html`. Before anything runs, the
backend is opened and holds the runs against what it can place (Ray: a GPU run on a cluster without
GPUs is refused), and each run is held against what the store already has: a variant stored with other
settings (an edited spec run again into the same folder) is refused rather than averaged into one curve.
Kinds that declare a preparation (best-of-n's shared pools) do it once for the runs still to do: in this
process locally, as one task on a Ray cluster.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from goodhartlab.lab.backends import Backend
from goodhartlab.lab.report import build_report
from goodhartlab.lab.runner import RunFailed, RunSpec, SweepSummary, sweep_checked, using_backend
from goodhartlab.lab.store import ResultsStore, StoreError
from goodhartlab.results import RunResult

STORE = "results.sqlite"
REPORT = "report.html"


class StudyConflict(ValueError):
    """A run would share a curve with stored runs of other settings; the message names them."""


@dataclass
class StudiesDone:
    """What a `run_studies` call did and found: the sweep's counts, each run's result, and the report."""

    sweep: SweepSummary
    results: dict[str, RunResult]
    """Every run's result by run id: returned now, or read back from the store for runs done before."""
    store: Path
    report: Path


def output_folder(out: str | Path) -> Path:
    """`out` as a folder for a store and a report, or a StoreError when it is a file or lies under one."""
    folder = Path(out)
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise StoreError(f"--out {folder}: {parent} is a file, not a folder; give a folder for the store and "
                             "report")
    return folder


def check_against_store(store: ResultsStore, runs: Sequence[RunSpec]) -> None:
    """Refuse runs whose study and variant the store holds with other settings (or of another kind)."""
    stored: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for study in {run.study.study for run in runs}:
        for old in store.runs(study):
            stored.setdefault((old.study, old.variant), (old.kind, old.config))
    for run in runs:
        key = (run.study.study, run.variant)
        if key not in stored:
            continue
        kind, config = stored[key]
        if kind != run.kind or config != run.resolved:
            changed = _differences(config, run.resolved) if kind == run.kind else [f"kind {kind} → {run.kind}"]
            raise StudyConflict(f"study {run.study.study!r}, variant {run.variant!r} is already in {store.path} "
                                f"with other settings ({'; '.join(changed[:4])}); the report would average them into "
                                "one curve. "
                                "Write to another --out, or rename the study or the variant")


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{name}.")
        elif a != b:
            changed.append(f"{prefix}{name}: {a!r} → {b!r}")
    return changed


def _ordered(runs: Sequence[RunSpec]) -> list[RunSpec]:
    """The runs with their studies numbered in the order given, so the report lists them so however the
    workers finish (a study's row is written with its first finished run)."""
    started = time.time()
    places: dict[str, int] = {}
    ordered = []
    for run in runs:
        place = places.setdefault(run.study.study, len(places))
        info = replace(run.study, meta={**run.study.meta, "order": [started, place]})
        ordered.append(replace(run, study=info))
    return ordered


def prepare(runs: Sequence[RunSpec], backend: Backend) -> None:
    """Each kind's preparation, once, for its runs, where the backend computes."""
    by_kind: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for run in runs:
        by_kind[run.kind].append((run.config, run.seed))
    for kind, pending in by_kind.items():
        backend.prepare(kind, pending)


def run_studies(runs: Sequence[RunSpec], out: str | Path, *, workers: int | None = None,
                backend: str | Backend = "local", address: str | None = None, progress: bool = True,
                description: str = "runs") -> StudiesDone:
    """Run what the store in `out` lacks on `backend` ('local' or 'ray'; `address`: a Ray cluster's), then write
    the report; a failed run is raised (RunFailed) after every other run is stored and the report is written."""
    folder = output_folder(out)
    store_path = folder / STORE
    runs = _ordered(runs)
    with using_backend(backend, address) as computer:
        computer.check(runs)  # a backend that cannot run these fails here, before the store is made
        with ResultsStore(store_path) as store:
            check_against_store(store, runs)
            done = store.finished_ids()
        prepare([run for run in runs if run.run_id not in done], computer)
        failure: RunFailed | None = None
        try:
            sweep = sweep_checked(runs, store_path, computer, workers=workers, progress=progress,
                                  description=description)
        except RunFailed as error:
            failure, sweep = error, SweepSummary(0, 0, 0.0)
    report = build_report(store_path, folder / REPORT)
    if failure is not None:
        raise RunFailed(f"{failure}; the report is {report}")
    results = dict(sweep.results)
    with ResultsStore(store_path, mode="read") as store:
        for run in runs:
            if run.run_id not in results:
                results[run.run_id] = store.result(run.run_id)
    return StudiesDone(sweep, results, store_path, report)
