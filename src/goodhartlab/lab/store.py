"""The results store: one SQLite file (WAL) holding every finished run with its curves.

A run is written in one transaction together with all its points, so a sweep killed at any
moment leaves each run either wholly present or absent, and a restart redoes only the absent.
A run's id is a hash of what determines its numbers (study, task, config, seed), so the same
run is never stored twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    variant TEXT NOT NULL,
    task TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    environment TEXT NOT NULL,
    summary TEXT NOT NULL,
    duration_s REAL NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    curve TEXT NOT NULL,
    idx INTEGER NOT NULL,
    pressure REAL NOT NULL,
    pressure_kind TEXT NOT NULL,
    proxy REAL,
    gold REAL,
    PRIMARY KEY (run_id, curve, idx)
);
CREATE INDEX IF NOT EXISTS runs_by_study ON runs(study);
"""


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` fills a sibling file that then replaces `path` in one rename, so an interrupted run
    leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own per writer: two processes writing the same file do not write into one partial
    partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class CurvePoints:
    """One curve of a run: proxy and gold at each pressure (None where not measured)."""

    pressure: list[float]
    proxy: list[float | None]
    gold: list[float | None]
    pressure_kind: str = "kl"

    def __post_init__(self) -> None:
        if not len(self.pressure) == len(self.proxy) == len(self.gold):
            raise ValueError(f"a curve needs as many proxy ({len(self.proxy)}) and gold "
                             f"({len(self.gold)}) values as pressures ({len(self.pressure)})")


@dataclass
class RunResult:
    curves: dict[str, CurvePoints]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    study: str
    variant: str
    task: str
    config: dict[str, Any]
    seed: int
    environment: dict[str, Any]
    summary: dict[str, Any]
    duration_s: float


def run_id(study: str, task: str, config: dict[str, Any], seed: int) -> str:
    identity = json.dumps({"study": study, "task": task, "config": config, "seed": seed},
                          sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


def environment() -> dict[str, Any]:
    """What a reader needs to reproduce a number: interpreter, platform, key package versions."""
    versions = {}
    for package in ("goodhartlab", "numpy", "scipy", "torch", "transformers", "trl", "gymnasium"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}


class ResultsStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(SCHEMA)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def add_study(self, study: str, title: str, description: str = "",
                  meta: dict[str, Any] | None = None) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO studies VALUES (?, ?, ?, ?)",
                       (study, title, description, json.dumps(meta or {})))

    def finished_ids(self) -> set[str]:
        return {row[0] for row in self._connection.execute("SELECT run_id FROM runs")}

    def save_run(self, identifier: str, study: str, variant: str, task: str,
                 config: dict[str, Any], seed: int, result: RunResult, duration_s: float) -> bool:
        """Store a finished run and its points atomically; False if it was already there."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (identifier, study, variant, task, json.dumps(config, sort_keys=True), seed,
                 json.dumps(environment()), json.dumps(result.summary, default=_jsonable),
                 duration_s, time.strftime("%Y-%m-%dT%H:%M:%S")))
            if cursor.rowcount == 0:
                return False
            db.executemany(
                "INSERT INTO points VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(identifier, name, index, float(x), curve.pressure_kind,
                  _finite_or_none(p), _finite_or_none(g))
                 for name, curve in result.curves.items()
                 for index, (x, p, g) in enumerate(zip(curve.pressure, curve.proxy, curve.gold,
                                                       strict=True))])
        return True

    def studies(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        rows = self._connection.execute("SELECT study, title, description, meta FROM studies "
                                        "ORDER BY rowid")
        return [(s, t, d, json.loads(m)) for s, t, d, m in rows]

    def runs(self, study: str | None = None) -> list[StoredRun]:
        query = "SELECT run_id, study, variant, task, config, seed, environment, summary, duration_s FROM runs"
        rows = (self._connection.execute(query + " WHERE study = ? ORDER BY rowid", (study,))
                if study is not None else self._connection.execute(query + " ORDER BY rowid"))
        return [StoredRun(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], json.loads(r[6]),
                          json.loads(r[7]), r[8]) for r in rows]

    def points(self, run: str) -> dict[str, CurvePoints]:
        curves: dict[str, CurvePoints] = {}
        for name, x, kind, proxy, gold in self._connection.execute(
                "SELECT curve, pressure, pressure_kind, proxy, gold FROM points WHERE run_id = ? "
                "ORDER BY curve, idx", (run,)):
            curve = curves.setdefault(name, CurvePoints([], [], [], kind))
            curve.pressure.append(x)
            curve.proxy.append(proxy)
            curve.gold.append(gold)
        return curves


def _jsonable(value: Any) -> Any:
    """Make NumPy scalars and arrays in a run summary storable as JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot store a {type(value).__name__} in a run summary; use numbers, "
                    "strings, lists or dicts")
