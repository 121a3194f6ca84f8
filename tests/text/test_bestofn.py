"""Best-of-n on a language model: pool sampling, lexicon proxies, the study task and its CLI."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodhartlab.cli import main
from goodhartlab.text.bestofn import BestOfNConfig
from goodhartlab.text.sampling import sample_pool
from goodhartlab.text.scorers import AfinnProxy, VaderProxy, make_proxy
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
    with pytest.raises(ValueError, match="unknown proxy 'bleu'"):
        make_proxy("bleu")


def test_a_proxy_that_reads_the_response_only_ignores_the_instruction() -> None:
    instruction = "Write a positive review: great, wonderful, love."
    for name in ("vader", "afinn"):
        reads_both, reads_response = make_proxy(name), make_proxy(name, reads_prompt=False)
        assert reads_response.version != reads_both.version  # cached scores of one are not served for the other
        answer = [" It was fine."]
        assert reads_response.score([instruction], answer)[0] == reads_response.score([""], answer)[0]
        assert reads_both.score([instruction], answer)[0] > reads_response.score([instruction], answer)[0]
    # AFINN sums: the same praise said at greater length scores higher, which is what the short-review task exploits
    afinn = make_proxy("afinn", reads_prompt=False)
    assert afinn.score(["", ""], ["Good food.", "Good food. Good rooms. Good staff."]).tolist() == [3.0, 9.0]


def test_a_chat_task_needs_a_policy_with_a_chat_template(policy: tuple[Any, Any]) -> None:
    from goodhartlab.text.tasks import SentimentTask, ShortReviewTask, policy_prompts

    assert policy_prompts(SentimentTask(), ["The room"], policy[1]) == ["The room"]
    with pytest.raises(ValueError, match="tokenizer has none; use an instruction-tuned policy"):
        policy_prompts(ShortReviewTask(), ["Write a review"], policy[1])  # the tiny policy has no chat template


@pytest.mark.parametrize(("field", "value", "message"), [
    ("task", "poetry", "unknown task 'poetry'"), ("proxy", "bleu", "unknown proxy 'bleu'"),
    ("pool", 1, "pool >= 2"), ("device", "tpu", "device must be one of auto, cpu, cuda"),
    ("batch_size", 0, "batch_size must be >= 1"), ("batch_size", -4, "batch_size must be >= 1"),
    ("temperature", 0, "temperature must be > 0")])
def test_bad_config_is_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BestOfNConfig(**{field: value})  # type: ignore[arg-type]


def test_a_whole_number_temperature_is_the_same_pool_as_its_float() -> None:
    import json
    from dataclasses import asdict

    # the pool's cache key is JSON, where 1 and 1.0 differ
    assert json.dumps(asdict(BestOfNConfig(temperature=1))) == json.dumps(asdict(BestOfNConfig(temperature=1.0)))


def test_the_learned_proxy_gets_a_prompt_of_its_own_per_pair_by_default() -> None:
    config = BestOfNConfig(proxy="learned", proxy_pairs=100)
    assert (config.train_prompts, config.train_pool, config.available_pairs) == (100, 2, 100)
    explicit = BestOfNConfig(proxy="learned", train_prompts=16, train_pool=32)
    assert (explicit.train_prompts, explicit.available_pairs) == (16, 16 * 496)
    assert BestOfNConfig(proxy="vader").train_prompts == 0  # a lexicon samples no training prompts
    with pytest.raises(ValueError, match=r"needs proxy_pairs >= 1, .* got 0, 0 and 2"):
        BestOfNConfig(proxy="learned", proxy_pairs=0)


@pytest.mark.parametrize(("config", "message"), [
    ({"prompts": 1081}, r"prompts \(1081\) = 1081 is more than the sentiment task's 1080 prompts; ask for fewer$"),
    ({"task": "short-review", "proxy": "learned", "prompts": 16, "train_prompts": 1070, "train_pool": 4},
     r"prompts \(16\) \+ train_prompts \(1070\) = 1086 is more than the short-review task's 1080 prompts; ask for "
     r"fewer \(fewer proxy_pairs, or several pairs per prompt: train_pool > 2 with train_prompts set\)")])
def test_asking_for_more_prompts_than_the_task_has_is_refused_before_anything_runs(config: dict[str, Any],
                                                                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BestOfNConfig(**config)


@pytest.mark.parametrize(("pool", "largest"), [(2, 2), (64, 64), (100, 64), (4096, 4096), (60_000, 32_768)])
def test_the_curve_reaches_the_largest_power_of_two_in_the_pool(pool: int, largest: int) -> None:
    ns = BestOfNConfig(pool=pool).ns()
    assert ns[0] == 1 and ns[-1] == largest
    assert all(b == 2 * a for a, b in pairwise(ns))


def test_device_auto_takes_cuda_only_when_torch_sees_it() -> None:
    import torch

    assert BestOfNConfig(device="cpu").resolved_device() == "cpu"
    if torch.cuda.is_available():
        assert BestOfNConfig().resolved_device() == BestOfNConfig(device="cuda").resolved_device() == "cuda"
    else:
        assert BestOfNConfig().resolved_device() == "cpu"
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            BestOfNConfig(device="cuda").resolved_device()


def test_cli_rejects_bad_input_without_writing_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bestofn", "--proxy", "bleu", "--out", str(tmp_path)]) == 2
    assert "unknown proxy 'bleu'" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--proxy-pairs", "100", "--train-prompts", "50", "--train-pool", "2",
                 "--out", str(tmp_path)]) == 2
    assert "proxy_pairs must be between 1 and train_prompts x C(train_pool, 2) = 50" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--train-pool", "1", "--out", str(tmp_path)]) == 2
    assert "train_prompts >= 1 (or 0: one per pair) and train_pool >= 2, got 256, 0 and 1" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--train-pool", "32", "--out", str(tmp_path)]) == 2
    assert "with train_pool 32, set train_prompts too" in capsys.readouterr().err
    assert main(["bestofn", "--proxy", "learned", "--proxy-pairs", "1065", "--out", str(tmp_path)]) == 2
    assert ("prompts (16) + train_prompts (1065: one per pair) = 1081 is more than the sentiment task's 1080 prompts; "
            "ask for fewer (fewer proxy_pairs, or several pairs per prompt") in capsys.readouterr().err
    assert not (tmp_path / "results.sqlite").exists()


@pytest.mark.assets
def test_bestofn_end_to_end_on_smollm2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bestofn", "--prompts", "2", "--pool", "8", "--max-new-tokens", "12", "--out", str(tmp_path),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["kl"]) == 4 and result["kl"][0] == 0.0
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
    result = bestofn_study({"task": "short-review", "proxy": "afinn", "prompts": 2, "pool": 8}, 0)
    summary = result.summary
    assert summary["config"]["max_new_tokens"] == 96  # the task's own length, room to break the limit
    assert summary["proxy_scorer"] == "afinn 165, response only"
    assert "within 30 words" in summary["gold_scorer"]
    assert summary["example"]["prompt"] == prompt
    words = summary["words"]
    assert len(words) == 4 and all(w > 0 for w in words)


@pytest.mark.assets
def test_learned_proxy_study_on_smollm2_caches_what_it_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    from goodhartlab.text.assets import cache_dir
    from goodhartlab.text.bestofn import bestofn_study, learned_proxy_draws
    from goodhartlab.text.tasks import HELD_OUT_OPENERS, review_openers

    config = {"proxy": "learned", "prompts": 2, "pool": 4, "max_new_tokens": 8, "train_prompts": 2,
              "train_pool": 4, "proxy_pairs": 10}  # of the 12 pairs there are
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
    with pytest.raises(ValueError, match="proxy_pairs must be between 1 and"):
        bestofn_study({**config, "proxy_pairs": 13}, 0)
    # a proxy on every pair the training pools hold (2 x C(4, 2) = 12) is the same whatever the draw: one draw
    assert learned_proxy_draws({**config, "proxy_pairs": 12}, 0, 3)["gold"].shape == (1, 3)
    # the number of prompts a config may ask for is the data's
    assert len(review_openers(HELD_OUT_OPENERS)) == HELD_OUT_OPENERS
    with pytest.raises(ValueError, match=f"there are {HELD_OUT_OPENERS} held-out review openers"):
        review_openers(HELD_OUT_OPENERS + 1)


def test_pools_of_a_policy_folder_are_keyed_by_its_contents_changing(tmp_path: Path) -> None:
    import os

    from goodhartlab.text.bestofn import _policy_identity

    assert _policy_identity("smollm2-135m-instruct") == "smollm2-135m-instruct"
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"old")
    before = _policy_identity(str(tmp_path))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # retrained in place
    assert _policy_identity(str(tmp_path)) != before


def test_pool_scores_are_cached_under_the_scorers_name_and_version(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from goodhartlab.text import assets
    from goodhartlab.text.bestofn import PoolSampler
    from goodhartlab.text.tiny import ExclamationCount, tiny_policy

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    class Counted(ExclamationCount):
        def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
            calls.append(len(responses))
            return super().score(prompts, responses)

    sampler = PoolSampler(BestOfNConfig(policy=str(tiny_policy(tmp_path / "policy")), pool=4, max_new_tokens=6))
    prompts = ["the hotel was", "the staff"]
    first = sampler.scores(Counted(), prompts, 4, 0)
    assert first.shape == (2, 4) and calls == [8]
    np.testing.assert_array_equal(sampler.scores(Counted(), prompts, 4, 0), first)
    assert calls == [8]  # read back, not scored again
    retrained = Counted()
    retrained.version = "2"
    sampler.scores(retrained, prompts, 4, 0)
    assert calls == [8, 8]  # a new version is a new cache entry
    sampler.scores(Counted(), prompts, 4, 1)
    assert calls == [8, 8, 8]  # and so is another pool


@pytest.fixture
def sampler_in_chunks_of_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A tiny policy's sampler whose pools of 2 prompts x 4 are scored in chunks of 3, 3 and 2."""
    from goodhartlab.text import assets, bestofn
    from goodhartlab.text.tiny import tiny_policy

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(bestofn, "CHUNK_RESPONSES", 3)  # 8 responses: chunks of 3, 3 and 2
    sampler = bestofn.PoolSampler(BestOfNConfig(policy=str(tiny_policy(tmp_path / "policy")), pool=4,
                                                max_new_tokens=6))
    return sampler


