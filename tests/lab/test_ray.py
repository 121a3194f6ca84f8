"""The Ray backend on a local Ray cluster of 2 CPUs that this module starts: the same stored numbers as the local
backend, a dead worker's run tried once more, a driver killed mid-sweep resumed without loss or duplicates, and a
GPU run refused on a cluster without GPUs before anything is written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from goodhartlab.cli import main  # noqa: E402
from goodhartlab.config import parse_config  # noqa: E402
from goodhartlab.lab.runner import RunFailed, RunSpec, run_sweep  # noqa: E402
from goodhartlab.lab.store import ResultsStore, StudyInfo  # noqa: E402
from goodhartlab.rl.studies import CapabilitySweepConfig  # noqa: E402
from tests.lab.tasks import wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A Ray of 2 CPUs on this machine; its workers import this checkout (and tests.lab.tasks)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), before) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def rl_sweep() -> list[RunSpec]:
    """PPO on the epidemic environment, checkpoints along training: two settings, two seeds."""
    study = StudyInfo("rl-ray", "capability sweep on two backends")
    runs = []
    for name, width in (("narrow", 16), ("wide", 32)):
        config = parse_config(CapabilitySweepConfig, {
            "env": "goodhartlab/Epidemic-v0", "axis": "training_steps", "values": [0, 512, 1024],
            "agent": {"num_envs": 4, "n_steps": 128, "minibatch_size": 128, "eval_episodes": 4, "width": width}})
        runs += [RunSpec(study, name, "capability_sweep", config, seed) for seed in (0, 1)]
    return runs


def stored(path: Path) -> dict[str, tuple]:
    with ResultsStore(path, mode="read") as store:
        return {run.run_id: (run.config, run.summary, store.points(run.run_id)) for run in store.runs()}


def test_the_same_seeded_rl_sweep_stores_the_same_numbers_on_both_backends(cluster: str, tmp_path: Path) -> None:
    runs = rl_sweep()
    local = run_sweep(runs, tmp_path / "local.sqlite", workers=2, progress=False)
    on_ray = run_sweep(runs, tmp_path / "ray.sqlite", backend="ray", progress=False)
    assert local.ran == on_ray.ran == 4
    assert stored(tmp_path / "local.sqlite") == stored(tmp_path / "ray.sqlite")  # configs, summaries, every point
    with ResultsStore(tmp_path / "ray.sqlite", mode="read") as store:
        where = [run.environment for run in store.runs()]
    assert {w["backend"] for w in where} == {"ray"} and all(w["node_id"] for w in where)
    again = run_sweep(runs, tmp_path / "ray.sqlite", backend="ray", progress=False)
    assert (again.ran, again.skipped) == (0, 4)


def test_a_run_gets_as_many_threads_as_cpus_it_was_given(cluster: str, tmp_path: Path) -> None:
    runs = [RunSpec(StudyInfo("t", "t"), "threads", "tests.lab.tasks:threads_task", {}, seed) for seed in (0, 1)]
    on_ray = run_sweep(runs, tmp_path / "ray.sqlite", backend="ray", progress=False)
    for result in on_ray.results.values():  # every kind asks for 1 CPU
        assert result.summary["omp"] == "1" and result.summary["torch"] == 1 and result.summary["blas"] in (1, None)
    local = run_sweep(runs, tmp_path / "local.sqlite", workers=2, progress=False)
    share = max(1, len(os.sched_getaffinity(0)) // 2)  # two local workers share the machine's cores
    for result in local.results.values():
        assert result.summary["omp"] == str(share) and result.summary["torch"] == share
        assert result.summary["blas"] in (share, None)


def test_a_dead_worker_is_tried_once_more_then_its_run_is_stored_as_failed(cluster: str, tmp_path: Path) -> None:
    study = StudyInfo("s", "s")
    runs = [RunSpec(study, "dies once", "tests.lab.tasks:dies_once_task", {"marker": str(tmp_path / "died")}, 0),
            RunSpec(study, "always dies", "tests.lab.tasks:killed_task", {}, 0),
            *(RunSpec(study, "fine", "tests.lab.tasks:bestofn_task", {}, seed) for seed in range(2))]
    with pytest.raises(RunFailed, match=r"1 of 4 runs failed \(s/always dies/seed=0: its Ray worker died "
                       r"\(WorkerCrashedError.*tried once more, its worker died again\)"):
        run_sweep(runs, tmp_path / "r.sqlite", backend="ray", progress=False)
    assert (tmp_path / "died").exists()  # the first try of "dies once" was killed; its retry finished
    with ResultsStore(tmp_path / "r.sqlite", mode="read") as store:
        assert sorted(run.variant for run in store.runs()) == ["dies once", "fine", "fine"]
        (failure,) = store.failures()
        assert failure.variant == "always dies" and "died again" in failure.error


SPEC = """study: resumed
kind: tests.lab.tasks:logged_task
seeds: {seeds}
config: {{log: {log}, sleep: {sleep}}}
"""


def driver(tmp_path: Path, address: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "goodhartlab.cli", "run", str(tmp_path / "spec.yaml"), "--out",
               str(tmp_path / "out"), "--quiet", "--allow-import", "--backend", "ray", "--address", address]
    return subprocess.Popen(command, cwd=tmp_path, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def stored_seeds(tmp_path: Path) -> list[int]:
    path = tmp_path / "out" / "results.sqlite"
    if not path.exists():
        return []
    try:
        return [row[0] for row in sqlite3.connect(path).execute("SELECT seed FROM runs")]
    except sqlite3.Error:  # being made
        return []


def test_a_killed_worker_and_a_killed_driver_lose_and_repeat_nothing_finished(cluster: str, tmp_path: Path) -> None:
    seeds, log = 8, tmp_path / "tries.log"
    (tmp_path / "spec.yaml").write_text(SPEC.format(seeds=seeds, log=log, sleep=1.0))
    sweep = driver(tmp_path, cluster)
    victim = Path(f"{log}.0.pid")
    assert wait_for(victim.exists, 90), sweep.communicate()
    os.kill(int(victim.read_text()), signal.SIGKILL)  # the Ray worker running seed 0, mid-run
    assert wait_for(lambda: 0 in stored_seeds(tmp_path) and len(stored_seeds(tmp_path)) >= 3, 90), sweep.communicate()
    os.kill(sweep.pid, signal.SIGKILL)  # the driver, mid-sweep
    sweep.wait(timeout=30)
    before = stored_seeds(tmp_path)
    assert len(before) == len(set(before)) < seeds
    tries_before = log.read_text().split()[::2]

    again = driver(tmp_path, cluster)
    _, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert f"{seeds - len(before)} runs done, {len(before)} already in the store" in err
    after = stored_seeds(tmp_path)
    assert sorted(after) == list(range(seeds))  # every run once: nothing finished lost, nothing duplicated
    tries = [int(seed) for seed in log.read_text().split()[::2]]
    assert tries.count(0) == 2  # the killed run was tried once more, by the first driver
    for seed in before:  # a run finished before the driver died was never run again
        assert tries.count(seed) == tries_before.count(str(seed))
    with ResultsStore(tmp_path / "out" / "results.sqlite", mode="read") as store:
        assert not store.failures()


def test_a_gpu_run_on_a_cluster_without_gpus_is_refused_before_anything_is_written(
        cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "gpu.yaml"
    spec.write_text("study: gpu\nkind: tests.lab.tasks:bestofn_task\nseeds: 1\nconfig: {device: cuda}\n")
    code = main(["run", str(spec), "--out", str(tmp_path / "out"), "--allow-import", "--backend", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "gpu/gpu/seed=0 asks for 1 CPU, 1 GPU (device: cuda) per run, but no node of the Ray cluster" in err
    assert "use device: auto or cpu" in err
    assert not (tmp_path / "out").exists()
