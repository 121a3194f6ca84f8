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
