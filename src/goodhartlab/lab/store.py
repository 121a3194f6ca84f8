"""The results store: one SQLite file (WAL) holding every finished run with its curves.

A run is written in one transaction together with all its points (and its study's row, with the
study's first run), so a sweep killed at any moment leaves each run either wholly present or absent,
and a restart redoes only the absent. A run's id is a hash of what determines its numbers (study,
kind, resolved config, seed), so the same run is never stored twice and a changed default is a new
run. The file says it is ours (SQLite's application_id) and which schema it holds (user_version), so
goodhartlab never writes into a database that is not a store, and reads an earlier store's runs
without mixing new runs into it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from goodhartlab.results import CurvePoints, RunResult, check_pressure_kind

APPLICATION_ID = 0x47484C42  # "GHLB"
SCHEMA_VERSION = 2
"""1: run ids hashed the config as written, the kind was a task path. 2: resolved configs, study kinds."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    study TEXT NOT NULL REFERENCES studies(study),
    variant TEXT NOT NULL,
    kind TEXT NOT NULL,
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
    nonfinite TEXT,
    PRIMARY KEY (run_id, curve, idx)
);
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT NOT NULL,
    study TEXT NOT NULL,
    variant TEXT NOT NULL,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    error TEXT NOT NULL,
    traceback TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    claimed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_study ON runs(study);