def test_a_large_pool_is_scored_in_chunks_that_give_what_one_call_gives(sampler_in_chunks_of_3: Any) -> None:
    from goodhartlab.text.learned import PolicyFeatures

    sampler, prompts = sampler_in_chunks_of_3, ["the hotel was", "the staff"]
    pools = sampler.pools(prompts, 4, 0)
    whole = VaderProxy().score([p for p in prompts for _ in range(4)], [r for pool in pools for r in pool])
    np.testing.assert_array_equal(sampler.scores(VaderProxy(), prompts, 4, 0).ravel(), whole)  # scored on its own
    # features too, in order; an encoder pads each batch to its longest text, and in bfloat16 that moves
    # the features by ~1e-2, so here each chunk is one batch, and in real pools chunks hold whole batches
    encoder = PolicyFeatures(sampler.sampling_model, sampler.policy[1])
    flat_prompts, flat_responses = [p for p in prompts for _ in range(4)], [r for pool in pools for r in pool]
    by_chunk = np.concatenate([encoder.encode(flat_prompts[i:i + 3], flat_responses[i:i + 3]) for i in (0, 3, 6)])
    np.testing.assert_array_equal(sampler.features(prompts, 4, 0).reshape(8, -1), by_chunk)


def test_chunks_hold_whole_encoder_batches() -> None:
    import inspect

    from goodhartlab.text.bestofn import CHUNK_RESPONSES
    from goodhartlab.text.learned import PolicyFeatures
    from goodhartlab.text.models import SentenceEncoder

    for encoder_class in (PolicyFeatures, SentenceEncoder):
        assert CHUNK_RESPONSES % inspect.signature(encoder_class).parameters["batch_size"].default == 0


