"""GRPO against a reward-model mitigation: its config, one run on tiny models, and the table over seeds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.lab.spec import load_spec
from goodhartlab.text.mitigation_rl import (
    BLOCKS,
    RLMitigationConfig,
    rl_frontier_table,
    rl_frontier_tables,
    rl_mitigation_study,
)
from goodhartlab.text.tiny import tiny_backbone, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLE = Path(__file__).parents[2] / "examples" / "mitigation-rl.yaml"


def test_the_example_spec_compares_the_four_methods_on_the_same_runs() -> None:
    spec = load_spec(EXAMPLE)
    assert sorted({run.config.method for run in spec.runs}) == ["bt", "ensemble-uncertainty", "grm", "par(bt)"]
    assert {run.seed for run in spec.runs} == {0, 1}
    assert len({str(run.config.rl) for run in spec.runs}) == 1  # one GRPO setting: only the reward differs


@pytest.mark.parametrize(("values", "message"), [
    ({"rl": {"proxy": "vader"}}, "rl.proxy must be 'learned'"),
    ({"par_references": 0}, "par_references must be >= 1"),
    ({"par_k": 0}, "par_k must be > 0"),
    ({"reward_model": {"method": "ensemble", "members": 1}}, "reward_model.members must be >= 2"),
    ({"rl": {"proxy": "learned", "log_dir": "logs"}}, "rl.log_dir must be left out"),
    ({"rl": {"proxy": "learned", "steps": 64}}, "rl.steps is 64; the table reads the run in 6 equal blocks"),
    ({"rl": {"proxy": "learned", "steps": 30, "gold_every": 5}}, "at least 60 (gold_every 5)"),
    ({"par_k": 2.0}, "par_k is set, but it is read only with transform: par"),
])
def test_bad_settings_are_named(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(RLMitigationConfig, values)


def run_summary(gold: list[float], seed: int, method: str = "bt") -> dict[str, Any]:
    steps = len(gold)
    return {"method": method, "log": {"step": list(range(1, steps + 1)), "kl": list(np.linspace(0, 30, steps)),
                                      "proxy": list(np.linspace(0, 1, steps)), "gold": gold}}


def test_the_table_finds_a_planted_fall_and_no_fall_in_a_flat_run() -> None:
    rng = np.random.default_rng(0)
    steps = BLOCKS * 10
    rise_and_fall = np.concatenate([np.linspace(0.4, 0.8, steps // 2), np.linspace(0.8, 0.5, steps - steps // 2)])
    hacked = [run_summary(list(rise_and_fall + rng.normal(0, 0.03, steps)), seed) for seed in range(2)]
    row = rl_frontier_table(hacked)
    assert row.seeds == 2 and row.block_steps == 10
    assert row.peak_block in (2, 3) and row.drop[1] > 0.15  # the fall of 0.3 from the peak, its interval above 0
    assert row.drop[1] <= row.drop[0] <= row.drop[2]
    assert row.proxy_rise == pytest.approx(50 / 59)  # the block means of steps 51–60 less those of steps 1–10
    flat = [run_summary(list(0.6 + rng.normal(0, 0.03, steps)), seed) for seed in range(2)]
    flat_row = rl_frontier_table(flat)
    assert flat_row.drop[0] < 0.05  # the peak is picked after the fact, so a flat run's drop is small, not 0
    with pytest.raises(ValueError, match="blocks with at least 2 values each"):
        rl_frontier_table([run_summary([0.5] * (BLOCKS + 1), 0)])
    every_other = [[g if i % 2 == 0 else None for i, g in enumerate(run["log"]["gold"])] for run in hacked]
    sparse = [{**run, "log": {**run["log"], "gold": gold}} for run, gold in zip(hacked, every_other, strict=True)]
    sparse_row = rl_frontier_table(sparse)
    assert sparse_row.block_steps == 10 and np.isfinite(sparse_row.drop).all() and sparse_row.drop[1] > 0.1


@pytest.mark.slow
@pytest.mark.assets
def test_a_run_trains_its_reward_model_then_grpo_against_par_over_it(tmp_path: Path) -> None:
    policy, backbone = str(tiny_policy(tmp_path / "policy")), str(tiny_backbone(tmp_path / "backbone"))
    cfg = parse_config(RLMitigationConfig, {
        "rl": {"task": "sentiment", "proxy": "learned", "policy": policy, "prompts": 4, "train_prompts": 8,
               "train_pool": 2, "proxy_pairs": 6, "steps": 12, "num_generations": 2, "train_batch_size": 4,
               "max_completion_length": 8, "gold_every": 1},
        "reward_model": {"method": "ensemble", "members": 2, "backbone": backbone, "train_layers": 1, "epochs": 1,
                         "max_length": 48},
        "transform": "par", "par_references": 2})
    result = rl_mitigation_study(cfg, 0)
    summary = result.summary
    assert summary["method"] == "par(ensemble-uncertainty)" and summary["pairs"] == 6
    assert summary["proxy_scorer"].startswith("par-reward-model-ensemble")
    proxy = np.array(summary["log"]["proxy"], dtype=float)
    assert len(proxy) == 12 and np.all((proxy >= 0) & (proxy <= 1))  # PAR is a probability of beating a reference
    assert all(g is not None and 0 <= g <= 1 for g in summary["log"]["gold"])
    assert summary["config"]["reward_model"]["backbone"] == backbone
    ((_, header, (cells,)),) = rl_frontier_tables([summary])  # the report's table reads the run
    assert cells[:2] == ["par(ensemble-uncertainty)", "1"] and len(cells) == len(header)
