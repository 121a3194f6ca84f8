"""GRPO with TRL as a study kind: the same code path on a tiny policy built from a config, then SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trl")

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.lab.runner import RunSpec
from goodhartlab.lab.spec import load_spec
from goodhartlab.lab.store import ResultsStore, StudyInfo
from goodhartlab.lab.study import run_studies
from goodhartlab.measure.runlog import read_run_log
from goodhartlab.text.grpo import GRPOStudyConfig, grpo_study
from goodhartlab.text.tiny import ExclamationTask, tiny_policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "text-rl.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_policy(tmp_path_factory.mktemp("tiny-policy")))


def tiny_config(policy: str, **overrides: Any) -> GRPOStudyConfig:
    return parse_config(GRPOStudyConfig, {
        "policy": policy, "task": "goodhartlab.text.tiny:ExclamationTask", "proxy": "exclamations", "steps": 30,
        "learning_rate": 5e-3, "max_completion_length": 16, "gold_every": 2, **overrides})


def test_grpo_study_shows_gold_rising_then_falling_while_the_proxy_climbs(policy: str, tmp_path: Path) -> None:
    result = grpo_study(tiny_config(policy, log_dir=str(tmp_path)), seed=0)
    curve = result.curves["grpo"]
    kl, proxy, gold = np.array(curve.pressure), np.array(curve.proxy), np.array(curve.gold, dtype=float)
    assert curve.pressure_kind == "kl" and np.all(np.diff(kl) > 0) and kl[0] == pytest.approx(0.0, abs=1e-6)
    log = result.summary["log"]
    gold_kl = {k for k, g in zip(log["kl"], log["gold"], strict=True) if g is not None}
    assert len(kl) == len(gold_kl)  # one point per distinct KL of a gold-evaluated step
    peak = int(np.argmax(gold))
    assert 0 < peak < len(gold) - 1  # gold rises first, then falls
    assert gold[-1] < gold[peak] - 1.0 and proxy[-1] > proxy[peak] + 3.0  # ... while the proxy keeps climbing

    summary = result.summary
    assert summary["rows"] == 30 and summary["gold_rows"] == 16 and summary["config"]["steps"] == 30
    assert summary["proxy_scorer"] == "exclamations 1" and summary["gold_scorer"] == "exclamations-capped 1"
    assert len(summary["samples"]) == 2 * 16  # two completions of each batch gold scored, kept with their gold
    assert {sample["step"] for sample in summary["samples"]} == {s for s, g in zip(log["step"], log["gold"],
                                                                                  strict=True) if g is not None}
    fit = summary["fit"]
    assert fit["form"] == "rl" and fit["points"] == len(kl)
    assert fit["peak_kl"] is not None and 0 < fit["peak_kl"] < kl[-1]  # the law places a peak inside the run
    (folder,) = tmp_path.glob("grpo-exclamations-*")  # the run log is kept where log_dir says, in its run's folder
    log = read_run_log(folder / "seed-0" / "runlog.jsonl")
    assert len(log) == 30 and log.has_gold.sum() == 16
    assert json.loads((folder / "config.json").read_text())["steps"] == 30


def test_grpo_study_with_rloo_runs_the_same_path(policy: str) -> None:
    result = grpo_study(tiny_config(policy, trainer="rloo", steps=4, gold_every=1), seed=1)
    points = result.curves["rloo"]
    # four logged steps; RLOO's k1 KL can dip below 0 near the reference, stored at 0, where equal levels average
    assert 3 <= len(points.pressure) <= 4 and min(points.pressure) >= 0 and all(g is not None for g in points.gold)
    assert result.summary["kl_source"].startswith("kl (nats_per_token) ×")


def test_grpo_study_runs_through_the_runner_into_the_report(policy: str, tmp_path: Path) -> None:
    spec = RunSpec(StudyInfo("rl-tiny", "RL on a tiny policy"), "grpo, tiny policy", "grpo",
                   tiny_config(policy, steps=6))
    done = run_studies([spec], tmp_path, workers=1, progress=False)
    assert done.sweep.ran == 1 and len(done.results[spec.run_id].curves["grpo"].pressure) == 4  # steps 1, 2, 4, 6
    with ResultsStore(done.store) as store:
        (run,) = store.runs("rl-tiny")
        assert len(store.points(run.run_id)["grpo"].pressure) == 4
        assert run.summary["rows"] == 6
    assert "RL on a tiny policy" in done.report.read_text()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("beta", 0.0, "beta must be > 0"), ("train_batch_size", 6, "multiple of num_generations"),
    ("num_generations", 1, "num_generations must be >= 2"), ("trainer", "ppo", "trainer must be one of 'grpo', 'rloo'"),
    ("task", "poetry", "unknown task 'poetry'"), ("task", "no_such_module:Task", "cannot load task"),
    ("proxy", "bleu", "proxy 'bleu' is not one of"), ("gold_every", 0, "gold_every must be >= 1"),
    ("proxy_pairs", 1024, r"prompts \(64\) \+ train_prompts \(1024: one per pair\) = 1088 is more than"),
    ("train_pool", 1, "train_pool must be >= 2")])
def test_bad_config_is_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config(GRPOStudyConfig, {"proxy": "learned" if field in ("proxy_pairs", "train_pool") else "vader",
                                       field: value})


@pytest.mark.parametrize(("field", "value"), [("max_completion_length", -5), ("prompts", 0)])
def test_with_the_learned_proxy_errors_still_name_the_rl_field(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"^{field} must be >= 1") as error:
        GRPOStudyConfig(proxy="learned", **{field: value})  # type: ignore[arg-type]
    assert error.value.field == field


def test_variants_sharing_a_log_dir_keep_their_logs_apart(tmp_path: Path) -> None:
    first = GRPOStudyConfig(proxy="vader", log_dir=str(tmp_path)).run_folder()
    second = GRPOStudyConfig(proxy="vader", beta=0.1, log_dir=str(tmp_path)).run_folder()
    assert first != second and first == GRPOStudyConfig(proxy="vader", log_dir=str(tmp_path)).run_folder()
    assert json.loads((second / "config.json").read_text())["beta"] == 0.1


def test_the_learned_proxy_needs_a_task_with_a_gold_it_knows() -> None:
    with pytest.raises(ValueError, match="'learned' is trained on a built-in task's gold"):
        GRPOStudyConfig(task="goodhartlab.text.tiny:ExclamationTask", proxy="learned")
    assert GRPOStudyConfig(proxy="learned", proxy_pairs=1016).learned_proxy_config().training_prompts == 1016


def test_exclamation_task_scores_and_prompts() -> None:
    task = ExclamationTask()
    prompts = task.prompts(20, seed=3)
    assert len(prompts) == 20 and set(prompts) <= set(task.openers) and prompts == task.prompts(20, seed=3)
    responses = ["", " wow!", " wow!!", " wow!!!!"]
    np.testing.assert_array_equal(task.proxy("exclamations").score(prompts[:4], responses), [0, 1, 2, 4])
    np.testing.assert_array_equal(task.gold().score(prompts[:4], responses), [0, 1, 2, 1])
    with pytest.raises(ValueError, match="unknown proxy 'vader' for the exclamation task"):
        task.proxy("vader")


def test_example_spec_config_is_valid() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.kind.name == "grpo" and all(run.config.beta > 0 for run in spec.runs)


@pytest.mark.slow
@pytest.mark.assets
def test_grpo_study_on_smollm2_with_the_sentiment_task() -> None:
    result = grpo_study(GRPOStudyConfig(proxy="vader", prompts=8, steps=3, gold_every=1, max_completion_length=12),
                        seed=0)
    points = result.curves["grpo"]
    assert len(points.pressure) == 3 and all(0.0 <= g <= 1.0 for g in points.gold if g is not None)
    assert points.pressure[0] == pytest.approx(0.0, abs=1e-4) and all(k >= 0 for k in points.pressure)
    assert all(-1.0 <= p <= 1.0 for p in points.proxy)  # VADER's compound score
    assert result.summary["proxy_scorer"] == "vader 3.3.2" and result.summary["rows"] == 3


@pytest.mark.slow
@pytest.mark.assets
def test_rl_against_the_learned_proxy_optimizes_the_best_of_n_studys_reward_model() -> None:
    from goodhartlab.text.learned_proxy import fit_head, learned_proxy, split_prompts
    from goodhartlab.text.pools import PoolSampler
    from goodhartlab.text.tasks import resolve_task

    config = GRPOStudyConfig(proxy="learned", prompts=4, steps=2, gold_every=1, max_completion_length=8, proxy_pairs=6,
                             train_prompts=4, train_pool=3)
    result = grpo_study(config, seed=0)
    assert result.summary["proxy_scorer"] == "learned bradley-terry on policy features (6 pairs)"
    assert len(result.curves["grpo"].pressure) == 2 and all(np.isfinite(result.curves["grpo"].proxy))
    # the reward RL optimized reads text as the study's cached features do: the head fitted on
    # the same draw of pairs, scoring the training responses afresh, in other batches
    cfg = config.learned_proxy_config()
    sampler = PoolSampler(cfg.sampling())
    task = resolve_task("sentiment")
    train_prompts = split_prompts(cfg, task, sampler, 0)[1]
    features = sampler.features(train_prompts, 3, 1)
    head = fit_head(cfg, features, sampler.scores(task.gold(), train_prompts, 3, 1), np.random.default_rng(0))
    responses = sampler.pools(train_prompts, 3, 1)
    fresh = learned_proxy(cfg, 0).score([p for p in train_prompts for _ in range(3)],
                                        [r for pool in responses for r in pool])
    cached = head.reward(features).ravel()
    assert np.corrcoef(fresh, cached)[0, 1] > 0.99
    np.testing.assert_allclose(fresh, cached, atol=0.05 * np.abs(cached).max())
