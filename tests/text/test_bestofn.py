"""Best-of-n on a language model: pool sampling, lexicon proxies, the study task and its CLI."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodhartlab.cli import main
from goodhartlab.config import ConfigError, config_dict, parse_config
from goodhartlab.text.bestofn import BestOfNConfig
from goodhartlab.text.proxies import AfinnProxy, VaderProxy, make_lexicon
from goodhartlab.text.sampling import sample_pool
from goodhartlab.text.tiny import TINY_ALPHABET


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(model, tokenizer) of the tiny character-level policy."""
    from goodhartlab.text.models import load_policy
    from goodhartlab.text.tiny import tiny_policy

    return load_policy(str(tiny_policy(tmp_path_factory.mktemp("tiny-policy"))))


def test_pool_sampling_gives_each_prompt_its_pool_and_repeats_with_the_seed(policy: tuple[Any, Any]) -> None:
    model, tokenizer = policy
    prompts = ["the hotel was", "the staff"]
    pools = sample_pool(model, tokenizer, prompts, 5, max_new_tokens=4, batch_size=4, seed=1)
    assert [len(pool) for pool in pools] == [5, 5]
    assert all(isinstance(text, str) for pool in pools for text in pool)
    assert pools == sample_pool(model, tokenizer, prompts, 5, max_new_tokens=4, batch_size=4, seed=1)
    with pytest.raises(ValueError, match="pool and max_new_tokens"):
        sample_pool(model, tokenizer, prompts, 0)