def test_scoring_stopped_part_way_resumes_from_the_chunks_it_finished(sampler_in_chunks_of_3: Any,
                                                                      tmp_path: Path) -> None:
    from goodhartlab.text import bestofn

    sampler, prompts = sampler_in_chunks_of_3, ["the hotel was", "the staff"]
    sampler.pools(prompts, 4, 0)
    scored: list[int] = []

    class StopsAtTheThirdChunk(VaderProxy):
        def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
            if len(scored) == 2:
                raise KeyboardInterrupt
            scored.append(len(responses))
            return super().score(prompts, responses)

    with pytest.raises(KeyboardInterrupt):
        sampler.scores(StopsAtTheThirdChunk(), prompts, 4, 0)
    assert scored == [3, 3]
    # nothing claims to be the scores yet, and the finished chunks wait in the pool's name
    pool_files = sorted(path.name for path in (tmp_path / "cache" / "pools").iterdir())
    assert not any(name.endswith(".npy") and ".from-" not in name for name in pool_files)
    assert sum(".from-" in name for name in pool_files) == 2
    assert {pool.name for pool in bestofn.cached_pools()} == {pool_files[0].split(".")[0]}

    scored.clear()
    resumed = sampler.scores(VaderProxy(), prompts, 4, 0)  # same name and version: the same cache entry
    np.testing.assert_array_equal(resumed, sampler.scores(VaderProxy(), prompts, 4, 0))
    whole = VaderProxy().score([p for p in prompts for _ in range(4)],
                               [r for pool in sampler.pools(prompts, 4, 0) for r in pool])
    np.testing.assert_array_equal(resumed.ravel(), whole)
    assert resumed.shape == (2, 4) and resumed.dtype == np.float64
    assert not any(".from-" in path.name for path in (tmp_path / "cache" / "pools").iterdir())  # tidied


