"""A small real task for runner tests: a best-of-n curve that takes a moment to compute."""

import time
from typing import Any

from goodhartlab.measure.bestofn import bestofn_curve
from goodhartlab.measure.synthetic import goodhart_pool
from goodhartlab.results import CurvePoints, RunResult


def bestofn_task(config: dict[str, Any], seed: int) -> RunResult:
    time.sleep(config.get("sleep", 0.0))
    proxy, gold = goodhart_pool(20, 64, df=config.get("df"), seed=seed)
    curve = bestofn_curve(proxy, gold, [1, 4, 16, 64])
    return RunResult({"bon": CurvePoints(curve.kl.tolist(), curve.proxy.tolist(),
                                         curve.gold.tolist())}, {"final_gold": float(curve.gold[-1])})


def no_gold_task(config: dict[str, Any], seed: int) -> RunResult:
    """A sweep on an environment without a true reward: the proxy is measured, gold is not."""
    return RunResult({"proxy vs true": CurvePoints([1.0, 2.0, 3.0], [0.5, 0.7, 0.9], [None, None, None], "steps")})


def odd_names_task(config: dict[str, Any], seed: int) -> RunResult:
    """A curve whose name MLflow cannot take as it is (√), on a √KL axis, with a proxy that was NaN."""
    return RunResult({"gold win rate vs √KL": CurvePoints([0.0, 0.5, 1.25], [0.1, float("nan"), 0.3 + seed],
                                                         [0.5, 0.625, 0.4], "sqrt_kl")})


def threads_task(config: dict[str, Any], seed: int) -> RunResult:
    """The threads a run was given: OpenMP's setting, NumPy's BLAS (where threadpoolctl can say) and torch's."""
    import os

    import torch

    try:
        from threadpoolctl import threadpool_info

        blas = max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=None)
    except ImportError:
        blas = None
    summary = {"omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads(), "blas": blas}
    return RunResult({"threads": CurvePoints([0.0], [0.0], [0.0])}, summary)


def failing_task(config: dict[str, Any], seed: int) -> RunResult:
    raise RuntimeError("planted failure")


def killed_task(config: dict[str, Any], seed: int) -> RunResult:
    """A run whose process is killed, as the out-of-memory killer would."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def exiting_task(config: dict[str, Any], seed: int) -> RunResult:
    raise SystemExit(3)


def dies_once_task(config: dict[str, Any], seed: int) -> RunResult:
    """A run whose first try is killed (the file `config["marker"]` is made then), and whose retry finishes."""
    import os
    import signal
    from pathlib import Path

    marker = Path(config["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return bestofn_task({}, seed)


def logged_task(config: dict[str, Any], seed: int) -> RunResult:
    """A run that says it started (a line "seed pid" in `config["log"]`, its pid in `<log>.<seed>.pid`), then
    sleeps, then returns a curve: the tests count tries and kill the process running a given seed."""
    import os
    from pathlib import Path

    log = Path(config["log"])
    with log.open("a") as handle:
        handle.write(f"{seed} {os.getpid()}\n")
    Path(f"{log}.{seed}.pid").write_text(str(os.getpid()))
    return bestofn_task({"sleep": config.get("sleep", 0.0)}, seed)


def sweep(store: str, runs: int, sleep: float) -> list:
    from goodhartlab.lab.runner import RunSpec
    from goodhartlab.lab.store import StudyInfo

    return [RunSpec(StudyInfo("kill-test", "kill test"), f"df={df}", "tests.lab.tasks:bestofn_task",
                    {"df": df, "sleep": sleep}, seed)
            for df in (None, 1.5) for seed in range(runs // 2)]


if __name__ == "__main__":
    import sys

    from goodhartlab.lab.runner import run_sweep

    store_path, count, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    run_sweep(sweep(store_path, count, pause), store_path, workers=2, progress=False)


def wait_for(condition: object, timeout: float) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass (process tests wait on other processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False
