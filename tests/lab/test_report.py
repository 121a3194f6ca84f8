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


def test_the_detection_benchmark_scored_beside_the_store_gets_a_section(tmp_path):
    import json

    from goodhartlab.detect import synthetic_twins
    from goodhartlab.detect.synthetic import ENVIRONMENTS
    from goodhartlab.lab.detection import BenchLoaded, score_detectors, scores_document
    from goodhartlab.lab.detection_report import SCORES

    store_path = tmp_path / "results.sqlite"
    run_sweep([RunSpec(CURVES, "ok", "tests.lab.tasks:bestofn_task", {}, 0)], store_path, workers=1, progress=False)
    runs = {env.name: [run for pair in range(6) for run in synthetic_twins(env, pair)] for env in ENVIRONMENTS[:2]}
    outcomes = {}
    scores = score_detectors(runs, ["cusum_kl_slope", "entropy_collapse"], outcomes=outcomes)
    loaded = BenchLoaded(runs, {"Loopless-v0": 20})
    (tmp_path / SCORES).write_text(json.dumps(scores_document("v1 test", loaded, scores, outcomes)))
    page = build_report(store_path, tmp_path / "report.html").read_text()
    section = page[page.index("<h2 id='detection'>"):]
    assert section.count("<svg") == 2  # ROC curves and lead times
    assert "cusum_kl_slope" in section and "heuristic baseline" in section
    assert "<td>Loopless-v0</td><td>0</td><td>0</td><td>20</td>" in section  # left out, still listed
    (tmp_path / SCORES).write_text("{")
    page = build_report(store_path, tmp_path / "report.html").read_text()
    assert "could not be read" in page  # a damaged scores file is named, the rest of the report still built
