"""The mitigation frontier: every reward-model method on the same pairs and best-of-n pools, and its table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from goodhartlab.cli import main
from goodhartlab.config import ConfigError, parse_config
from goodhartlab.text.mitigation import (
    FRONTIER_METHODS,
    MitigationConfig,
    draw_pairs,
    frontier_table,
    mitigation_study,
    pool_accuracy,
)
from goodhartlab.text.tiny import tiny_backbone, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_TASK = "goodhartlab.text.tiny:ExclamationTask"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"policy": str(tiny_policy(tmp_path_factory.mktemp("policy"))),
            "backbone": str(tiny_backbone(tmp_path_factory.mktemp("backbone")))}


def tiny_frontier(models: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {"task": TINY_TASK, **models, "prompts": 3, "pool": 8, "max_new_tokens": 12, "train_prompts": 4,
            "train_pool": 8, "pairs": 24, "members": 2, "train_layers": 2, "epochs": 1, "max_length": 64, **overrides}


def test_every_method_selects_from_the_same_pools_and_repeats_with_its_seed(models: dict[str, str]) -> None:
    cfg = parse_config(MitigationConfig, tiny_frontier(models))
    result = mitigation_study(cfg, 0)
    methods = result.summary["methods"]
    assert list(result.curves) == list(methods) == list(FRONTIER_METHODS)
    ns = result.summary["ns"]
    assert ns == [1, 2, 4, 8]
    first_points = {round(float(np.mean(np.asarray(row["gold_per_prompt"])[:, 0])), 12) for row in methods.values()}
    assert len(first_points) == 1  # best-of-1 is the pool's mean gold, whichever reward model ranks it
    for name, curve in result.curves.items():
        assert curve.pressure[0] == 0.0 and len(curve.gold) == len(ns)
        assert np.all(np.diff(curve.proxy) >= -1e-9), name  # best-of-n never lowers its own proxy
        assert 0.0 <= methods[name]["pool_accuracy"] <= 1.0
    # one trained ensemble, three objectives: the same training and scoring time
    assert len({methods[f"ensemble-{a}"]["train_seconds"] for a in ("mean", "worst", "uncertainty")}) == 1
    again = mitigation_study(cfg, 0).summary["methods"]
    assert [again[m]["gold_per_prompt"] for m in methods] == [methods[m]["gold_per_prompt"] for m in methods]
    other = mitigation_study(cfg, 1).summary["methods"]
    assert other["bt"]["proxy"] != methods["bt"]["proxy"]  # another draw of pairs and heads


def summary_with(drops: dict[str, float], draws_noise: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """A run's summary whose methods' gold rises by 0.3 to n = 4 on every prompt, then falls by their drop."""
    rng = np.random.default_rng(seed)
    methods = {}
    for name, drop in drops.items():
        curve = np.array([0.4, 0.55, 0.7, 0.7 - drop])
        per_prompt = curve + rng.normal(0, draws_noise, (5, 4)) if draws_noise else np.tile(curve, (5, 1))
        methods[name] = {"gold_per_prompt": per_prompt.tolist(), "proxy": [0.0, 0.5, 1.0, 1.5],
                         "words": [30.0, 31.0, 32.0, 33.0], "pool_accuracy": 0.7, "train_seconds": 10.0,
                         "score_seconds": 2.0}
    return {"ns": [1, 2, 4, 8], "pool_answers": 40, "pool_gold_sd": 0.3, "methods": methods}


def test_the_frontier_table_pairs_each_drop_with_the_baselines() -> None:
    rows = {row.method: row for row in frontier_table([summary_with({"bt": 0.2, "ensemble-worst": 0.05,
                                                                     "warm": 0.0})] * 3)}
    bt, worst, warm = rows["bt"], rows["ensemble-worst"], rows["warm"]
    assert bt.peak_n == 4 and bt.peak_kl == pytest.approx(np.log(4) - 3 / 4)
    assert bt.drop == pytest.approx((0.2, 0.2, 0.2)) and bt.reduction is None
    assert bt.gold_at_peak[0] == pytest.approx(0.7) and bt.gold_at_last[0] == pytest.approx(0.5)
    assert worst.reduction == pytest.approx((0.75, 0.75, 0.75)) and bt.gain is None
    assert worst.gain == pytest.approx((0.15, 0.15, 0.15))  # 0.65 against BT's 0.5 at n = 8, on every prompt
    # a flat top ending at the largest n is no fall: its peak is the largest n, as in best-of-n studies
    assert warm.peak_n == 8 and warm.drop == (0.0, 0.0, 0.0) and warm.reduction[0] == pytest.approx(1.0)
    # proxy rose 1.5 SD from n = 1; gold rose 0.1 over a pool SD of 0.3
    assert bt.gap == pytest.approx(1.5 - 0.1 / 0.3)
    assert bt.score_seconds_per_1000 == pytest.approx(50.0)
    noisy = {row.method: row for row in frontier_table([summary_with({"bt": 0.2, "grm": 0.1}, 0.05, s)
                                                         for s in range(3)])}
    low, high = noisy["grm"].reduction[1:]
    assert low < noisy["grm"].reduction[0] < high  # the interval resamples draws and prompts
    flat = {row.method: row for row in frontier_table([summary_with({"bt": 0.0, "grm": 0.1}, 0.05, s)
                                                        for s in range(3)])}
    assert flat["bt"].drop[1] <= 0 and flat["grm"].reduction is None  # no fall of the baseline's to reduce
    with pytest.raises(ValueError, match="no runs"):
        frontier_table([])


def test_pool_accuracy_counts_gold_ordered_pairs_and_half_a_tie() -> None:
    gold = np.array([[0.1, 0.2, 0.3, 0.3]])  # the tied pair is not counted
    assert pool_accuracy(np.array([[1.0, 2.0, 3.0, 0.0]]), gold) == pytest.approx(3 / 5)
    assert pool_accuracy(gold * 7, gold) == 1.0
    assert pool_accuracy(np.zeros((1, 4)), gold) == 0.5


def test_pairs_that_say_nothing_are_passed_over() -> None:
    pools = [["good", "good", "", "fine"], ["a", "b", "c", "d"]]
    gold = np.array([[0.9, 0.1, 0.5, 0.5], [0.1, 0.2, 0.2, 0.4]])
    pairs = draw_pairs(["p", "q"], pools, gold, 5, np.random.default_rng(0))
    assert len(pairs) == len(set(pairs)) == 5
    flat = np.asarray(gold).ravel()
    texts = [text for pool in pools for text in pool]
    for chosen, rejected in pairs:
        assert flat[chosen] > flat[rejected] and texts[chosen] != texts[rejected] and texts[chosen] and texts[rejected]
        assert chosen // 4 == rejected // 4  # two answers to one prompt
    with pytest.raises(ConfigError, match="pairs is 8, but the training pools hold only 7"):
        draw_pairs(["p", "q"], pools, gold, 8, np.random.default_rng(0))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("pairs", 200, "pairs is 200, but train_prompts x C(train_pool, 2) = 112 comparisons exist"),
    ("members", 1, "members must be >= 2"),
    ("cap_quantile", 1.0, "cap_quantile must lie strictly between 0 and 1"),
    ("prompts", 0, "prompts must be >= 1"),
])
def test_bad_settings_are_refused_by_field(models: dict[str, str], field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(MitigationConfig, tiny_frontier(models, **{field: value}))


def test_a_spec_runs_every_draw_and_the_report_shows_the_frontier(models: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "frontier.yaml"
    spec.write_text(yaml.safe_dump({"study": "tiny-frontier", "title": "Tiny frontier", "kind": "mitigation",
                                    "seeds": 2, "config": tiny_frontier(models)}))
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet", "--allow-import"]) == 0
    report = (tmp_path / "out" / "report.html").read_text()
    assert "The frontier over 2 draw(s) of pairs" in report
    for label in ("Bradley–Terry", "ensemble of k, worst case", "WARM of k (weights averaged)"):
        assert label in report


def test_a_prompt_that_fills_max_length_is_refused_by_field(models: dict[str, str]) -> None:
    cfg = parse_config(MitigationConfig, tiny_frontier(models, max_length=8))  # the tiny task's openers are longer
    with pytest.raises(ConfigError, match="max_length is 8 tokens, which a prompt fills"):
        mitigation_study(cfg, 0)
