"""Atomic writes: a reader sees the old version or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goodhartlab.files import write_atomically


def test_a_folder_another_process_finished_first_is_kept_and_stale_staging_cleared(tmp_path: Path) -> None:
    target = tmp_path / "model"
    stale = tmp_path / "model.99999-1.partial"
    stale.mkdir()
    os.utime(stale, (0, 0))  # a staging folder of a process that died long ago

    def write_while_another_finishes(staged: Path) -> None:
        staged.mkdir()
        (staged / "config.json").write_text("mine")
        target.mkdir()  # the other process renamed its copy into place meanwhile
        (target / "config.json").write_text("theirs")

    write_atomically(target, write_while_another_finishes, keep_existing=True)
    assert (target / "config.json").read_text() == "theirs"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_a_file_is_replaced_whole_and_an_interrupted_write_leaves_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_atomically(target, lambda partial: partial.write_text("old"))
    assert target.read_text() == "old"

    def interrupted(partial: Path) -> None:
        partial.write_text("half of the n")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    write_atomically(target, lambda partial: partial.write_text("new"))
    assert target.read_text() == "new"
