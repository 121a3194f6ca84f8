"""Fixtures shared across the suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a shared machine threads contend badly
    (a tiny GRPO run: 1.2 s on one thread, 14 s on two while another process used the cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def in_a_scratch_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that write into the working directory by default (`goodhartlab fit`'s plot) write into the
    test's own folder, never into the checkout."""
    monkeypatch.chdir(tmp_path)
