"""Exports read back by the tools they are for — pandas, MLflow's client, TensorBoard's own event reader — give the
store's numbers; a target that exists and is not an export is refused with one line and left as it was."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from goodhartlab.cli import main
from goodhartlab.lab.export import MARKER, metric_steps
from goodhartlab.lab.runner import RunSpec, run_sweep
from goodhartlab.lab.store import ResultsStore, StudyInfo, flat_config

STUDY = StudyInfo("exported", "exported")
RUNS = [RunSpec(STUDY, "bon", "tests.lab.tasks:bestofn_task", {"df": 1.5, "agent": {"lr": 0.1}}, seed)
        for seed in (0, 1)] + [
    RunSpec(STUDY, "no gold", "tests.lab.tasks:no_gold_task", {"values": [1, 2, 3]}, 0),
    RunSpec(StudyInfo("odd", "odd names"), "win rate", "tests.lab.tasks:odd_names_task", {}, 3)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "results.sqlite"
    run_sweep(RUNS, path, workers=1, progress=False)
    return path


def expected_points(store: Path) -> pd.DataFrame:
    rows = []
    with ResultsStore(store, mode="read") as opened:
        for run in opened.runs():
            for curve, points in opened.points(run.run_id).items():
                for index, (x, proxy, gold) in enumerate(zip(points.pressure, points.proxy, points.gold, strict=True)):
                    rows.append({"run_id": run.run_id, "study": run.study, "variant": run.variant, "seed": run.seed,
                                 "curve": curve, "idx": index, "pressure": x, "pressure_kind": points.pressure_kind,
                                 "proxy": np.nan if proxy is None else proxy, "gold": np.nan if gold is None else gold})
    return pd.DataFrame(rows)


def export(capsys: pytest.CaptureFixture[str], store: Path, to: str, out: Path | str) -> tuple[int, str]:
    code = main(["export", "--to", to, "--store", str(store), "--out", str(out)])
    return code, capsys.readouterr().err.strip()


def test_to_pandas_gives_one_row_per_run_and_per_point(store: Path) -> None:
    with ResultsStore(store, mode="read") as opened:
        frames = opened.to_pandas()
    assert len(frames.runs) == 4 and frames.runs["run_id"].is_unique
    bon = frames.runs[frames.runs["variant"] == "bon"]
    assert list(bon["config.agent.lr"]) == [0.1, 0.1] and list(bon["config.df"]) == [1.5, 1.5]
    assert frames.runs.loc[frames.runs["variant"] == "no gold", "config.values"].item() == "[1, 2, 3]"
    assert set(frames.runs["host"]) != {None} and set(frames.runs.columns[:4]) == {"run_id", "study", "variant",
                                                                                    "kind"}
    pd.testing.assert_frame_equal(frames.points, expected_points(store))
    assert frames.points["gold"].isna().sum() == 3 and frames.points["proxy"].isna().sum() == 1  # None, NaN


@pytest.mark.parametrize("to", ["parquet", "csv"])
def test_tables_read_back_by_pandas_hold_the_stores_numbers(store: Path, tmp_path: Path, to: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, err = export(capsys, store, to, tmp_path / to)
    assert code == 0 and f"exported 4 runs, 14 points as {to}" in err
    read = pd.read_parquet if to == "parquet" else pd.read_csv
    with ResultsStore(store, mode="read") as opened:
        frames = opened.to_pandas()
    points = read(tmp_path / to / f"points.{to}")
    pd.testing.assert_frame_equal(points, frames.points, check_dtype=to == "parquet")
    runs = read(tmp_path / to / f"runs.{to}")
    assert list(runs["run_id"]) == list(frames.runs["run_id"])
    assert list(runs["duration_s"]) == pytest.approx(list(frames.runs["duration_s"]), rel=1e-12)
    assert json.loads((tmp_path / to / MARKER).read_text())["runs"] == 4
    assert export(capsys, store, to, tmp_path / to)[0] == 0  # an earlier export of ours is replaced


def curve_rows(store: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per run id, per tag, the (step, value) pairs an export should hold: the stored points, None left out."""
    from goodhartlab.integrations.trackers import scalar_tag

    wanted: dict[str, dict[str, list[tuple[int, float]]]] = {}
    with ResultsStore(store, mode="read") as opened:
        for run in opened.runs():
            tags = wanted.setdefault(run.run_id, {})
            for curve, points in opened.points(run.run_id).items():
                steps = metric_steps(points.pressure)
                for name, values in ((points.pressure_kind, points.pressure), ("proxy", points.proxy),
                                     ("gold", points.gold)):
                    pairs = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
                    if pairs:
                        tags[scalar_tag(curve, name)] = pairs
    return wanted