def test_chunks_left_by_a_run_stopped_after_writing_the_whole_go_on_the_next_read(
        sampler_in_chunks_of_3: Any, tmp_path: Path) -> None:
    from goodhartlab.text.bestofn import _chunk_path, _save_array

    sampler, prompts = sampler_in_chunks_of_3, ["the hotel was", "the staff"]
    scores = sampler.scores(VaderProxy(), prompts, 4, 0)
    (target,) = (tmp_path / "cache" / "pools").glob("*.scores-*.npy")
    for start in (0, 3):  # as if the run had died between writing the whole and deleting its chunks
        _save_array(_chunk_path(target, start), np.zeros(3))
    np.testing.assert_array_equal(sampler.scores(VaderProxy(), prompts, 4, 0), scores)
    assert not any(".from-" in path.name for path in (tmp_path / "cache" / "pools").iterdir())


def test_a_chunk_of_another_length_is_done_again(tmp_path: Path) -> None:
    from goodhartlab.text.bestofn import _chunk_path, _finished_chunk, _save_array

    target = tmp_path / "pool.scores-x.npy"
    _save_array(_chunk_path(target, 0), np.arange(3.0))
    assert _finished_chunk(target, 0, 3) is not None
    assert _finished_chunk(target, 0, 4) is None  # written when chunks were of another size
    _chunk_path(target, 3).write_bytes(b"cut short")
    assert _finished_chunk(target, 3, 3) is None


def test_progress_is_reported_at_most_every_interval_with_the_time_left(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from goodhartlab.text import bestofn

    clock = iter([0.0, 10.0, 40.0, 41.0])
    monkeypatch.setattr(bestofn, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    progress = bestofn.Progress(100, already=20)  # a resumed run: 20 were sampled before
    progress(30)  # 10 s in: too soon to report
    progress(40)  # 40 s for 20 new responses: 60 left take 2 minutes
    progress(100)  # the end is always reported
    assert capsys.readouterr().err.splitlines() == ["[best-of-n]   40/100 responses (40 s, about 2 min left)",
                                                    "[best-of-n]   100/100 responses (41 s)"]


def test_cached_pools_are_listed_and_cleared_with_what_was_derived_from_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from goodhartlab.text import assets
    from goodhartlab.text.bestofn import PoolSampler, cached_pools, remove_cached_pools
    from goodhartlab.text.tiny import ExclamationCount, tiny_policy

    def age(pool_files: tuple[Path, ...], days: float) -> None:
        for path in pool_files:
            then = path.stat().st_mtime - days * 86400
            os.utime(path, (then, then))

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    assert cached_pools() == []
    sampler = PoolSampler(BestOfNConfig(policy=str(tiny_policy(tmp_path / "policy")), pool=4, max_new_tokens=6))
    prompts = ["the hotel was", "the staff"]
    sampler.scores(ExclamationCount(), prompts, 4, 0)  # a pool and its scores
    sampler.pools(prompts, 4, 1)  # a pool alone
    scored, alone = sorted(cached_pools(), key=lambda pool: len(pool.files), reverse=True)
    assert len(scored.files) == 2 and len(alone.files) == 1 and scored.bytes > 0

    age(scored.files, 30)
    age(alone.files, 30)
    sampler.scores(ExclamationCount(), prompts, 4, 0)  # reading only its cached scores marks a pool used
    assert main(["assets", "--clear-pools", "--unused-days", "7"]) == 0
    assert "removed 1 sampled pools" in capsys.readouterr().out
    assert [pool.name for pool in cached_pools()] == [scored.name]
    assert not alone.files[0].exists()

    age(scored.files, 30)
    sampler.pools(prompts, 4, 0)  # and so does reading the pool itself
    assert remove_cached_pools(unused_for_days=7) == []
    assert main(["assets", "--clear-pools", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert cached_pools() == [] and not any(path.exists() for path in scored.files)
    assert main(["assets", "--unused-days", "7"]) == 2
    assert "--unused-days only goes with --clear-pools" in capsys.readouterr().err
    assert main(["assets", "--clear-pools", "--unused-days", "-1"]) == 2
    assert "--unused-days must be >= 0" in capsys.readouterr().err


def test_an_interrupted_pool_resumes_from_its_sampled_batches_and_equals_an_uninterrupted_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from goodhartlab.text import assets, sampling
    from goodhartlab.text.bestofn import PoolSampler
    from goodhartlab.text.tiny import tiny_policy

    policy_dir = str(tiny_policy(tmp_path / "policy"))
    config = BestOfNConfig(policy=policy_dir, pool=6, max_new_tokens=5, batch_size=4)  # 3 batches for 2 prompts
    prompts = ["the hotel was", "the staff"]
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "whole"))
    uninterrupted = PoolSampler(config).pools(prompts, 6, 0)

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "stopped"))
    real_batch, batches = sampling._sample_batch, []

    def stopping_after_two(*args: Any) -> Any:
        if len(batches) == 2:
            raise KeyboardInterrupt
        batches.append(args[3])
        return real_batch(*args)

    monkeypatch.setattr(sampling, "_sample_batch", stopping_after_two)
    with pytest.raises(KeyboardInterrupt):
        PoolSampler(config).pools(prompts, 6, 0)
    journal = next((tmp_path / "stopped" / "pools").glob("*.batches.jsonl"))
    assert len(journal.read_text().splitlines()) == 2
    with journal.open("a") as file:
        file.write('{"start": 8, "tok')  # the line being written when the run was killed

    batches.clear()
    monkeypatch.setattr(sampling, "_sample_batch", lambda *args: batches.append(args[3]) or real_batch(*args))
    assert PoolSampler(config).pools(prompts, 6, 0) == uninterrupted
    assert batches == [[1, 1, 1, 1]]  # only the batch that never finished was sampled again
    assert not journal.exists()  # the finished pool replaces its batches

    PoolSampler(config)._path(prompts, 6, 0)[0].unlink()
    for rows, message in ((['{"start": 0, "tokens": [[1], [2], [3], [4]]}', "not json"], "line 2"),
                          (['{"start": 0, "tokens": [[1]]}'], "line 1"),
                          (['{"start": 12, "tokens": [[1], [2], [3], [4]]}'], "line 1")):
        journal.write_text("\n".join(rows) + "\n")
        with pytest.raises(ValueError, match=rf"batches\.jsonl, {message}: not a sampled batch of this pool"):
            PoolSampler(config).pools(prompts, 6, 0)


