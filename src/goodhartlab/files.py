"""Writing files and folders so that an interruption never leaves half of one."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "GOODHARTLAB_CACHE"
STALE_STAGING_SECONDS = 600
"""A staging copy lives for seconds; one this old belongs to a process that died, and is removed."""


def cache_dir() -> Path:
    """Where goodhartlab keeps what it fetches or computes once (assets, pools, trusted policies):
    $GOODHARTLAB_CACHE, else ~/.cache/goodhartlab. A cluster can share one by pointing every node at it."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "goodhartlab")


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object], *,
                     keep_existing: bool = False) -> Path:
    """`write` fills a staging path of this process and thread, which then becomes `path` (a file or a
    folder) in one rename: a reader sees the old version or the new one, never half of one.

    By default the new version replaces the old. With `keep_existing`, a `path` that exists by the time
    the staging copy is ready is kept (two processes fetching the same asset: the first one's wins).
    Returns `path`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f"{glob.escape(target.name)}.*.partial"):  # left by a process that died
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_STAGING_SECONDS:
                remove(stale)
    staged = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.partial")
    remove(staged)
    try:
        write(staged)
        if keep_existing:
            try:
                staged.rename(target)
            except OSError:
                if not target.exists():
                    raise
        else:
            _replace(staged, target)
    finally:
        remove(staged)
    return target


def _replace(staged: Path, target: Path) -> None:
    """`staged` becomes `target`. A folder cannot be renamed over a folder that holds files, so the old one is
    moved aside first and removed after: a reader sees the old folder, then (for a moment) none, then the new."""
    try:
        staged.replace(target)
        return
    except OSError:
        if not (staged.is_dir() and target.is_dir() and not target.is_symlink()):
            raise
    old = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.old.partial")
    remove(old)
    target.rename(old)
    try:
        staged.rename(target)
    except BaseException:
        old.rename(target)
        raise
    remove(old)


def remove(path: Path) -> None:
    """Delete a file or a folder tree; nothing if it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
