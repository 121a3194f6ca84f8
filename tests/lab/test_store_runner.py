import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from goodhartlab.lab.runner import RunFailed, RunSpec, run_sweep
from goodhartlab.lab.store import ResultsStore, StudyInfo
from tests.lab.tasks import sweep

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_stores_config_seed_environment_and_points(tmp_path):
    store_path = tmp_path / "results.sqlite"
    runs = sweep(str(store_path), 4, 0.0)
    first = run_sweep(runs, store_path, workers=2, progress=False)
    assert (first.ran, first.skipped) == (4, 0)
    again = run_sweep(runs, store_path, workers=2, progress=False)
    assert (again.ran, again.skipped) == (0, 4)
    with ResultsStore(store_path) as store:
        stored = store.runs("kill-test")
        assert len(stored) == 4
        run = stored[0]
        assert run.config["df"] in (None, 1.5) and run.environment["packages"]["numpy"]
        points = store.points(run.run_id)["bon"]
        assert len(points.pressure) == 4 and points.gold[-1] == pytest.approx(run.summary["final_gold"])
    assert sqlite3.connect(store_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_seed_same_numbers(tmp_path):
    runs = sweep("", 2, 0.0)
    run_sweep(runs, tmp_path / "a.sqlite", workers=1, progress=False)
    run_sweep(runs, tmp_path / "b.sqlite", workers=2, progress=False)
    with ResultsStore(tmp_path / "a.sqlite") as a, ResultsStore(tmp_path / "b.sqlite") as b:
        for run in a.runs():
            np.testing.assert_array_equal(a.points(run.run_id)["bon"].gold, b.points(run.run_id)["bon"].gold)


S = StudyInfo("s", "s")


def test_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    runs = [RunSpec(S, "bad", "tests.lab.tasks:failing_task", {}, 0),
            RunSpec(S, "ok", "tests.lab.tasks:bestofn_task", {}, 0)]
    with pytest.raises(RunFailed, match=r"1 of 2 runs failed \(s/bad/seed=0: RuntimeError: planted failure\).*retries"):
        run_sweep(runs, tmp_path / "r.sqlite", workers=1, progress=False)
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert [r.variant for r in store.runs()] == ["ok"]  # the run after the failure ran too
        (failure,) = store.failures()
        assert failure.variant == "bad" and "planted failure" in failure.traceback


def test_runs_beside_a_failing_one_all_finish_and_are_kept(tmp_path):
    runs = [RunSpec(S, "slow", "tests.lab.tasks:bestofn_task", {"sleep": 1.5}, 0),
            RunSpec(S, "bad", "tests.lab.tasks:failing_task", {}, 0),
            RunSpec(S, "later", "tests.lab.tasks:bestofn_task", {}, 1)]
    with pytest.raises(RunFailed, match="s/bad/seed=0: RuntimeError: planted failure"):
        run_sweep(runs, tmp_path / "r.sqlite", workers=2, progress=False)
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert sorted(r.variant for r in store.runs()) == ["later", "slow"]


def test_duplicate_runs_and_bad_kinds_are_rejected(tmp_path):
    spec = RunSpec(S, "v", "tests.lab.tasks:bestofn_task", {}, 0)
    with pytest.raises(ValueError, match="twice"):
        run_sweep([spec, spec], tmp_path / "r.sqlite", progress=False)
    with pytest.raises(RunFailed, match="cannot load study kind"):
        run_sweep([RunSpec(S, "v", "tests.lab.tasks:absent", {}, 0)], tmp_path / "r.sqlite",
                  workers=1, progress=False)


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path):
    store_path = tmp_path / "results.sqlite"
    total = 24
    command = [sys.executable, "-m", "tests.lab.tasks", str(store_path), str(total), "0.15"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(0)
    for _ in range(4):
        process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        time.sleep(float(rng.uniform(0.8, 2.0)))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=120)
    db = sqlite3.connect(store_path)
    runs = db.execute("SELECT run_id, COUNT(*) FROM runs GROUP BY run_id").fetchall()
    assert len(runs) == total and all(count == 1 for _, count in runs)
    points = db.execute("SELECT run_id, COUNT(*) FROM points GROUP BY run_id").fetchall()
    assert len(points) == total and all(count == 4 for _, count in points)
    expected = {spec.run_id for spec in sweep(str(store_path), total, 0.15)}
    assert {run_id for run_id, _ in runs} == expected
