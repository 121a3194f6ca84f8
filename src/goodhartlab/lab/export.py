"""A results store for the tools users already open: tidy tables (Parquet, CSV), MLflow runs, TensorBoard scalars.

    goodhartlab export --to parquet|csv|mlflow|tensorboard [--store S] [--out DIR|URI]

Tables: `runs` (one row per finished run, its config flattened into `config.<field>` columns) and `points`
(one row per curve point), as `ResultsStore.to_pandas` gives them. MLflow: one experiment per study
(`goodhartlab/<study>`), one MLflow run per stored run with its config as params and its curves as
metrics. TensorBoard: one event folder per run, `<study>/<variant>/seed-<seed>`.

Steps. TensorBoard and MLflow plot a metric against an integer step. A curve whose pressures are whole
numbers that rise (training steps, episodes, best-of-n's n, a width) uses the pressure itself as the step;
any other curve (KL, √KL, observation noise) uses the point's index. Either way the pressure is also
logged as a metric of its own, `<curve>/<pressure kind>`, beside `<curve>/proxy` and `<curve>/gold`, so
a dashboard can plot gold against it; the names are `integrations.trackers`' scheme, which the TRL
callback writes during training too.

Nothing is half-written. Tables and TensorBoard folders are written aside and renamed into place; a
folder that exists and was not written by `goodhartlab export` is refused. An MLflow run is marked
FINISHED only once all its values are in; exporting again skips the stored runs already FINISHED there
(tag `goodhartlab.run_id`) and redoes any left unfinished. A target that cannot be written is refused
before anything is written.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from goodhartlab.files import write_atomically
from goodhartlab.integrations.trackers import (
    MlflowScalars,
    TensorBoardScalars,
    clean_name,
    is_local_tracking,
    mlflow_client,
    mlflow_file_store_allowed,
    scalar_tag,
    tracking_uri,
)
from goodhartlab.lab.backends import unreachable
from goodhartlab.lab.store import ResultsStore, StoredRun, flat_config

Format = Literal["parquet", "csv", "mlflow", "tensorboard"]
FORMATS: tuple[str, ...] = ("parquet", "csv", "mlflow", "tensorboard")
MARKER = "goodhartlab-export.json"
"""Written in every table or TensorBoard export folder: the sign that goodhartlab may replace the folder."""
DEFAULT_FOLDERS = {"parquet": "parquet", "csv": "csv", "mlflow": "mlruns", "tensorboard": "tensorboard"}
PARAM_LENGTH = 6000
"""MLflow's longest param value; a longer config value is cut, and the run's `goodhartlab.cut_params` tag says so."""
PARAMS_PER_REQUEST = 100


class ExportError(ValueError):
    """An export target goodhartlab will not write to; the message says why and what to do."""


@dataclass(frozen=True)
class Exported:
    format: str
    target: str
    runs: int
    points: int
    skipped: int = 0
    """MLflow: stored runs already exported there, left as they were."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_target(store: str | Path, to: str) -> str:
    """Where an export goes without --out: beside the store, in a folder named for the format."""
    return str(Path(store).parent / DEFAULT_FOLDERS[to])


def export_store(store: str | Path, to: str, out: str | None = None) -> Exported:
    """Export the store at `store` as `to` (one of FORMATS) into `out` (a folder; for MLflow also a tracking
    URI); default `default_target`."""
    if to not in FORMATS:
        raise ExportError(f"--to {to}: choose one of {', '.join(FORMATS)}")
    target = out or default_target(store, to)
    with ResultsStore(store, mode="read") as opened:
        if to == "mlflow":
            return _to_mlflow(opened, target)
        folder = _our_folder(Path(target), to)
        if to == "tensorboard":
            return _to_tensorboard(opened, folder)
        return _to_tables(opened, folder, to)


def metric_steps(pressure: Sequence[float]) -> list[int]:
    """The integer step of each point: the pressure when every pressure is a whole number >= 0 and they rise,
    else the point's index."""
    whole = all(x >= 0 and float(x).is_integer() for x in pressure)
    rising = all(b > a for a, b in itertools.pairwise(pressure))
    return [int(x) for x in pressure] if whole and rising else list(range(len(pressure)))


