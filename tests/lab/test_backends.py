"""Backends asked for what they cannot do: one line each, exit status 2, and nothing written. Also the resources a
study kind declares."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from goodhartlab.cli import main
from goodhartlab.lab.registry import GIB, KINDS, Resources, StudyKind

SPEC = "study: s\nkind: tests.lab.tasks:bestofn_task\nseeds: 1\n"


def refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    code = main(["run", str(spec), "--out", str(tmp_path / "out"), "--allow-import", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # nothing half-written
    return err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_address_no_ray_answers_at_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{free_port()}"
    err = refused(tmp_path, capsys, "--backend", "ray", "--address", address)
    assert f"goodhartlab run: error: --address {address}: no Ray cluster answers there" in err
    assert "ray start --head" in err
    err = refused(tmp_path, capsys, "--backend", "ray", "--address", "head-node")
    assert "expected HOST:PORT" in err


def test_ray_not_installed_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where Ray is not installed
    err = refused(tmp_path, capsys, "--backend", "ray")
    assert "--backend ray needs Ray, which is not installed: pip install 'ray==2.60.0'" in err


def test_an_address_without_the_ray_backend_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(tmp_path, capsys, "--address", "127.0.0.1:6379")
    assert "--address names a Ray cluster; it goes with --backend ray" in err


def test_kinds_declare_resources_and_a_cuda_config_asks_for_a_gpu() -> None:
    assert KINDS["capability_sweep"].resources(None) == Resources(1.0, 0.0, 0)
    from goodhartlab.text.grpo import GRPOStudyConfig

    grpo = KINDS["grpo"]
    assert grpo.resources(GRPOStudyConfig(device="cuda")) == Resources(1.0, 1.0, 4 * GIB)
    assert grpo.resources(GRPOStudyConfig()).num_gpus == 0  # auto: whatever the node it lands on has
    users = StudyKind("mine", None, "x:y", registered=False)
    assert users.resources({"device": "cuda"}).num_gpus == 1
    assert Resources(2, 1, 3 * GIB).describe() == "2 CPUs, 1 GPU, 3.0 GiB of memory"
