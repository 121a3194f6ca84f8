"""Labelled runs: the ground-truth onset rule, storage, the run-log reader, and what each access level sees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from goodhartlab.detect import Access, LabelledRun, gold_onset, load_runs, save_runs, synthetic_twins
from goodhartlab.detect.runs import ONSET_RULE, gold_noise, run_log_stream
from goodhartlab.detect.synthetic import ENVIRONMENTS, SyntheticEnvironment
from goodhartlab.measure.runlog import read_run_log


def test_the_onset_rule_finds_a_planted_fall_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    steps = np.arange(100.0)
    proxy = 0.02 * steps
    gold = np.minimum(steps, 60) * 0.02 - 0.05 * np.clip(steps - 60, 0, None) + 0.01 * rng.standard_normal(100)
    onset = gold_onset(steps, proxy, gold)
    assert onset is not None and 60 < onset <= 65
    flat = 1.0 + 0.01 * rng.standard_normal(100)
    assert gold_onset(steps, proxy, flat) is None  # a plateau's noise is no onset
    assert gold_onset(steps, -proxy, gold) is None  # gold fell, but so did the proxy: not hacking


def test_the_onset_rule_needs_the_fall_to_persist():
    steps = np.arange(40.0)
    gold = 0.02 * steps + 0.001 * np.sin(steps)
    gold[25] -= 1.0  # one bad evaluation
    assert gold_onset(steps, steps, gold) is None


def test_gold_noise_comes_from_the_early_gold():
    rng = np.random.default_rng(1)
    gold = np.r_[np.linspace(0, 1, 50) + 0.05 * rng.standard_normal(50), np.linspace(1, -5, 50)]
    assert gold_noise(gold) == pytest.approx(0.05, rel=0.3)
    assert math.isnan(gold_noise(gold[:8]))


def test_the_onset_rule_recovers_planted_onsets_in_synthetic_runs():
    delays, false_onsets = [], 0
    for env in ENVIRONMENTS:
        for pair in range(10):
            hacked, healthy = synthetic_twins(env, pair)
            assert hacked.onset is not None and hacked.onset.rule == ONSET_RULE
            delays.append(hacked.onset.index - hacked.metadata["planted_onset_index"])
            false_onsets += gold_onset(healthy.step, healthy.proxy, healthy.gold) is not None
    assert 0 <= np.median(delays) <= 15 and min(delays) >= 0
    assert false_onsets <= 1  # of 40 healthy twins: a long plateau's running peak sits high, rarely enough


def test_runs_survive_a_round_trip_through_json(tmp_path):
    hacked, healthy = synthetic_twins(ENVIRONMENTS[0], 0, samples=True)
    sparse = hacked.restricted(Access.L3, gold_every=5)
    path = save_runs(tmp_path / "runs.jsonl", [sparse, healthy])
    loaded = load_runs(path)
    assert [run.run_id for run in loaded] == [hacked.run_id, healthy.run_id]
    again = loaded[0]
    np.testing.assert_array_equal(again.gold, sparse.gold)  # NaN where gold was not evaluated, kept as NaN
    assert again.onset == hacked.onset and again.twin == healthy.run_id and again.source == "synthetic"
    np.testing.assert_allclose(again.embeddings[3], hacked.embeddings[3])
    np.testing.assert_allclose(again.ensemble_scores, hacked.ensemble_scores)
    assert again.metadata == hacked.metadata
    (tmp_path / "bad.jsonl").write_text('{"schema": 1, "run_id": "x"}\n')
    with pytest.raises(ValueError, match="line 1: not a labelled run"):
        load_runs(tmp_path / "bad.jsonl")


def test_a_run_log_becomes_a_labelled_run_with_its_onset(tmp_path):
    steps = np.arange(60)
    gold = np.minimum(steps, 30) * 0.05 - 0.1 * np.clip(steps - 30, 0, None) + 0.01 * np.sin(7 * steps)
    lines = ["step,kl,proxy,gold,length"]
    lines += [f"{s},{0.3 * s:.3f},{0.04 * s:.3f},{'' if s % 2 else f'{g:.4f}'},{100 + s}"
              for s, g in zip(steps, gold, strict=True)]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    run = LabelledRun.from_run_log(read_run_log(path), run_id="mine", environment="my-task", label="hacked",
                                   entropy=np.linspace(2, 1, 60))
    assert run.onset is not None and 30 < run.onset.index <= 40 and run.onset.index % 2 == 0  # a gold row
    assert run.signals == {"kl", "proxy", "gold", "length", "entropy"}
    assert np.isnan(run.gold[1]) and run.rows()[1].gold is None
    context, rows = run_log_stream(read_run_log(path), gold_every=10)
    assert context.signals == {"kl", "proxy", "gold", "length"} and len(rows) == 60
    assert [row.step for row in rows if row.gold is not None] == [0, 10, 20, 30, 40, 50]


def test_a_run_refuses_infinite_values_and_wrong_shapes():
    good = dict(run_id="r", environment="e", label="healthy", step=[0, 1], kl=[0, 1], proxy=[0, 1], gold=[0, 1])
    with pytest.raises(ValueError, match=r"proxy\[1\] is inf"):
        LabelledRun(**{**good, "proxy": [0, math.inf]})
    with pytest.raises(ValueError, match="one value per row"):
        LabelledRun(**{**good, "kl": [0, 1, 2]})
    with pytest.raises(ValueError, match="only a hacked run has an onset"):
        LabelledRun(**good).with_rule_onset()
    with pytest.raises(ValueError, match="label"):
        LabelledRun(**{**good, "label": "suspicious"})


def test_each_access_level_sees_only_its_signals():
    hacked, _ = synthetic_twins(ENVIRONMENTS[0], 0, samples=True)
    l0 = hacked.restricted("L0")
    assert l0.signals == {"kl", "proxy", "length", "entropy", "ensemble_scores"}
    assert l0.reference_embeddings is None and l0.onset == hacked.onset  # labels stay; they are never an input
    assert hacked.restricted(Access.L1).signals == l0.signals | {"distinct_n", "embeddings"}
    assert hacked.restricted(2).signals == l0.signals | {"distinct_n", "embeddings", "policy_probs", "trusted_probs"}
    budget = hacked.restricted("L3", gold_every=20)
    assert np.flatnonzero(~np.isnan(budget.gold)).tolist() == list(range(0, len(hacked), 20))
    assert hacked.restricted("L3") is hacked
    with pytest.raises(ValueError, match="not one of L0"):
        hacked.restricted("L4")


def test_synthetic_twins_are_seeded_and_identical_until_the_planted_onset():
    env = SyntheticEnvironment("check", side_signal_rate=1.0)
    hacked, healthy = synthetic_twins(env, 3, samples=True)
    again, _ = synthetic_twins(env, 3, samples=True)
    np.testing.assert_array_equal(hacked.proxy, again.proxy)
    before = hacked.metadata["planted_onset_index"] - 1
    for name in ("kl", "proxy", "gold", "length", "entropy", "distinct_n"):
        np.testing.assert_array_equal(getattr(hacked, name)[:before], getattr(healthy, name)[:before])
        assert not np.array_equal(getattr(hacked, name), getattr(healthy, name))
    np.testing.assert_array_equal(hacked.policy_probs[before], healthy.policy_probs[before])
    assert hacked.source == healthy.source == "synthetic"
    assert hacked.twin == healthy.run_id and healthy.twin == hacked.run_id
    assert set(hacked.metadata["side_signals"]) == {"length", "entropy", "kl", "ensemble", "embeddings", "policy"}