def curve_scalars(store: ResultsStore, run: StoredRun) -> list[tuple[int, dict[str, float | None]]]:
    """A stored run's curves as (step, {tag: value}) rows, in the trackers' naming scheme."""
    rows: dict[int, dict[str, float | None]] = {}
    for name, curve in store.points(run.run_id).items():
        for step, x, proxy, gold in zip(metric_steps(curve.pressure), curve.pressure, curve.proxy, curve.gold,
                                        strict=True):
            rows.setdefault(step, {}).update({scalar_tag(name, curve.pressure_kind): x,
                                              scalar_tag(name, "proxy"): proxy, scalar_tag(name, "gold"): gold})
    return sorted(rows.items())


# -- folders --------------------------------------------------------------------------------------------------


def _our_folder(folder: Path, to: str) -> Path:
    """`folder` if goodhartlab may (re)write it: absent, empty, or an earlier export; an ExportError otherwise."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ExportError(f"--out {folder}: exists and is not a folder; give a new folder for the {to} export")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise ExportError(f"--out {folder}: exists and holds files goodhartlab did not write (no {MARKER}); it will "
                          "not replace them: give a new or empty folder")
    return folder


def _marker(store: ResultsStore, to: str, runs: int, points: int) -> str:
    return json.dumps({"format": to, "store": str(store.path.resolve()), "runs": runs, "points": points,
                       "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1)


def _to_tables(store: ResultsStore, folder: Path, to: str) -> Exported:
    frames = store.to_pandas()
    runs, points = frames.runs, frames.points

    def write(staged: Path) -> None:
        staged.mkdir(parents=True)
        for name, frame in (("runs", runs), ("points", points)):
            if to == "parquet":
                _storable(frame).to_parquet(staged / f"{name}.parquet", index=False)
            else:
                frame.to_csv(staged / f"{name}.csv", index=False)
        (staged / MARKER).write_text(_marker(store, to, len(runs), len(points)), encoding="utf-8")

    write_atomically(folder, write)
    return Exported(to, str(folder), len(runs), len(points))


def _storable(frame: Any) -> Any:
    """Columns mixing kinds of values (a config field that is a number in one kind and text in another) as JSON
    text, which Parquet's one type per column can hold; numbers and text columns stay as they are."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        kinds = {type(value) for value in frame[column] if value is not None and value == value}
        if len(kinds) > 1:
            frame[column] = [None if value is None else json.dumps(value, default=str) for value in frame[column]]
    return frame


def _run_folder(run: StoredRun, taken: set[str]) -> str:
    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", name).strip("._") or "_"

    name = f"{safe(run.study)}/{safe(run.variant)}/seed-{run.seed}"
    if name in taken:
        name = f"{name}-{run.run_id[:8]}"
    taken.add(name)
    return name


def _to_tensorboard(store: ResultsStore, folder: Path) -> Exported:
    runs = store.runs()
    points = 0

    def write(staged: Path) -> None:
        nonlocal points
        staged.mkdir(parents=True)
        taken: set[str] = set()
        for run in runs:
            writer = TensorBoardScalars(staged / _run_folder(run, taken))
            try:
                for step, values in curve_scalars(store, run):
                    writer.write(values, step)
                    points += 1
            finally:
                writer.close()
        (staged / MARKER).write_text(_marker(store, "tensorboard", len(runs), points), encoding="utf-8")

    write_atomically(folder, write)
    return Exported("tensorboard", str(folder), len(runs), points)


# -- MLflow ---------------------------------------------------------------------------------------------------


