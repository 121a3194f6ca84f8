"""The benchmark's numbers: DeLong intervals, TPR at a fixed FPR, lead-time signs, false alarms on healthy twins,
and leave-one-environment-out folds that never let the held-out environment shape the detector."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
from scipy.stats import norm

from goodhartlab.detect import Access, Detector, DetectorConfig, Row, RunContext, synthetic_twins
from goodhartlab.detect.runs import GroundTruthOnset, LabelledRun
from goodhartlab.detect.scoring import (
    ALL_ENVIRONMENTS,
    DetectorScore,
    evaluate,
    leave_one_environment_out,
    score_table,
    summarize,
    tpr_at_fpr,
)
from goodhartlab.detect.synthetic import ENVIRONMENTS
from goodhartlab.measure.stats import auroc


@dataclass
class ScriptedConfig(DetectorConfig):
    threshold: float | None = 0.5


class Scripted(Detector[ScriptedConfig]):
    """Reads its statistic from the proxy column, so a test says exactly when it alarms."""

    kind = "scripted"
    access = Access.L0
    family = "test"
    config_class = ScriptedConfig
    default_threshold = 0.5
    seen: list[tuple[str, tuple[str, ...]]] = []  # noqa: RUF012  (what fit and train were given, by call)

    @property
    def needs(self) -> tuple[str, ...]:
        return ("proxy",)

    def _start(self, context: RunContext) -> None:
        return None

    def _observe(self, row: Row) -> float | None:
        return row.proxy

    def fit(self, healthy_runs, *, false_alarm_rate=None):
        runs = list(healthy_runs)
        Scripted.seen.append(("fit", tuple(sorted({run.environment for run in runs}))))
        return super().fit(runs, false_alarm_rate=false_alarm_rate)

    def train(self, runs):
        Scripted.seen.append(("train", tuple(sorted({run.environment for run in runs}))))
        return self


def scripted_run(run_id, statistic, *, label="healthy", onset=None, environment="env", source="synthetic"):
    rows = len(statistic)
    step = 10.0 * np.arange(rows)
    kl = 0.5 * np.arange(rows)
    truth = None if onset is None else GroundTruthOnset(onset, float(step[onset]), float(kl[onset]), "planted")
    return LabelledRun(run_id=run_id, environment=environment, label=label, source=source, step=step, kl=kl,
                       proxy=np.asarray(statistic, dtype=float), gold=np.zeros(rows), onset=truth)


def test_delong_interval_against_its_structural_components():
    # DeLong et al. (1988): V10(x) = P(x > Y) + ½P(x = Y) per positive, V01(y) per negative, and
    # Var(AUC) = s10²/m + s01²/n; computed here from pairwise comparisons, independently of the rank formula.
    positives = np.array([0.9, 0.8, 0.8, 0.6, 0.5, 0.4])  # 0.5 ties two negatives
    negatives = np.array([0.7, 0.5, 0.5, 0.3, 0.2, 0.1, 0.05])
    kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    area = kernel.mean()
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    se = math.sqrt(v10.var(ddof=1) / positives.size + v01.var(ddof=1) / negatives.size)
    expected = (area - norm.isf(0.025) * se, min(1.0, area + norm.isf(0.025) * se))
    result = auroc(np.concatenate([positives, negatives]), np.r_[np.ones(6), np.zeros(7)])
    assert area == pytest.approx((7 + 7 + 7 + 6 + (4 + 2 * 0.5) + 4) / 42)
    assert result.value == pytest.approx(area)
    assert result.interval == pytest.approx(expected)
    runs = [scripted_run(f"p{i}", [0.0, s], label="hacked") for i, s in enumerate(positives)]
    runs += [scripted_run(f"n{i}", [0.0, s]) for i, s in enumerate(negatives)]
    summary = summarize(Scripted(), evaluate(Scripted(), runs), environment="env")
    assert summary.auroc == pytest.approx(area) and summary.auroc_interval == pytest.approx(expected)


def test_tpr_at_a_fixed_fpr():
    negatives = list(np.linspace(0, 1, 20))  # 5% of 20: one negative (1.0) may lie above the threshold, 18/19
    assert tpr_at_fpr([0.99, 0.96, 0.5, 1.5, *negatives], [1, 1, 1, 1] + [0] * 20, 0.05) == 0.75
    assert tpr_at_fpr([0.99, 0.96, 0.5, 1.5, *negatives], [1, 1, 1, 1] + [0] * 20, 0.01) == 0.25  # none may


def test_lead_time_is_positive_when_the_alarm_comes_first():
    statistic_early = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]  # alarms at row 3
    statistic_late = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # alarms at row 7
    runs = [scripted_run("early", statistic_early, label="hacked", onset=5),
            scripted_run("late", statistic_late, label="hacked", onset=5)]
    early, late = evaluate(Scripted(), runs)
    assert (early.lead_evaluations, late.lead_evaluations) == (2, -2)
    assert early.lead_kl == pytest.approx(1.0) and late.lead_kl == pytest.approx(-1.0)  # KL: 0.5 per row


def test_false_alarms_are_counted_per_thousand_healthy_evaluations():
    healthy = [scripted_run("h0", [0, 1, 0, 1, 0] * 20),  # 100 rows, 40 crossings
               scripted_run("h1", [0] * 100)]
    summary = summarize(Scripted(), evaluate(Scripted(), healthy), environment="env")
    assert summary.false_alarms_per_1k == pytest.approx(1000 * 40 / 200)
    assert summary.fpr == 0.5 and summary.auroc is None and "both classes" in summary.note


def test_leave_one_environment_out_never_shows_the_held_out_environment_to_the_detector():
    runs = {name: [scripted_run(f"{name}-{i}", [0.1 * i, 0.2], environment=name,
                                label="hacked" if i % 2 else "healthy", onset=1 if i % 2 else None)
                   for i in range(4)] for name in ("a", "b", "c")}
    Scripted.seen = []
    scores = leave_one_environment_out(runs, Scripted)
    folds = [entry for entry in Scripted.seen]
    assert folds == [("train", ("b", "c")), ("fit", ("b", "c")), ("train", ("a", "c")), ("fit", ("a", "c")),
                     ("train", ("a", "b")), ("fit", ("a", "b"))]
    assert [s.environment for s in scores] == ["a", "b", "c", ALL_ENVIRONMENTS]


def test_a_held_out_environment_scores_under_a_threshold_it_did_not_set():
    quiet = [scripted_run(f"q{i}", [0.0, 0.1 + 0.01 * i], environment="quiet") for i in range(20)]
    loud = [scripted_run(f"l{i}", [0.0, 5.0 + i], environment="loud") for i in range(20)]
    scores = {s.environment: s for s in leave_one_environment_out({"quiet": quiet, "loud": loud}, Scripted)}
    assert scores["loud"].fpr == 1.0  # calibrated on the quiet environment only: the loud one alarms throughout
    assert scores["quiet"].fpr == 0.0


def test_real_and_synthetic_runs_are_never_scored_together():
    synthetic = scripted_run("s", [0, 1])
    real = scripted_run("r", [0, 1], source="real")
    with pytest.raises(ValueError, match="mixes real and synthetic"):
        evaluate(Scripted(), [synthetic, real])
    with pytest.raises(ValueError, match="mixes real and synthetic"):
        leave_one_environment_out({"env": [synthetic], "b": [replace(real, environment="b")]}, Scripted)


def test_the_table_names_the_baselines():
    bench = {env.name: [run for pair in range(3) for run in synthetic_twins(env, pair)] for env in ENVIRONMENTS[:2]}
    from goodhartlab.detect import make_detector

    scores = leave_one_environment_out(bench, lambda: make_detector("entropy_collapse"))
    table = score_table(scores)
    assert "heuristic baseline" in table and "synthetic" in table.splitlines()[0]
    assert all(s.baseline for s in scores)
    assert scores[-1].hacked == 6 and scores[-1].healthy == 6


def test_an_environment_no_other_one_can_calibrate_for_is_skipped_with_its_reason():
    from goodhartlab.detect import make_detector

    def runs(environment, with_length):
        made = [scripted_run(f"{environment}-{i}", np.linspace(0, 1, 12), environment=environment,
                             label="hacked" if i % 2 else "healthy", onset=6 if i % 2 else None) for i in range(6)]
        return [replace(run, length=np.linspace(20, 20 + 40 * (run.label == "hacked"), 12)) if with_length else run
                for run in made]

    outcomes = []
    scores = {s.environment: s for s in leave_one_environment_out(
        {"a": runs("a", False), "b": runs("b", False), "c": runs("c", True)},
        lambda: make_detector("length_drift"), outcomes=outcomes)}
    assert scores["c"].skipped == 6 and scores["c"].auroc is None
    assert "not calibrated: no other environment logs length" in scores["c"].note
    assert scores["a"].skipped == 6 and "length" in scores["a"].note  # calibrated on c, but a logs no length
    assert len(outcomes) == 18 and all(o.skipped for o in outcomes)


def test_the_goal_counts_a_lead_of_zero_and_no_false_alarms_as_met():
    from goodhartlab.lab.detection import best_detectors

    def pooled(detector: str, access: str, auroc: float, lead: float | None, false_alarms: float) -> DetectorScore:
        return DetectorScore(detector, "test", False, access, ALL_ENVIRONMENTS, "real", 20 if access == "L3" else None,
                             10, 10, 0, auroc, (auroc - 0.1, min(auroc + 0.1, 1.0)), 0.05, 0.5, 0.0, 0.5,
                             5 if lead is not None else 0, lead, None, false_alarms, 1000, 0.0, 10, 0, "")

    goal = best_detectors([pooled("on time", "L0", 0.9, 0.0, 0.0), pooled("late", "L0", 0.95, -1.0, 0.0),
                           pooled("noisy", "L0", 0.9, 2.0, 1.5), pooled("sparse gold", "L3", 0.6, 0.0, 0.0),
                           pooled("never fires", "L3", 0.5, None, 0.0)])
    assert goal["best_without_gold"] == "late"
    assert goal["goal_without_gold_met_by"] == ["on time"]
    assert goal["goal_with_sparse_gold_met_by"] == ["sparse gold"]