"""
REMOTE_CLAIM_SECONDS = 24 * 3600
"""A claim by a process on another host (whose liveness cannot be checked here) lapses after this long."""


class StoreError(ValueError):
    """The file is not a results store goodhartlab can use this way; the message says why and what to do."""


@dataclass(frozen=True)
class StudyInfo:
    """What the report says of a study: its title, a description, and display settings (`meta`)."""

    study: str
    title: str
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    study: str
    variant: str
    kind: str
    config: dict[str, Any]
    seed: int
    environment: dict[str, Any]
    summary: dict[str, Any]
    duration_s: float


@dataclass(frozen=True)
class AddedRun:
    run_id: str
    study: str
    variant: str
    new: bool  # False: the same run was already in the store


@dataclass(frozen=True)
class StoredFailure:
    run_id: str
    study: str
    variant: str
    seed: int
    error: str
    traceback: str


def run_id(study: str, kind: str, config: Mapping[str, Any], seed: int,
           derived: Mapping[str, Any] | None = None) -> str:
    """The id of a run: a hash of its study, kind, resolved config (every field, defaults included), the
    values derived from it, and its seed."""
    identity = {"study": study, "kind": kind, "config": config, "seed": seed}
    if derived:
        identity["derived"] = dict(derived)
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def environment() -> dict[str, Any]:
    """What a reader needs to reproduce a number: interpreter, platform, key package versions (of the process
    that computed the run: a worker, a Ray node)."""
    return dict(_environment())


@functools.cache
def _environment() -> dict[str, Any]:
    versions = {}
    for package in ("goodhartlab", "numpy", "scipy", "torch", "transformers", "trl", "gymnasium"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _nonfinite(proxy: float | None, gold: float | None) -> str | None:
    """'gold=nan', 'proxy=inf; gold=-inf', ...: what was not finite, kept so the report can say so."""
    parts = [f"{name}={value}" for name, value in (("proxy", proxy), ("gold", gold))
             if value is not None and not math.isfinite(value)]
    return "; ".join(parts) or None


def _reader(path: Path) -> sqlite3.Connection:
    """A connection that reads and never writes. Where the folder is writable it is an ordinary connection with
    query_only set, so SQLite can keep the write-ahead log's index as it should; a `mode=ro` connection cannot, and
    right after a writer's last close it read a half-reset index as a malformed database. On a read-only folder
    (a store copied off a cluster, say) `mode=ro` is all there is."""
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        connection = sqlite3.connect(path, timeout=60, isolation_level=None)
        connection.execute("PRAGMA query_only=ON")
        return connection
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60, isolation_level=None)


class ResultsStore:
    """A results store. `mode="write"` creates it if needed (the sweeps); `mode="read"` opens an existing
    store read-only (the report), including one an earlier goodhartlab wrote."""

    def __init__(self, path: str | Path, mode: Literal["write", "read"] = "write") -> None:
        self.path = Path(path)
        self.mode = mode
        self._claimed: set[str] = set()
        self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if path.is_dir():
            raise StoreError(f"{path} is a folder, not a results store; pass the .sqlite file (for example "
                             f"{path / 'results.sqlite'})")
        exists = path.exists()
        if self.mode == "read" and not exists:
            raise StoreError(f"no results store at {path}; run `goodhartlab demo` or a sweep first, or pass --store")
        if exists:
            _check_sqlite_header(path)
        elif self.mode == "write":
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise StoreError(f"cannot create {path}: {path.parent} is a file, not a folder") from None
        try:
            if self.mode == "read":
                connection = _reader(path)
            else:
                connection = sqlite3.connect(path, timeout=60, isolation_level=None)
            version = self._check_identity(connection, exists)
            if self.mode == "write":
                if version == 0:
                    self._create(connection)
                connection.execute("PRAGMA synchronous=NORMAL")
            self.schema = version or SCHEMA_VERSION
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{path} cannot be read as a results store ({error}); it may be damaged or not a store: "
                             "pass another --out or --store") from None
        return connection

    @staticmethod
    def _create(connection: sqlite3.Connection) -> None:
        """The tables and the file's identity in one transaction, so no reader (or second writer starting at the
        same moment) ever sees a half-made store."""
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            if connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:  # not made meanwhile
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _check_identity(self, connection: sqlite3.Connection, existed: bool) -> int:
        """The schema version of an existing store, 0 for a new empty file; a StoreError for anything else."""
        application = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer goodhartlab (schema {version}); upgrade "
                                 "goodhartlab to read it")
            return int(version)
        if application == 0 and {"studies", "runs", "points"} <= tables and version == 0:
            if self.mode == "write":
                raise StoreError(f"{self.path} was written by an earlier goodhartlab, whose run identities are "
                                 "computed differently; new runs would be mixed with runs made under other defaults. "
                                 "`goodhartlab report --store` still reads it; write new runs to another --out")
            return 1
        if application != 0 or tables:
            raise StoreError(f"{self.path} is an SQLite database but not a goodhartlab results store; goodhartlab "
                             "will not add its tables to it. Pass another --out or --store")
        if not existed or self.mode == "write":
            return 0
        raise StoreError(f"{self.path} is an empty database, not a results store")

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _damage_named(self) -> Iterator[None]:
        """A store damaged after it was opened (a table dropped, pages overwritten) is one clear error."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path} is damaged ({error}); restore it from a copy, or write new runs to "
                             "another --out") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.mode != "write":
            raise StoreError(f"{self.path} is open read-only")
        with self._damage_named():
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    # -- writing --------------------------------------------------------------------------------------------

    def finished_ids(self) -> set[str]:
        with self._damage_named():
            return {row[0] for row in self._connection.execute("SELECT run_id FROM runs")}

    def save_run(self, identifier: str, study: StudyInfo, variant: str, kind: str, config: Mapping[str, Any],
                 seed: int, result: RunResult, duration_s: float, where: Mapping[str, Any] | None = None) -> bool:
        """Store a finished run, its points, and its study's row if this is the study's first run, in one
        transaction; False if the run was already there (another process stored it first). `where` is the
        environment of the process that computed it (default: this one's)."""
        summary = json.dumps(result.summary, default=_jsonable, allow_nan=True)
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO studies VALUES (?, ?, ?, ?)",
                       (study.study, study.title, study.description, json.dumps(study.meta)))
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (identifier, study.study, variant, kind, json.dumps(dict(config), sort_keys=True), seed,
                 json.dumps(dict(where) if where is not None else environment()), summary, duration_s,
                 time.strftime("%Y-%m-%dT%H:%M:%S")))
            if cursor.rowcount == 0:
                return False
            db.executemany(
                "INSERT INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(identifier, name, index, float(x), curve.pressure_kind, _finite_or_none(p), _finite_or_none(g),
                  _nonfinite(p, g))
                 for name, curve in result.curves.items()
                 for index, (x, p, g) in enumerate(zip(curve.pressure, curve.proxy, curve.gold, strict=True))])
            db.execute("DELETE FROM failures WHERE run_id = ?", (identifier,))
            db.execute("DELETE FROM claims WHERE run_id = ?", (identifier,))
        self._claimed.discard(identifier)
        return True

    def save_failure(self, identifier: str, study: str, variant: str, kind: str, config: Mapping[str, Any],
                     seed: int, error: str, traceback: str) -> None:
        """Record that a run failed (the last failure of a run is kept; a later success clears it)."""
        with self._transaction() as db:
            db.execute("DELETE FROM failures WHERE run_id = ?", (identifier,))
            db.execute("INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (identifier, study, variant, kind, json.dumps(dict(config), sort_keys=True), seed, error,
                        traceback, time.strftime("%Y-%m-%dT%H:%M:%S")))
            db.execute("DELETE FROM claims WHERE run_id = ?", (identifier,))
        self._claimed.discard(identifier)

    def claim(self, identifier: str) -> Literal["mine", "done", "elsewhere"]:
        """Claim a run before running it, so two sweeps on one store never run it both: 'done' if it is stored,
        'elsewhere' if a live process (or another host's, recently) holds it, else 'mine'."""
        host, pid = socket.gethostname(), os.getpid()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (identifier,)).fetchone():
                return "done"
            holder = db.execute("SELECT pid, host, claimed_at FROM claims WHERE run_id = ?", (identifier,)).fetchone()
            if holder is not None and (holder[0], holder[1]) != (pid, host):
                held_here = holder[1] == host and _alive(holder[0])
                held_there = holder[1] != host and time.time() - holder[2] < REMOTE_CLAIM_SECONDS
                if held_here or held_there:
                    return "elsewhere"
            db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)", (identifier, pid, host, time.time()))
        self._claimed.add(identifier)
        return "mine"

    def release_claims(self) -> None:
        """Give up the claims of runs this store object claimed and did not finish (an interrupted sweep)."""
        if not self._claimed or self.mode != "write":
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM claims WHERE run_id = ? AND pid = ?",
                           [(identifier, os.getpid()) for identifier in self._claimed])
        self._claimed.clear()

    def add_run_dir(self, folder: str | Path, *, study: str = "trl", variant: str | None = None,
                    title: str | None = None) -> AddedRun:
        """Store a training run that `OveroptimizationCallback` logged into `folder` (runlog.jsonl, summary.json,
        config.json): its gold rows as a KL curve, its summary, the trainer's arguments as its config."""
        from goodhartlab.measure.runlog import read_run_log

        source = Path(folder)
        if not (source / "runlog.jsonl").is_file():
            raise StoreError(f"{source} holds no runlog.jsonl; pass a folder OveroptimizationCallback wrote")
        log = read_run_log(source / "runlog.jsonl")
        summary = _json_mapping(_read_text(source / "summary.json"))
        trainer = _json_mapping(_read_text(source / "config.json"))
        config = trainer.get("args", {})
        seed = int(trainer.get("seed", log.seed[0] if len(log) else 0))
        kind = f"trl {trainer.get('trainer', 'trainer')}"
        curve = str(trainer.get("curve", "rl"))
        points = log.curve_points()
        curves = {curve: points} if len(points.pressure) >= 2 else {}
        if not curves:
            summary["curve_error"] = (f"{len(points.pressure)} gold-evaluated KL level(s); a curve needs at least 2 "
                                      "(log gold more often, or train longer)")
        name = variant or source.resolve().name
        info = StudyInfo(study, title or f"{study}: proxy and gold against KL",
                         f"TRL runs logged by OveroptimizationCallback; KL in nats per sequence, gold from "
                         f"'{summary.get('gold_key', 'rewards/gold/mean')}'.")
        identifier = run_id(study, kind, config, seed)
        new = self.save_run(identifier, info, name, kind, config, seed, RunResult(curves, summary),
                            float(summary.get("train_seconds", 0.0) or 0.0))
        return AddedRun(identifier, study, name, new)

    # -- reading --------------------------------------------------------------------------------------------

    def studies(self) -> list[StudyInfo]:
        with self._damage_named():
            rows = self._connection.execute("SELECT study, title, description, meta FROM studies ORDER BY rowid")
            return [StudyInfo(s, t, d, _json_mapping(m)) for s, t, d, m in rows]

    def runs(self, study: str | None = None) -> list[StoredRun]:
        with self._damage_named():
            kind = "task" if self.schema == 1 else "kind"
            query = f"SELECT run_id, study, variant, {kind}, config, seed, environment, summary, duration_s FROM runs"
            rows = (self._connection.execute(query + " WHERE study = ? ORDER BY rowid", (study,))
                    if study is not None else self._connection.execute(query + " ORDER BY rowid"))
            return [StoredRun(r[0], r[1], r[2], r[3], _json_mapping(r[4]), r[5], _json_mapping(r[6]),
                              _json_mapping(r[7]), r[8]) for r in rows]

    def failures(self, study: str | None = None) -> list[StoredFailure]:
        with self._damage_named():
            if self.schema < 2:
                return []
            query = "SELECT run_id, study, variant, seed, error, traceback FROM failures"
            rows = (self._connection.execute(query + " WHERE study = ? ORDER BY rowid", (study,))
                    if study is not None else self._connection.execute(query + " ORDER BY rowid"))
            return [StoredFailure(*row) for row in rows]

    def points(self, run: str) -> dict[str, CurvePoints]:
        """The run's curves; a value that was not finite reads as None (see `nonfinite`)."""
        with self._damage_named():
            curves: dict[str, CurvePoints] = {}
            for name, x, kind, proxy, gold in self._connection.execute(
                    "SELECT curve, pressure, pressure_kind, proxy, gold FROM points WHERE run_id = ? "
                    "ORDER BY curve, idx", (run,)):
                curve = curves.setdefault(name, CurvePoints([], [], [], check_pressure_kind(kind)))
                curve.pressure.append(x)
                curve.proxy.append(proxy)
                curve.gold.append(gold)
            return curves

    def nonfinite(self, run: str) -> list[tuple[str, float, str]]:
        """(curve, pressure, what) for every point whose proxy or gold was NaN or infinite."""
        with self._damage_named():
            if self.schema < 2:
                return []
            return [(c, x, note) for c, x, note in self._connection.execute(
                "SELECT curve, pressure, nonfinite FROM points WHERE run_id = ? AND nonfinite IS NOT NULL "
                "ORDER BY curve, idx", (run,))]

    def to_pandas(self) -> StoreFrames:
        """The store as tidy pandas frames: `runs`, one row per finished run with its config flattened into
        `config.<field>` columns (nested fields dotted: `config.agent.lr`), and `points`, one row per curve point
        (run_id, study, variant, seed, curve, idx, pressure, pressure_kind, proxy, gold; a value that was not
        finite, or not measured, is NaN)."""
        import pandas as pd

        rows = []
        for run in self.runs():
            row: dict[str, Any] = {"run_id": run.run_id, "study": run.study, "variant": run.variant, "kind": run.kind,
                                   "seed": run.seed, "duration_s": run.duration_s,
                                   "host": run.environment.get("host"), "node_id": run.environment.get("node_id")}
            row.update({f"config.{name}": value for name, value in flat_config(run.config).items()})
            rows.append(row)
        fixed = ["run_id", "study", "variant", "kind", "seed", "duration_s", "host", "node_id"]
        runs = pd.DataFrame(rows, columns=fixed + sorted({c for row in rows for c in row} - set(fixed)))
        columns = ["run_id", "study", "variant", "seed", "curve", "idx", "pressure", "pressure_kind", "proxy", "gold"]
        with self._damage_named():
            found = self._connection.execute(
                "SELECT p.run_id, r.study, r.variant, r.seed, p.curve, p.idx, p.pressure, p.pressure_kind, p.proxy, "
                "p.gold FROM points p JOIN runs r ON r.run_id = p.run_id ORDER BY r.rowid, p.curve, p.idx").fetchall()
        points = pd.DataFrame(found, columns=columns).astype({"proxy": "float64", "gold": "float64",
                                                              "pressure": "float64"})
        return StoreFrames(runs, points)

    def result(self, run: str) -> RunResult:
        """A stored run as the study returned it (non-finite values as None)."""
        with self._damage_named():
            (summary,) = self._connection.execute("SELECT summary FROM runs WHERE run_id = ?", (run,)).fetchone()
            return RunResult(self.points(run), _json_mapping(summary))


