"""Scalars for the dashboards users already open: TensorBoard event files and MLflow runs.

One naming scheme for both, so a run logged live by `OveroptimizationCallback` and the same run exported
from a results store (`goodhartlab export`) show the same tags: `<curve>/<pressure kind>` (the pressure
itself, e.g. `rl/kl` in nats per sequence), `<curve>/proxy` and `<curve>/gold`. TensorBoard and MLflow are
imported only when a writer is made, so neither is needed to train or to read a store.

    writer = TensorBoardScalars("runs/tb")       # or MlflowScalars(tracking_uri="mlruns", experiment="grpo")
    writer.write({"rl/kl": 0.8, "rl/proxy": 1.2, "rl/gold": 0.4}, step=10)
    writer.close()
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

TENSORBOARD_REQUIREMENT = "tensorboard==2.21.0"
MLFLOW_REQUIREMENT = "mlflow-skinny==3.17.2"
MLFLOW_BATCH = 1000
"""Metrics per MLflow request (the tracking API's own limit)."""
_NOT_IN_A_TAG = re.compile(r"[^A-Za-z0-9_\-. /:]+")


def clean_name(name: str) -> str:
    """`name` with only the characters MLflow allows in a metric or param key (letters, digits, `_ - . / : `
    and spaces); the others, `√` for one, become `_`. TensorBoard gets the same name, so both agree."""
    return _NOT_IN_A_TAG.sub("_", name).strip() or "_"


def scalar_tag(curve: str, name: str) -> str:
    """The tag of one of a curve's scalars: `<curve>/<name>` (name: proxy, gold, or the pressure kind)."""
    return f"{clean_name(curve)}/{clean_name(name)}"


def finite_scalars(values: Mapping[str, float | None]) -> dict[str, float]:
    """The values that can be plotted: None (not measured) and NaN or infinity (reported elsewhere) left out."""
    return {tag: float(value) for tag, value in values.items() if value is not None and math.isfinite(value)}


class ScalarWriter(Protocol):
    """Writes named scalars at an integer step."""

    def write(self, values: Mapping[str, float | None], step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardScalars:
    """Scalars in a TensorBoard event file under `logdir`, with TensorBoard's own writer (no torch, no TensorFlow).
    TensorBoard keeps scalars as 32-bit floats."""

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            raise ImportError(f"writing TensorBoard scalars needs tensorboard: pip install '{TENSORBOARD_REQUIREMENT}'"
                              ) from None
        Path(logdir).mkdir(parents=True, exist_ok=True)
        self.logdir = Path(logdir)
        self._writer = EventFileWriter(str(logdir))

    def write(self, values: Mapping[str, float | None], step: int, wall_time: float | None = None) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        scalars = finite_scalars(values)
        if not scalars:
            return
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)
                                             for tag, value in scalars.items()])
        self._writer.add_event(event_pb2.Event(wall_time=time.time() if wall_time is None else wall_time,
                                               step=int(step), summary=summary))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def is_local_tracking(target: str) -> bool:
    """Whether an MLflow target is a folder on this machine (a path or file: URI), not a tracking server."""
    return "://" not in target or target.startswith("file:")


@contextlib.contextmanager
def mlflow_file_store_allowed() -> Iterator[None]:
    """MLflow 3 refuses its folder store (`./mlruns`) unless MLFLOW_ALLOW_FILE_STORE is set: mlflow-skinny has no
    database store, and a folder is what a laptop or a shared filesystem has. Allowed while this block runs."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def tracking_uri(target: str | os.PathLike[str]) -> str:
    """An MLflow tracking URI: a URI as given, a folder as its file: URI."""
    text = os.fspath(target)
    return text if "://" in text or text.startswith("file:") else Path(text).resolve().as_uri()


def mlflow_client(target: str | os.PathLike[str]) -> Any:
    """An MLflow client of `target` (a folder, or a tracking URI)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError(f"writing to MLflow needs its tracking client: pip install '{MLFLOW_REQUIREMENT}'") from None
    uri = tracking_uri(target)
    with mlflow_file_store_allowed():
        return MlflowClient(tracking_uri=uri)


class MlflowScalars:
    """Scalars in an MLflow run: `run_id`; else, without a `tracking_uri`, the active run (the one TRL's
    MLflowCallback opened, with `report_to="mlflow"`); else a new run in `experiment` at `tracking_uri` (a folder
    or a server; the active run belongs to another store), ended by `close`."""

    def __init__(self, *, run_id: str | None = None, tracking_uri: str | os.PathLike[str] | None = None,
                 experiment: str = "goodhartlab", run_name: str | None = None, client: Any = None) -> None:
        if client is None:
            if tracking_uri is None:
                try:
                    import mlflow
                except ImportError:
                    raise ImportError(f"writing to MLflow needs its tracking client: pip install "
                                      f"'{MLFLOW_REQUIREMENT}'") from None
                tracking_uri = mlflow.get_tracking_uri()
            client = mlflow_client(tracking_uri)
        self.client, self.run_id = client, run_id
        self.join_active = tracking_uri is None and client is None
        self.experiment, self.run_name = experiment, run_name
        self._owned = False

    def _run(self) -> str:
        if self.run_id is None:
            import mlflow

            active = mlflow.active_run() if self.join_active else None
            if active is not None:
                self.run_id = active.info.run_id
            else:
                with mlflow_file_store_allowed():
                    found = self.client.get_experiment_by_name(self.experiment)
                    experiment = found.experiment_id if found else self.client.create_experiment(self.experiment)
                    self.run_id = self.client.create_run(experiment, run_name=self.run_name).info.run_id
                self._owned = True
        return self.run_id

    def write(self, values: Mapping[str, float | None], step: int) -> None:
        self.write_rows([(step, values)])

    def write_rows(self, rows: Iterable[tuple[int, Mapping[str, float | None]]]) -> None:
        """Several steps' scalars in as few requests as MLflow allows."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(tag, value, stamp, int(step)) for step, values in rows
                   for tag, value in finite_scalars(values).items()]
        if not metrics:
            return
        run = self._run()
        with mlflow_file_store_allowed():
            for start in range(0, len(metrics), MLFLOW_BATCH):
                self.client.log_batch(run, metrics=metrics[start:start + MLFLOW_BATCH])

    def close(self) -> None:
        if self._owned and self.run_id is not None:
            with mlflow_file_store_allowed():
                self.client.set_terminated(self.run_id)
            self._owned = False


__all__ = ["MlflowScalars", "ScalarWriter", "TensorBoardScalars", "clean_name", "finite_scalars",
           "is_local_tracking", "mlflow_client", "mlflow_file_store_allowed", "scalar_tag", "tracking_uri"]
