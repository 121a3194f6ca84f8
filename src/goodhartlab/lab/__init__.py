"""Experiments: the results store, the resumable runner, the studies and the HTML report."""

from goodhartlab.lab.report import build_report
from goodhartlab.lab.runner import RunSpec, SweepSummary, run_sweep
from goodhartlab.lab.store import CurvePoints, ResultsStore, RunResult

__all__ = ["CurvePoints", "ResultsStore", "RunResult", "RunSpec", "SweepSummary", "build_report",
           "run_sweep"]