def _check_mlflow_target(target: str) -> None:
    """A folder that is not an MLflow store, or a server nothing answers at, is refused before anything is
    written."""
    if target.startswith(("http://", "https://")):
        host_port = target.split("://", 1)[1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":") if ":" in host_port else (host_port, "", "")
        port_number = int(port) if port.isdigit() else (443 if target.startswith("https") else 80)
        reason = unreachable(host or host_port, port_number)
        if reason is not None:
            raise ExportError(f"--out {target}: no MLflow tracking server answers there ({reason}); start it or "
                              "check the URI")
        return
    if not is_local_tracking(target):
        return  # databricks, a database: MLflow's own client says what is wrong
    folder = Path(target.removeprefix("file://") if target.startswith("file://") else target.removeprefix("file:"))
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ExportError(f"--out {folder}: exists and is not a folder; give a folder for MLflow's runs (mlruns)")
    if folder.is_dir() and any(folder.iterdir()) and not _is_mlflow_folder(folder):
        raise ExportError(f"--out {folder}: exists and is not an MLflow store (no experiment folders with meta.yaml); "
                          "give a new folder, an existing mlruns folder, or a tracking URI")


def _is_mlflow_folder(folder: Path) -> bool:
    return (folder / ".trash").is_dir() or any((child / "meta.yaml").is_file() for child in folder.iterdir()
                                               if child.is_dir())


def _to_mlflow(store: ResultsStore, target: str) -> Exported:
    _check_mlflow_target(target)
    from mlflow.entities import Param, RunTag

    runs = store.runs()
    studies = {info.study: info for info in store.studies()}
    client = mlflow_client(target)
    exported = skipped = points = 0
    with mlflow_file_store_allowed():
        experiments: dict[str, str] = {}
        for study in dict.fromkeys(run.study for run in runs):
            name = f"goodhartlab/{study}"
            found = client.get_experiment_by_name(name)
            experiments[study] = found.experiment_id if found else client.create_experiment(
                name, tags={"goodhartlab.study": study,
                            "mlflow.note.content": studies[study].description if study in studies else ""})
        earlier: dict[str, list[Any]] = {}
        if experiments:
            for found in client.search_runs(list(experiments.values()), max_results=50_000):
                identifier = found.data.tags.get("goodhartlab.run_id")
                if identifier:
                    earlier.setdefault(identifier, []).append(found)
        for run in runs:
            previous = earlier.get(run.run_id, [])
            if any(found.info.status == "FINISHED" for found in previous):
                skipped += 1
                continue
            for found in previous:  # an export that was interrupted: redone whole
                client.delete_run(found.info.run_id)
            points += _mlflow_run(client, experiments[run.study], store, run, Param, RunTag)
            exported += 1
    return Exported("mlflow", tracking_uri(target), exported, points, skipped)


def _mlflow_run(client: Any, experiment: str, store: ResultsStore, run: StoredRun, param: Any, tag: Any) -> int:
    params: dict[str, str] = {}
    cut: list[str] = []
    for name, value in flat_config(run.config).items():
        text = json.dumps(value) if not isinstance(value, str) else value
        if len(text) > PARAM_LENGTH:
            text, cut = text[:PARAM_LENGTH - 1] + "…", [*cut, name]
        params[clean_name(name)] = text
    tags = {"goodhartlab.run_id": run.run_id, "goodhartlab.study": run.study, "goodhartlab.variant": run.variant,
            "goodhartlab.kind": run.kind, "goodhartlab.seed": str(run.seed), "goodhartlab.store": str(store.path)}
    if cut:
        tags["goodhartlab.cut_params"] = ", ".join(cut)
    created = client.create_run(experiment, run_name=f"{run.variant} seed={run.seed}", tags=tags)
    identifier = created.info.run_id
    try:
        items = [param(name, value) for name, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_REQUEST):
            client.log_batch(identifier, params=items[start:start + PARAMS_PER_REQUEST])
        client.log_batch(identifier, tags=[tag("goodhartlab.duration_s", f"{run.duration_s:.3f}")])
        rows = curve_scalars(store, run)
        MlflowScalars(client=client, run_id=identifier).write_rows(rows)
    except BaseException:
        client.set_terminated(identifier, status="FAILED")
        raise
    client.set_terminated(identifier, status="FINISHED")
    return len(rows)


__all__ = ["DEFAULT_FOLDERS", "FORMATS", "MARKER", "ExportError", "Exported", "curve_scalars", "default_target",
           "export_store", "metric_steps"]
