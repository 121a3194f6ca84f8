"""`goodhartlab demo`: the demo's studies, as packaged specs run like any other (`goodhartlab run`).

Synthetic Goodhart (best-of-n, ensembles, transitions), classic RL (tomato watering, tampering, a
capability sweep) and best-of-n on SmolLM2. With the models cached it takes about 6 minutes on 2 cores;
run again, it redoes nothing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from goodhartlab.lab.runner import RunSpec
from goodhartlab.lab.spec import load_spec
from goodhartlab.lab.study import StudiesDone, run_studies

SPECS = ("bestofn-goodhart", "ensembles", "transitions", "transitions-rates", "rl-tomato", "rl-tampering",
         "rl-tampering-register", "rl-capability", "lm-bestofn")
"""In the order the report shows them."""


def demo_runs() -> list[RunSpec]:
    runs: list[RunSpec] = []
    folder = resources.files(__name__)
    for name in SPECS:
        with resources.as_file(folder / f"{name}.yaml") as path:
            runs += load_spec(path).runs
    return runs


def run_demo(out_dir: str | Path, *, workers: int | None = None, backend: str = "local", address: str | None = None,
             progress: bool = True) -> StudiesDone:
    return run_studies(demo_runs(), out_dir, workers=workers, backend=backend, address=address, progress=progress,
                       description="demo runs")
