"""The report: built from the store alone, whatever a run left out."""

from goodhartlab.lab.report import build_report
from goodhartlab.lab.runner import RunSpec, run_sweep
from goodhartlab.lab.store import StudyInfo

CURVES, SWEEP = StudyInfo("curves", "Curves"), StudyInfo("sweep", "A sweep without gold")


def test_a_run_without_gold_is_named_in_the_report_and_the_other_studies_are_drawn(tmp_path):
    store_path = tmp_path / "results.sqlite"
    runs = [RunSpec(CURVES, "ok", "tests.lab.tasks:bestofn_task", {}, seed) for seed in (0, 1)]
    runs.append(RunSpec(SWEEP, "cartpole", "tests.lab.tasks:no_gold_task", {}, 0))
    run_sweep(runs, store_path, workers=1, progress=False)
    page = build_report(store_path, tmp_path / "report.html").read_text()
    assert page.count("<svg") == 1  # the study with gold is drawn
    assert "proxy vs true, cartpole: no curve (no point has gold" in page
    assert not list(tmp_path.glob("*.partial"))
