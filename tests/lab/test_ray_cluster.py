"""A sweep on a Ray cluster of several nodes (Ray's own cluster utilities, all on this machine): it completes,
and its runs are placed on every node, as the node ids stored with them show."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from goodhartlab.lab.runner import RunSpec, run_sweep  # noqa: E402
from goodhartlab.lab.store import ResultsStore, StudyInfo  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NODES = 3


@pytest.fixture(scope="module")
def nodes() -> Iterator[set[str]]:
    """A head and two more nodes of 1 CPU each; yields their node ids."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), before) if p)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(NODES - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.mark.slow
def test_a_sweep_on_three_nodes_completes_with_runs_on_every_node(nodes: set[str], tmp_path: Path) -> None:
    assert len(nodes) == NODES
    study = StudyInfo("spread", "spread over nodes")
    runs = [RunSpec(study, "v", "tests.lab.tasks:bestofn_task", {"sleep": 1.0}, seed) for seed in range(6)]
    done = run_sweep(runs, tmp_path / "r.sqlite", backend="ray", progress=False)
    assert done.ran == 6
    with ResultsStore(tmp_path / "r.sqlite", mode="read") as store:
        placed = [run.environment["node_id"] for run in store.runs()]
    assert len(placed) == 6 and set(placed) == nodes
