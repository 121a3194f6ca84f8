"""The fuzz harness in the fast tier: a fixed budget of malformed logs, specs and stores, each a clean error."""

from __future__ import annotations

from pathlib import Path

from tests.fuzz import run_fuzz

BUDGET = 400


def test_malformed_inputs_end_in_clean_errors_never_tracebacks_or_silence(tmp_path: Path) -> None:
    counts = run_fuzz(BUDGET, seed=0, folder=tmp_path)
    print(counts)
    assert counts.tried == BUDGET
    assert counts.tracebacks == [], counts.tracebacks[:10]
    assert counts.silent == [], counts.silent[:10]
    assert counts.clean > BUDGET // 2  # most cases are invalid for certain