def test_a_batch_cut_short_is_dropped_so_the_next_one_starts_its_own_line(tmp_path: Path) -> None:
    from goodhartlab.text.bestofn import BatchJournal

    path = tmp_path / "pool.batches.jsonl"
    path.write_text('{"start": 0, "tokens": [[5], [6]]}\n{"start": 2, "tokens": [[7], [8]]}\n{"start": 4, "tok')
    with BatchJournal(path) as journal:
        assert journal.read(2, 6) == {0: [[5], [6]], 2: [[7], [8]]}
        journal.append(4, [[9], [10]])
    assert [json.loads(line)["start"] for line in path.read_text().splitlines()] == [0, 2, 4]


def test_a_study_that_needs_a_pool_another_is_sampling_waits_for_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    pytest.importorskip("fcntl")
    from goodhartlab.text import assets
    from goodhartlab.text.bestofn import BatchJournal, PoolSampler, remove_cached_pools
    from goodhartlab.text.tiny import tiny_policy

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    config = BestOfNConfig(policy=str(tiny_policy(tmp_path / "policy")), pool=4, max_new_tokens=5)
    sampler, prompts = PoolSampler(config), ["the hotel was"]
    pool_path = sampler._path(prompts, 4, 0)[0]
    result: list[list[list[str]]] = []
    with BatchJournal(pool_path.with_suffix(".batches.jsonl")):  # another study, sampling this pool
        waiting = threading.Thread(target=lambda: result.append(sampler.pools(prompts, 4, 0)), daemon=True)
        waiting.start()
        waiting.join(timeout=3)
        assert waiting.is_alive() and not result  # blocked on the lock, not sampling beside it
        assert remove_cached_pools() == []  # a pool being sampled is not cleared under the study sampling it
        pool_path.write_text(json.dumps({"key": [], "pools": [["a", "b", "c", "d"]]}))  # the other one finishes
        pool_path.with_suffix(".batches.jsonl").unlink()
    waiting.join(timeout=30)
    assert result == [[["a", "b", "c", "d"]]]  # it read the pool the other study wrote
    assert [path.name for path in pool_path.parent.iterdir()] == [pool_path.name]