@dataclass(frozen=True)
class StoreFrames:
    """`ResultsStore.to_pandas()`: the runs and their points as pandas DataFrames."""

    runs: Any
    points: Any


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A stored config as one level of dotted names (`agent.lr`); lists, and empty mappings, as JSON text, so
    every value is a number, a string, a boolean or None (a table cell, an MLflow param)."""
    flat: dict[str, Any] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_config(value, f"{key}."))
        elif isinstance(value, Mapping | list | tuple):
            flat[key] = json.dumps(value, sort_keys=True, default=str)
        else:
            flat[key] = value
    return flat


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _check_sqlite_header(path: Path) -> None:
    """A file that is not SQLite at all (an HTML report, a CSV) gets a clear error before SQLite reads it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError as error:
        raise StoreError(f"cannot read {path}: {error.strerror}") from None
    if header and header != b"SQLite format 3\x00":
        raise StoreError(f"{path} is not a results store (not an SQLite file); pass the results.sqlite that "
                         "`goodhartlab run` or `demo` wrote")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _json_mapping(text: str | None) -> dict[str, Any]:
    """A stored JSON object; anything else (null, a damaged cell) reads as an empty mapping."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _jsonable(value: Any) -> Any:
    """Make NumPy scalars and arrays in a run summary storable as JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot store a {type(value).__name__} in a run summary; use numbers, "
                    "strings, lists or dicts")
