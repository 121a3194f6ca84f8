"""Sweeps and their worker processes: no orphan, a prompt Ctrl-C, a dead worker failing only its run, and two
sweeps on one store sharing the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goodhartlab.lab.runner import RunFailed, RunSpec, run_sweep
from goodhartlab.lab.store import ResultsStore, StoreError, StudyInfo
from tests.lab.tasks import wait_for

ROOT = Path(__file__).resolve().parents[2]
SPEC = """study: slow
kind: tests.lab.tasks:bestofn_task
seeds: {seeds}
config: {{sleep: {sleep}}}
"""


def _as_a_terminal_starts_a_job() -> None:
    """Ctrl-C at its default and not blocked in the sweep, as a terminal's foreground job has it, whatever this test
    process carries: a shell without job control starts a background job (`make test &`) with SIGINT ignored, exec
    keeps that, and the sweep then never saw the interrupt (it finished all its runs and exited 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def start_sweep(tmp_path: Path, seeds: int, sleep: float, out: str = "out") -> subprocess.Popen[str]:
    spec = tmp_path / "slow.yaml"
    spec.write_text(SPEC.format(seeds=seeds, sleep=sleep))
    command = [sys.executable, "-m", "goodhartlab.cli", "run", str(spec), "--out", str(tmp_path / out), "--quiet",
               "--workers", "2", "--allow-import"]
    return subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_a_terminal_starts_a_job)


def children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return {int(child) for child in found}


def stored(tmp_path: Path, out: str = "out") -> int:
    try:
        with ResultsStore(tmp_path / out / "results.sqlite", mode="read") as store:
            return len(store.runs())
    except StoreError:  # not there yet, or being made
        return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGKILL])
def test_killing_only_the_parent_leaves_no_worker_alive(tmp_path: Path, signal_number: int) -> None:
    sweep = start_sweep(tmp_path, seeds=12, sleep=1.0)
    assert wait_for(lambda: len(children(sweep.pid)) >= 2 and stored(tmp_path) >= 1, 60), sweep.communicate()
    workers = children(sweep.pid)
    os.kill(sweep.pid, signal_number)  # the parent only, not its process group
    sweep.wait(timeout=30)
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 5), "a worker outlived its parent by 5 s"
    if signal_number == signal.SIGTERM:
        assert sweep.returncode == 143 and "interrupted" in sweep.stderr.read()  # type: ignore[union-attr]


@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_keeps_finished_runs_and_a_rerun_does_only_the_rest(tmp_path: Path) -> None:
    sweep = start_sweep(tmp_path, seeds=12, sleep=1.5)
    assert wait_for(lambda: stored(tmp_path) >= 2, 60), sweep.communicate()
    workers = children(sweep.pid)
    os.killpg(sweep.pid, signal.SIGINT)  # what a terminal sends: the whole foreground group
    pressed = time.monotonic()
    sweep.wait(timeout=30)
    assert time.monotonic() - pressed < 5 and sweep.returncode == 130  # it exits in 0.2-0.5 s here
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 5), "a worker outlived the sweep by 5 s"
    kept = stored(tmp_path)
    assert 2 <= kept < 12
    again = start_sweep(tmp_path, seeds=12, sleep=1.5)  # the same spec
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0 and f"{12 - kept} runs done, {kept} already in the store" in err
    assert stored(tmp_path) == 12


def test_a_worker_that_dies_or_exits_fails_only_its_own_run(tmp_path: Path) -> None:
    study = StudyInfo("s", "s")
    runs = [RunSpec(study, "killed", "tests.lab.tasks:killed_task", {}, 0),
            RunSpec(study, "exits", "tests.lab.tasks:exiting_task", {}, 0),
            *(RunSpec(study, "fine", "tests.lab.tasks:bestofn_task", {}, seed) for seed in range(3))]
    with pytest.raises(RunFailed) as failed:
        run_sweep(runs, tmp_path / "r.sqlite", workers=2, progress=False)
    message = str(failed.value)
    assert "2 of 5 runs failed" in message and "s/killed/seed=0: its worker process died (SIGKILL" in message
    assert "s/exits/seed=0: SystemExit: 3" in message and "again retries the failed ones" in message
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert sorted(run.seed for run in store.runs()) == [0, 1, 2]
        assert {failure.variant for failure in store.failures()} == {"killed", "exits"}


def test_two_sweeps_on_one_store_share_the_work(tmp_path: Path) -> None:
    first = start_sweep(tmp_path, seeds=8, sleep=0.6)
    assert wait_for(lambda: stored(tmp_path) >= 1, 60), first.communicate()
    second = start_sweep(tmp_path, seeds=8, sleep=0.6)
    _, first_err = first.communicate(timeout=120)
    _, second_err = second.communicate(timeout=120)
    assert first.returncode == second.returncode == 0, (first_err, second_err)
    done = [int(err.split(" runs done")[0].split()[-1]) for err in (first_err, second_err)]
    assert sum(done) <= 8 and stored(tmp_path) == 8  # no run computed twice, none lost
    with ResultsStore(tmp_path / "out" / "results.sqlite", mode="read") as store:
        assert len({run.run_id for run in store.runs()}) == 8
