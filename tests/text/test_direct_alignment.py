"""Direct alignment on a policy: the KL estimate against an exact enumeration, the win rate and length R²,
and the whole study (TRL's DPOTrainer, each loss) on a tiny model built from a config."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.lab.report import build_report
from goodhartlab.lab.spec import load_spec
from goodhartlab.lab.store import ResultsStore, StudyInfo
from goodhartlab.measure.kl import sequence_kl
from goodhartlab.results import RunResult
from goodhartlab.rewards.scorer import Scorer
from goodhartlab.text.direct_alignment import (
    KL_CURVE,
    WIN_RATE_CURVE,
    DirectAlignmentConfig,
    checkpoint_steps,
    direct_alignment_study,
    r_squared,
    sample_responses,
    sequence_log_probs,
    win_rate,
)
from goodhartlab.text.tiny import ExclamationCount, ExclamationTask, tiny_policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "text-dpo.yaml"
EOS = 1  # the tiny policy's <eos>


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_policy(tmp_path_factory.mktemp("tiny-policy"))


def tiny_model(policy_dir: Path) -> tuple[Any, Any]:
    from goodhartlab.text.models import load_policy

    return load_policy(str(policy_dir))


pytestmark = pytest.mark.usefixtures("one_thread")


def run_tiny(config: dict[str, Any], seed: int, task: str = "goodhartlab.text.tiny:ExclamationTask") -> RunResult:
    """The study on the exclamation task (or a test task of this module, whose proxy misbehaves)."""
    return direct_alignment_study(parse_config(DirectAlignmentConfig,
                                               {"task": task, "proxy": "exclamations", **config}), seed)


class BrokenProxy(ExclamationCount):
    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        scores = super().score(prompts, responses)
        scores[1] = np.nan
        return scores


class Flat(ExclamationCount):
    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.zeros(len(responses))


class BrokenProxyTask(ExclamationTask):
    def proxy(self, name: str) -> Scorer:
        return BrokenProxy()


class FlatProxyTask(ExclamationTask):
    def proxy(self, name: str) -> Scorer:
        return Flat()


def exact_kl(policy: Any, reference: Any, prompt_ids: list[int]) -> tuple[float, float]:
    """KL(policy ‖ reference) over every response of at most two tokens (EOS ends one early), by
    enumeration with unpadded forward passes; also the exact mean response length."""
    import torch

    vocab = policy.config.vocab_size
    with torch.no_grad():
        first_p = torch.log_softmax(policy(torch.tensor([prompt_ids])).logits[0, -1], -1)
        first_q = torch.log_softmax(reference(torch.tensor([prompt_ids])).logits[0, -1], -1)
        continuing = [t for t in range(vocab) if t != EOS]
        ids = torch.tensor([[*prompt_ids, t] for t in continuing])
        second_p = torch.log_softmax(policy(ids).logits[:, -1], -1)
        second_q = torch.log_softmax(reference(ids).logits[:, -1], -1)
    kl_first = float((first_p.exp() * (first_p - first_q)).sum())
    kl_second = (second_p.exp() * (second_p - second_q)).sum(-1)
    weights = first_p.exp()[continuing]
    kl = kl_first + float((weights * kl_second).sum())
    length = 1.0 + float(weights.sum())
    return kl, length


def test_sequence_kl_of_left_padded_samples_matches_exact_enumeration(tmp_path: Path) -> None:
    import torch

    policy, tokenizer = tiny_model(tiny_policy(tmp_path, seed=1))
    reference = copy.deepcopy(policy)
    with torch.no_grad():  # a reference that differs from the policy by a known-small amount
        generator = torch.Generator().manual_seed(2)
        head = reference.lm_head.weight
        head.add_(0.6 * torch.randn(head.shape, generator=generator))
    prompts = ["a", "the room was", "we"]  # different lengths, so sampling batches are left-padded
    samples = sample_responses(policy, tokenizer, prompts, 700, max_new_tokens=2, batch_size=300, seed=3)
    kl = np.concatenate([sequence_kl(sequence_log_probs(policy, *batch), sequence_log_probs(reference, *batch),
                                     batch[2][:, 1:].numpy()) for batch in samples.batches])
    index = np.array(samples.prompt_index)
    for i, prompt in enumerate(prompts):
        exact, exact_length = exact_kl(policy, reference, tokenizer(prompt)["input_ids"])
        estimate = kl[index == i]
        se = estimate.std(ddof=1) / math.sqrt(estimate.size)
        assert exact > 0.05
        assert abs(estimate.mean() - exact) < 4 * se, (prompt, estimate.mean(), exact, se)
        lengths = samples.lengths[index == i]
        assert abs(lengths.mean() - exact_length) < 4 * lengths.std(ddof=1) / math.sqrt(lengths.size) + 1e-9
    assert set(samples.lengths.tolist()) <= {1, 2}
    # a sample that ended with EOS is decoded without it
    assert all("<eos>" not in text for text in samples.texts)


def test_same_policy_has_zero_kl_and_samples_repeat_with_the_seed(policy_dir: Path) -> None:
    policy, tokenizer = tiny_model(policy_dir)
    prompts = list(ExclamationTask().openers[:3])
    first = sample_responses(policy, tokenizer, prompts, 4, max_new_tokens=6, batch_size=5, seed=7)
    again = sample_responses(policy, tokenizer, prompts, 4, max_new_tokens=6, batch_size=5, seed=7)
    assert first.texts == again.texts and len(first.texts) == 12
    for batch in first.batches:
        logps = sequence_log_probs(policy, *batch)
        assert np.all(logps <= 0) and np.all(logps[batch[2][:, 1:].numpy() == 0] == 0)
        np.testing.assert_allclose(sequence_kl(logps, logps, batch[2][:, 1:].numpy()), 0.0)


def test_win_rate_counts_every_pair_within_a_prompt_and_ties_as_half() -> None:
    rate, se = win_rate(np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 1.0]]))
    # prompt 0: tie, win, win, win = 3.5/4; prompt 1: four losses
    assert rate == pytest.approx((3.5 / 4 + 0.0) / 2)
    assert se == pytest.approx(np.std([0.875, 0.0], ddof=1) / math.sqrt(2))
    assert win_rate(np.ones((3, 2)), np.ones((3, 2)))[0] == 0.5
    with pytest.raises(ValueError, match="same prompts"):
        win_rate(np.ones((3, 2)), np.ones((4, 2)))


def test_r_squared() -> None:
    x = np.arange(10.0)
    assert r_squared(x, 3 * x - 1) == pytest.approx(1.0)
    assert r_squared(x, np.zeros(10)) is None and r_squared(np.ones(10), x) is None
    noisy = r_squared(x, np.random.default_rng(0).normal(size=10))
    assert noisy is not None and 0.0 <= noisy < 0.5


def test_checkpoints_are_evenly_spaced_and_end_the_epoch() -> None:
    assert checkpoint_steps(5, 4) == [2, 3, 4, 5]
    assert checkpoint_steps(16, 4) == [4, 8, 12, 16]
    assert checkpoint_steps(4, 4) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="fewer than checkpoints"):
        checkpoint_steps(3, 4)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("loss", "kto", "loss must be one of 'sigmoid', 'ipo', 'hinge', got 'kto'"),
    ("beta", 0.0, "beta must be > 0"),
    ("beta", float("nan"), "beta must be a finite number, got nan"),
    ("learning_rate", -1e-5, "learning_rate must be > 0"),
    ("pairs", 0, "pairs must be >= 1"),
    ("eval_samples", 1.5, "eval_samples must be a whole number, got 1.5"),
    ("r2_pairs", -1, "r2_pairs must be >= 0"),
    ("checkpoints", 20, "checkpoints \\(20\\) is more than the 16 optimizer steps"),
    ("proxy", "bleu", "proxy 'bleu' is not one of 'vader', 'afinn'"),
    ("task", "poetry", "unknown task 'poetry'"),
    ("policy", " ", "policy must not be empty"),
    ("pairs", 1060, r"pairs \(1060\) \+ eval_prompts \(32\) = 1092 is more than the sentiment task's 1080 prompts"),
])
def test_bad_config_fields_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(DirectAlignmentConfig, {field: value})


def test_unknown_config_field_is_named() -> None:
    with pytest.raises(ValueError, match="DirectAlignmentConfig has no field\\(s\\) betas"):
        parse_config(DirectAlignmentConfig, {"betas": [0.1]})


def small(policy_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Settings for the tiny model: 48 prompts, 8 optimizer steps at most, a high learning rate."""
    return {"policy": str(policy_dir), "pairs": 48, "train_batch_size": 4, "eval_prompts": 12, "eval_samples": 4,
            "max_new_tokens": 10, "learning_rate": 3e-3, "beta": 0.1, "r2_pairs": 12, **overrides}


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "hinge"])
def test_each_loss_trains_and_records_checkpoints_inside_the_epoch(policy_dir: Path, loss: str,
                                                                   tmp_path: Path) -> None:
    result = run_tiny(small(policy_dir, loss=loss), seed=0)
    summary = result.summary
    records = summary["checkpoints"]
    assert summary["pairs_used"] + summary["proxy_ties_dropped"] == 48 and summary["pairs_used"] >= 16
    assert len(records) == 5 and records[0]["step"] == 0 and records[0]["win_rate"] == 0.5
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)) and steps[-1] == summary["steps"] == math.ceil(summary["pairs_used"] / 4)
    assert [r["epoch_fraction"] for r in records][-1] == 1.0
    for record in records[1:]:
        assert math.isfinite(record["kl"]) and record["kl"] > -0.05  # k1 is unbiased, so small negatives are noise
        assert record["kl_k3"] >= 0.0 and record["sqrt_kl"] == pytest.approx(math.sqrt(max(record["kl"], 0.0)))
        assert 0.0 <= record["win_rate"] <= 1.0 and record["win_rate_se"] >= 0.0
        assert 1.0 <= record["length"] <= 10.0
        for key in ("length_r2", "length_r2_pairs"):
            assert record[key] is None or 0.0 <= record[key] <= 1.0
    assert any(r["length_r2"] is not None for r in records[1:])
    assert any(r["length_r2_pairs"] is not None for r in records[1:])
    # training moved the policy away from the reference and toward the proxy's choice
    assert records[-1]["kl"] > 0.05
    margins = [entry["rewards/margins"] for entry in summary["train_log"] if "rewards/margins" in entry]
    assert margins and all(math.isfinite(m) for m in margins)
    assert max(r["proxy"] for r in records[1:]) > records[0]["proxy"]
    curve = result.curves[WIN_RATE_CURVE]
    assert curve.pressure_kind == "sqrt_kl" and curve.pressure == [r["sqrt_kl"] for r in records]
    assert curve.gold == [r["win_rate"] for r in records]
    assert result.curves[KL_CURVE].gold == [r["gold"] for r in records]
    if loss == "sigmoid":  # the stored run makes a report with the win-rate figure
        store = tmp_path / "results.sqlite"
        with ResultsStore(store) as db:
            db.save_run("r0", StudyInfo("dpo", "DPO"), "DPO β=0.1", "direct_alignment", small(policy_dir), 0, result,
                        1.0)
        page = build_report(store, tmp_path / "report.html").read_text()
        assert WIN_RATE_CURVE in page and "best_win_rate" in page