def test_mlflow_runs_read_back_by_its_client_hold_the_stores_config_and_curves(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    code, err = export(capsys, store, "mlflow", tmp_path / "mlruns")
    assert code == 0, err
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    assert {"goodhartlab/exported", "goodhartlab/odd"} <= set(experiments)
    found = {run.data.tags["goodhartlab.run_id"]: run for run in client.search_runs(list(experiments.values()))}
    wanted = curve_rows(store)
    assert set(found) == set(wanted)
    with ResultsStore(store, mode="read") as opened:
        for stored in opened.runs():
            run = found[stored.run_id]
            assert run.info.status == "FINISHED" and run.info.run_name == f"{stored.variant} seed={stored.seed}"
            config = {name: value if isinstance(value, str) else json.dumps(value)
                      for name, value in flat_config(stored.config).items()}
            assert run.data.params == config
            for tag, pairs in wanted[stored.run_id].items():
                history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag))
                assert history == pairs, tag  # the same numbers, exactly
    assert wanted[found_id(found, "no gold")]["proxy vs true/steps"] == [(1, 1.0), (2, 2.0), (3, 3.0)]  # steps
    assert [s for s, _ in wanted[found_id(found, "win rate")]["gold win rate vs _KL/gold"]] == [0, 1, 2]  # index
    code, err = export(capsys, store, "mlflow", tmp_path / "mlruns")  # again: nothing duplicated
    assert code == 0 and "exported 0 runs (4 already there)" in err
    assert len(client.search_runs(list(experiments.values()))) == 4


def found_id(found: dict, variant: str) -> str:
    return next(rid for rid, run in found.items() if run.data.tags["goodhartlab.variant"] == variant)


def test_tensorboard_scalars_read_back_by_its_event_reader_hold_the_stores_curves(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, err = export(capsys, store, "tensorboard", tmp_path / "tb")
    assert code == 0, err
    wanted = curve_rows(store)
    with ResultsStore(store, mode="read") as opened:
        for run in opened.runs():
            folder = tmp_path / "tb" / run.study / run.variant.replace(" ", "_") / f"seed-{run.seed}"
            reader = EventAccumulator(str(folder))
            reader.Reload()
            assert set(reader.Tags()["scalars"]) == set(wanted[run.run_id])
            for tag, pairs in wanted[run.run_id].items():
                events = [(event.step, event.value) for event in reader.Scalars(tag)]
                assert [s for s, _ in events] == [s for s, _ in pairs]
                assert all(math.isclose(a, float(np.float32(b)), rel_tol=1e-7, abs_tol=1e-7)
                           for (_, a), (_, b) in zip(events, pairs, strict=True))  # TensorBoard keeps float32


@pytest.mark.parametrize("to", ["parquet", "csv", "tensorboard", "mlflow"])
def test_a_target_that_exists_and_is_not_ours_is_refused_and_left_alone(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], to: str) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, err = export(capsys, store, to, folder)
    assert code == 2 and len(err.splitlines()) == 1 and f"--out {folder}: exists" in err, err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "mine"
    afile = tmp_path / "a-file"
    afile.write_text("x")
    code, err = export(capsys, store, to, afile)
    assert code == 2 and "exists and is not a folder" in err and afile.read_text() == "x"
    assert not list(tmp_path.glob("*.partial"))


def test_a_tracking_server_nobody_runs_is_refused(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, err = export(capsys, store, "mlflow", f"http://127.0.0.1:{port}")
    assert code == 2 and "no MLflow tracking server answers there" in err


def test_steps_are_the_pressure_when_it_counts_whole_rising_numbers() -> None:
    assert metric_steps([1.0, 4.0, 16.0]) == [1, 4, 16]
    assert metric_steps([0.0, 0.5, 2.0]) == [0, 1, 2]
    assert metric_steps([3.0, 3.0]) == [0, 1] and metric_steps([-1.0, 2.0]) == [0, 1]