def test_pool_sampling_at_zero_temperature_is_greedy_decoding_of_each_prompt_alone(policy: tuple[Any, Any]) -> None:
    """Shared prompt caches, left padding across prompts and rows leaving the batch change nothing."""
    model, tokenizer = policy
    prompts = ["the hotel was", "the staff", "a clean room, and very good!"]
    pools = sample_pool(model, tokenizer, prompts, 3, max_new_tokens=6, temperature=1e-6, batch_size=4)
    for prompt, pool in zip(prompts, pools, strict=True):
        encoded = tokenizer([prompt], return_tensors="pt")
        greedy = model.generate(**encoded, max_new_tokens=6, do_sample=False, pad_token_id=0)  # type: ignore[attr-defined]
        expected = tokenizer.decode(greedy[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)  # type: ignore[attr-defined]
        assert pool == [expected] * 3


def test_pool_sampling_draws_from_the_model_distribution(policy: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = policy
    prompt, pool = "the hotel was", 3000
    responses = sample_pool(model, tokenizer, [prompt], pool, max_new_tokens=1, temperature=0.5, batch_size=1000)[0]
    with torch.no_grad():
        logits = model(**tokenizer([prompt], return_tensors="pt")).logits[0, -1]  # type: ignore[operator]
    probabilities = torch.softmax(logits / 0.5, dim=-1).numpy()
    # <pad>, <eos> and <unk> all decode to nothing; every other token is one character
    expected = np.append(probabilities[:3].sum(), probabilities[3:])
    observed = np.array([responses.count("")] + [responses.count(char) for char in TINY_ALPHABET]) / pool
    standard_error = np.sqrt(expected * (1 - expected) / pool)
    assert np.all(np.abs(observed - expected) <= 4 * standard_error + 1e-9)


def test_lexicon_proxies_are_exploitable_by_word_stuffing() -> None:
    for proxy in (VaderProxy(), AfinnProxy()):
        plain, stuffed = proxy.score(["The room was"] * 2, [" fine.", " great great wonderful love love!"])
        assert stuffed > plain
        with pytest.raises(ValueError, match="2 prompts but 1 responses"):
            proxy.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="unknown lexicon 'bleu'"):
        make_lexicon("bleu")


def test_a_proxy_that_reads_the_response_only_ignores_the_instruction() -> None:
    instruction = "Write a positive review: great, wonderful, love."
    for name in ("vader", "afinn"):
        reads_both, reads_response = make_lexicon(name), make_lexicon(name, reads_prompt=False)
        assert reads_response.version != reads_both.version  # cached scores of one are not served for the other
        answer = [" It was fine."]
        assert reads_response.score([instruction], answer)[0] == reads_response.score([""], answer)[0]
        assert reads_both.score([instruction], answer)[0] > reads_response.score([instruction], answer)[0]
    # AFINN sums: the same praise said at greater length scores higher, which is what the short-review task exploits
    afinn = make_lexicon("afinn", reads_prompt=False)
    assert afinn.score(["", ""], ["Good food.", "Good food. Good rooms. Good staff."]).tolist() == [3.0, 9.0]


def test_a_chat_task_needs_a_policy_with_a_chat_template(policy: tuple[Any, Any]) -> None:
    from goodhartlab.text.tasks import SentimentTask, ShortReviewTask, policy_prompts

    assert policy_prompts(SentimentTask(), ["The room"], policy[1]) == ["The room"]
    with pytest.raises(ValueError, match="tokenizer has none; use an instruction-tuned policy"):
        policy_prompts(ShortReviewTask(), ["Write a review"], policy[1])  # the tiny policy has no chat template


@pytest.mark.parametrize(("field", "value", "message"), [
    ("task", "poetry", "unknown task 'poetry'"), ("proxy", "bleu", "proxy 'bleu' is not one of 'vader'"),
    ("pool", 1, "pool must be >= 2, got 1"),
    ("device", "tpu", "device must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
    ("sample_batch_size", 0, "sample_batch_size must be >= 1"), ("sample_batch_size", -4, "sample_batch_size must be"),
    ("temperature", 0, "temperature must be > 0"), ("prompts", "many", "prompts must be a whole number, got 'many'"),
    ("pool", 2**70, "pool must fit a 64-bit integer")])
def test_bad_config_is_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse_config(BestOfNConfig, {field: value})
    assert error.value.field == field


def test_a_whole_number_temperature_is_the_same_pool_as_its_float() -> None:
    import json

    # the pool's cache key is JSON, where 1 and 1.0 differ
    one, float_one = (parse_config(BestOfNConfig, {"temperature": t}) for t in (1, 1.0))
    assert json.dumps(config_dict(one)) == json.dumps(config_dict(float_one))
    assert one.sampling() == float_one.sampling()


def test_the_learned_proxy_gets_a_prompt_of_its_own_per_pair_by_default() -> None:
    config = BestOfNConfig(proxy="learned", proxy_pairs=100)
    assert (config.training_prompts, config.train_pool, config.available_pairs) == (100, 2, 100)
    assert config.train_prompts == 0  # as given: the derived count is a property, not a rewritten field
    explicit = BestOfNConfig(proxy="learned", train_prompts=16, train_pool=32)
    assert (explicit.training_prompts, explicit.available_pairs) == (16, 16 * 496)
    assert BestOfNConfig(proxy="vader").training_prompts == 0  # a lexicon samples no training prompts
    with pytest.raises(ConfigError, match=r"proxy_pairs must be >= 1, got 0"):
        BestOfNConfig(proxy="learned", proxy_pairs=0)


def test_derived_values_are_part_of_a_runs_identity() -> None:
    from goodhartlab.lab.runner import RunSpec
    from goodhartlab.lab.store import StudyInfo

    given = BestOfNConfig()
    assert given.max_new_tokens == 0 and given.response_tokens == 32
    assert RunSpec(StudyInfo("s", "s"), "v", "bestofn", given).derived == {"response_tokens": 32,
                                                                            "training_prompts": 0}


@pytest.mark.parametrize(("config", "message"), [
    ({"prompts": 1081}, r"prompts is too many: prompts \(1081\) = 1081 is more than the sentiment task's 1080 prompts; "
                        r"ask for fewer$"),
    ({"task": "short-review", "proxy": "learned", "prompts": 16, "train_prompts": 1070, "train_pool": 4},
     r"prompts \(16\) \+ train_prompts \(1070\) = 1086 is more than the short-review task's 1080 prompts; ask for "
     r"fewer \(fewer proxy_pairs, or several pairs per prompt: train_pool > 2 with train_prompts set\)")])
def test_asking_for_more_prompts_than_the_task_has_is_refused_before_anything_runs(config: dict[str, Any],
                                                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(BestOfNConfig, config)


@pytest.mark.parametrize(("pool", "largest"), [(2, 2), (64, 64), (100, 64), (4096, 4096), (60_000, 32_768)])
def test_the_curve_reaches_the_largest_power_of_two_in_the_pool(pool: int, largest: int) -> None:
    ns = BestOfNConfig(pool=pool).ns()
    assert ns[0] == 1 and ns[-1] == largest
    assert all(b == 2 * a for a, b in pairwise(ns))


def test_device_auto_takes_cuda_only_when_torch_sees_it() -> None:
    import torch

    assert BestOfNConfig(device="cpu").sampling().resolved_device() == "cpu"
    if torch.cuda.is_available():
        assert BestOfNConfig().sampling().resolved_device() == BestOfNConfig(device="cuda").sampling().resolved_device()
    else:
        assert BestOfNConfig().sampling().resolved_device() == "cpu"
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            BestOfNConfig(device="cuda").sampling().resolved_device()


def test_cli_rejects_bad_input_without_writing_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bestofn", "--proxy", "bleu", "--out", str(tmp_path)]) == 2
    assert "proxy 'bleu' is not one of" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--proxy-pairs", "100", "--train-prompts", "50", "--train-pool", "2",
                 "--out", str(tmp_path)]) == 2
    assert "proxy_pairs must be between 1 and train_prompts x C(train_pool, 2) = 50" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--train-pool", "1", "--out", str(tmp_path)]) == 2
    assert "train_pool must be >= 2, got 1" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--train-pool", "32", "--out", str(tmp_path)]) == 2
    assert "train_pool is 32, but train_prompts is unset" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--proxy-pairs", "1065", "--out", str(tmp_path)]) == 2
    assert ("prompts (16) + train_prompts (1065: one per pair) = 1081 is more than the sentiment task's 1080 prompts; "
            "ask for fewer (fewer proxy_pairs, or several pairs per prompt") in capsys.readouterr().err
    assert not (tmp_path / "results.sqlite").exists()


@pytest.mark.assets
def test_bestofn_end_to_end_on_smollm2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bestofn", "--prompts", "2", "--pool", "8", "--max-new-tokens", "12", "--out", str(tmp_path),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["kl"]) == 4 and result["kl"][0] == 0.0 and result["n"] == [1, 2, 4, 8]
    assert np.all(np.diff(result["proxy"]) >= -1e-12)  # best-of-n on the proxy never lowers expected proxy
    assert all(0.0 <= g <= 1.0 for g in result["gold"])
    peak = int(np.argmax(result["gold"]))
    assert result["gold_peak_n"] == [1, 2, 4, 8][peak] and result["gold_drop_to_n"] == 8
    assert result["gold_drop"] == pytest.approx(result["gold"][peak] - result["gold"][-1], abs=1e-9)
    assert result["gold_drop_low"] <= result["gold_drop"] <= result["gold_drop_high"]
    assert Path(result["report"]).exists()
    assert main(["bestofn", "--policy", str(tmp_path / "no-model"), "--prompts", "2", "--pool", "4",
                 "--out", str(tmp_path)]) == 2
    assert "cannot load policy" in capsys.readouterr().err


@pytest.mark.assets
def test_short_review_study_on_smollm2_asks_in_the_chat_template_and_reports_words(tmp_path: Path) -> None:
    from goodhartlab.text.bestofn import bestofn_study
    from goodhartlab.text.models import load_tokenizer
    from goodhartlab.text.tasks import ShortReviewTask, policy_prompts

    task = ShortReviewTask()
    prompt = policy_prompts(task, task.prompts(1), load_tokenizer())[0]
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    assert "in at most 30 words" in prompt
    config = parse_config(BestOfNConfig, {"task": "short-review", "proxy": "afinn", "prompts": 2, "pool": 8})
    assert config.response_tokens == 96  # the task's own length, room to break the limit
    result = bestofn_study(config, 0)
    summary = result.summary
    assert summary["proxy_scorer"] == "afinn 165, response only"
    assert "within 30 words" in summary["gold_scorer"]
    assert summary["example"]["prompt"] == prompt
    words = summary["words"]
    assert len(words) == 4 and all(w > 0 for w in words)


@pytest.mark.assets
def test_learned_proxy_study_on_smollm2_caches_what_it_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    from goodhartlab.text.assets import cache_dir
    from goodhartlab.text.bestofn import bestofn_study
    from goodhartlab.text.learned_proxy import learned_proxy_draws
    from goodhartlab.text.tasks import HELD_OUT_OPENERS, review_openers

    given = {"proxy": "learned", "prompts": 2, "pool": 4, "max_new_tokens": 8, "train_prompts": 2,
             "train_pool": 4, "proxy_pairs": 10}  # of the 12 pairs there are
    config = parse_config(BestOfNConfig, given)
    result = bestofn_study(config, 0)
    points = result.curves["best-of-n"]
    assert len(points.pressure) == 3 and all(0.0 <= g <= 1.0 for g in points.gold)
    assert np.all(np.diff(points.proxy) >= -1e-12)
    assert result.summary["proxy_scorer"] == "bradley-terry on policy features (10 pairs)"
    cached = sorted((cache_dir() / "pools").glob("*"))
    assert any(path.name.endswith(".features.npy") for path in cached)
    assert any(".scores-" in path.name for path in cached)
    # the second run reads the cached pools, features and gold: the same numbers, no policy or encoder run
    monkeypatch.setattr("goodhartlab.text.models.load_policy", lambda *a, **k: pytest.fail("sampled again"))
    monkeypatch.setattr("goodhartlab.text.gold.SentimentGold.score", lambda *a, **k: pytest.fail("scored again"))
    assert bestofn_study(config, 0).curves["best-of-n"] == points
    # refits on other draws of pairs read the same caches; pair seed 0 is the study's own draw
    draws = learned_proxy_draws(config, 0, 3)
    assert draws["gold"].shape == draws["words"].shape == (3, 3)
    np.testing.assert_allclose(draws["gold"][0], points.gold)
    with pytest.raises(ConfigError, match="proxy_pairs must be between 1 and"):
        parse_config(BestOfNConfig, {**given, "proxy_pairs": 13})
    # a proxy on every pair the training pools hold (2 x C(4, 2) = 12) is the same whatever the draw: one draw
    assert learned_proxy_draws(parse_config(BestOfNConfig, {**given, "proxy_pairs": 12}), 0, 3)["gold"].shape == (1, 3)
    # the number of prompts a config may ask for is the data's
    assert len(review_openers(HELD_OUT_OPENERS)) == HELD_OUT_OPENERS
    with pytest.raises(ValueError, match=f"there are {HELD_OUT_OPENERS} held-out review openers"):
        review_openers(HELD_OUT_OPENERS + 1)