def test_same_seed_gives_the_same_run(policy_dir: Path) -> None:
    config = small(policy_dir, pairs=32, train_batch_size=2, eval_prompts=4, eval_samples=2, r2_pairs=0,
                   max_new_tokens=6)
    first = run_tiny(config, seed=3)
    again = run_tiny(config, seed=3)
    assert first.summary["checkpoints"] == again.summary["checkpoints"]
    assert first.summary["example"] == again.summary["example"]
    assert all(r["length_r2_pairs"] is None for r in first.summary["checkpoints"])


def test_non_finite_proxy_scores_are_reported(policy_dir: Path) -> None:
    with pytest.raises(ValueError, match="proxy scorer 'exclamations' returned 1 non-finite score\\(s\\) of 96"):
        run_tiny(small(policy_dir), seed=0, task=f"{__name__}:BrokenProxyTask")


def test_too_few_pairs_after_proxy_ties_is_explained(policy_dir: Path) -> None:
    with pytest.raises(ValueError, match="only 0 of 48 pairs remain after dropping proxy ties"):
        run_tiny(small(policy_dir), seed=0, task=f"{__name__}:FlatProxyTask")


def test_missing_policy_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load policy"):
        run_tiny({"policy": str(tmp_path / "no-model")}, seed=0)


def test_example_spec_sweeps_loss_and_beta() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.kind.name == "direct_alignment"
    grid = {(run.config.loss, run.config.beta) for run in spec.runs}
    losses, betas = {loss for loss, _ in grid}, {beta for _, beta in grid}
    variants = {run.variant for run in spec.runs}
    assert len(grid) == len(variants) == len(losses) * len(betas) and len(betas) >= 2
    assert len(spec.runs) == len(variants) * len({r.seed for r in spec.runs})


@pytest.mark.slow
@pytest.mark.assets
def test_study_runs_on_smollm2_with_the_sentiment_task() -> None:
    config = DirectAlignmentConfig(pairs=8, train_batch_size=1, eval_prompts=4, eval_samples=2, max_new_tokens=8,
                                   r2_pairs=4, learning_rate=1e-5, sample_batch_size=16)
    result = direct_alignment_study(config, seed=0)
    records = result.summary["checkpoints"]
    assert len(records) == 5 and all(math.isfinite(r["kl"]) and 0 <= r["win_rate"] <= 1 for r in records)
    assert result.summary["gold_scorer"].startswith("multiemo-minilm-logreg 2 (x distinct bigrams), head ")
    assert result.summary["proxy_scorer"].startswith("afinn")
