"""The pool cache: sampled pools, their scores and features, journaled, chunked, listed and cleared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodhartlab.cli import main
from goodhartlab.text.pools import SamplingSettings
from goodhartlab.text.proxies import VaderProxy


def settings(policy: str, **given: Any) -> SamplingSettings:
    return SamplingSettings(policy, given.pop("max_new_tokens", 6), **given)


def test_pools_of_a_policy_folder_are_keyed_by_its_contents_changing(tmp_path: Path) -> None:
    import os

    from goodhartlab.text.pools import _policy_identity

    assert _policy_identity("smollm2-135m-instruct") == "smollm2-135m-instruct"
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"old")
    before = _policy_identity(str(tmp_path))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # retrained in place
    assert _policy_identity(str(tmp_path)) != before


def test_pool_scores_are_cached_under_the_scorers_name_and_version(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from goodhartlab.text import assets
    from goodhartlab.text.pools import PoolSampler
    from goodhartlab.text.tiny import ExclamationCount, tiny_policy

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    class Counted(ExclamationCount):
        def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
            calls.append(len(responses))
            return super().score(prompts, responses)

    sampler = PoolSampler(settings(str(tiny_policy(tmp_path / "policy"))))
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
    from goodhartlab.text import assets, pools
    from goodhartlab.text.tiny import tiny_policy

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(pools, "CHUNK_RESPONSES", 3)  # 8 responses: chunks of 3, 3 and 2
    sampler = pools.PoolSampler(settings(str(tiny_policy(tmp_path / "policy"))))
    return sampler


def test_a_large_pool_is_scored_in_chunks_that_give_what_one_call_gives(sampler_in_chunks_of_3: Any) -> None:
    from goodhartlab.text.models import PolicyFeatures

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

    from goodhartlab.text.models import PolicyFeatures, SentenceEncoder
    from goodhartlab.text.pools import CHUNK_RESPONSES

    for encoder_class in (PolicyFeatures, SentenceEncoder):
        assert CHUNK_RESPONSES % inspect.signature(encoder_class).parameters["batch_size"].default == 0


def test_scoring_stopped_part_way_resumes_from_the_chunks_it_finished(sampler_in_chunks_of_3: Any,
                                                                      tmp_path: Path) -> None:
    from goodhartlab.text import pools

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
    assert {pool.name for pool in pools.cached_pools()} == {pool_files[0].split(".")[0]}

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
    from goodhartlab.text.pools import _chunk_path, _save_array

    sampler, prompts = sampler_in_chunks_of_3, ["the hotel was", "the staff"]
    scores = sampler.scores(VaderProxy(), prompts, 4, 0)
    (target,) = (tmp_path / "cache" / "pools").glob("*.scores-*.npy")
    for start in (0, 3):  # as if the run had died between writing the whole and deleting its chunks
        _save_array(_chunk_path(target, start), np.zeros(3))
    np.testing.assert_array_equal(sampler.scores(VaderProxy(), prompts, 4, 0), scores)
    assert not any(".from-" in path.name for path in (tmp_path / "cache" / "pools").iterdir())


def test_a_chunk_of_another_length_is_done_again(tmp_path: Path) -> None:
    from goodhartlab.text.pools import _chunk_path, _finished_chunk, _save_array

    target = tmp_path / "pool.scores-x.npy"
    _save_array(_chunk_path(target, 0), np.arange(3.0))
    assert _finished_chunk(target, 0, 3) is not None
    assert _finished_chunk(target, 0, 4) is None  # written when chunks were of another size
    _chunk_path(target, 3).write_bytes(b"cut short")
    assert _finished_chunk(target, 3, 3) is None


def test_progress_is_reported_at_most_every_interval_with_the_time_left(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from goodhartlab.text import pools

    clock = iter([0.0, 10.0, 40.0, 41.0])
    monkeypatch.setattr(pools, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    progress = pools.Progress(100, already=20)  # a resumed run: 20 were sampled before
    progress(30)  # 10 s in: too soon to report
    progress(40)  # 40 s for 20 new responses: 60 left take 2 minutes
    progress(100)  # the end is always reported
    assert capsys.readouterr().err.splitlines() == ["[pools]   40/100 responses (40 s, about 2 min left)",
                                                    "[pools]   100/100 responses (41 s)"]


def test_cached_pools_are_listed_and_cleared_with_what_was_derived_from_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from goodhartlab.text import assets
    from goodhartlab.text.pools import PoolSampler, cached_pools, remove_cached_pools
    from goodhartlab.text.tiny import ExclamationCount, tiny_policy

    def age(pool_files: tuple[Path, ...], days: float) -> None:
        for path in pool_files:
            then = path.stat().st_mtime - days * 86400
            os.utime(path, (then, then))

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    assert cached_pools() == []
    sampler = PoolSampler(settings(str(tiny_policy(tmp_path / "policy"))))
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
    from goodhartlab.text.pools import PoolSampler
    from goodhartlab.text.tiny import tiny_policy

    policy_dir = str(tiny_policy(tmp_path / "policy"))
    config = settings(policy_dir, max_new_tokens=5, sample_batch_size=4)  # 3 batches for 2 prompts
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
    from goodhartlab.text.pools import BatchJournal

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
    from goodhartlab.text.pools import BatchJournal, PoolSampler, remove_cached_pools
    from goodhartlab.text.tiny import tiny_policy

    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    config = settings(str(tiny_policy(tmp_path / "policy")), max_new_tokens=5)
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
