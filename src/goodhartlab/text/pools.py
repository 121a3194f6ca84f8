"""Sampled pools: N responses per prompt from a policy, kept on disk with their scores and features.

A pool is keyed by everything that determines it (policy, prompts, pool size, length, temperature,
dtype, batch size, seed, device), so every study that needs the same responses reads them instead of
sampling them again, and a repeated study finds them. Sampling is journaled batch by batch and
scoring and encoding chunk by chunk, so a run stopped an hour into a large pool resumes where it
stopped. Pools are never evicted by studies; `goodhartlab assets --clear-pools` frees them.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from goodhartlab.files import write_atomically
from goodhartlab.rewards.scorer import Scorer
from goodhartlab.rewards.transforms import word_count
from goodhartlab.text.models import Device, resolve_device

SampleDtype = Literal["bfloat16", "float32"]
JOURNAL_SUFFIX = ".batches.jsonl"  # a pool's batches while it is being sampled
PROGRESS_EVERY_S = 30.0  # a long step reports at most this often
# responses scored or encoded at a time, so a long step can report: a multiple of the encoders'
# batches of 64, so every batch, padding included, and with it every number, is what one call gives
CHUNK_RESPONSES = 1024


@dataclass(frozen=True)
class SamplingSettings:
    """How a policy samples a pool: everything beyond the prompts, pool size and seed that its responses depend on."""

    policy: str
    max_new_tokens: int
    temperature: float = 1.0
    sample_batch_size: int = 128
    sample_dtype: SampleDtype = "bfloat16"
    device: Device = "auto"

    def resolved_device(self) -> str:
        """'cpu' or 'cuda': `auto` is CUDA when torch sees one."""
        return resolve_device(self.device)


def _say(message: str) -> None:
    print(f"[pools] {message}", file=sys.stderr, flush=True)


class Progress:
    """Responses done out of `total`, on stderr at most every `every` seconds and at the end, with the
    time left estimated from this run's own pace (`already`: what a resumed run found done)."""

    def __init__(self, total: int, *, already: int = 0, every: float = PROGRESS_EVERY_S) -> None:
        self.total, self.already, self.every = total, already, every
        self.start = self.last = time.monotonic()

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        if count < self.total and now - self.last < self.every:
            return
        self.last = now
        elapsed, new = now - self.start, count - self.already
        left = ""
        if new > 0 and count < self.total:
            left = f", about {_duration(elapsed / new * (self.total - count))} left"
        _say(f"  {count:,}/{self.total:,} responses ({_duration(elapsed)}{left})")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _in_chunks(what: str, prompts: list[str], responses: list[str],
               step: Callable[[list[str], list[str]], np.ndarray], target: Path,
               finish: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`step` (a scorer's or encoder's) over the pairs CHUNK_RESPONSES at a time, with progress, and
    `finish` of the whole saved to `target`. Each chunk is kept beside `target` as it finishes, so a
    run stopped an hour into encoding a large pool resumes where it stopped; the chunks go once
    `target` is written."""
    _say(f"{what} {len(responses):,} responses")
    starts = range(0, len(responses), CHUNK_RESPONSES)
    parts = {start: _finished_chunk(target, start, min(CHUNK_RESPONSES, len(responses) - start)) for start in starts}
    already = sum(len(part) for part in parts.values() if part is not None)
    if already:
        _say(f"  resuming: {already:,} responses were done before the last run stopped")
    progress = Progress(len(responses), already=already)
    for start in starts:
        if parts[start] is None:
            end = start + CHUNK_RESPONSES
            part = parts[start] = np.asarray(step(prompts[start:end], responses[start:end]))
            _save_array(_chunk_path(target, start), part)
        progress(min(start + CHUNK_RESPONSES, len(responses)))
    whole = finish(np.concatenate([parts[start] for start in starts]))
    _save_array(target, whole)
    _drop_chunks(target)
    return whole


def _cached_array(target: Path) -> np.ndarray | None:
    """The whole array if a run finished it, else None. Chunks a run left when it stopped between
    writing the whole and deleting them go now."""
    if not target.exists():
        return None
    _drop_chunks(target)
    _mark_used(target)
    return np.load(target)


def _drop_chunks(target: Path) -> None:
    for chunk in target.parent.glob(f"{glob.escape(target.name)}.from-*.npy"):
        chunk.unlink(missing_ok=True)


def _chunk_path(target: Path, start: int) -> Path:
    """Where the chunk from response `start` waits; it shares the pool's name, so the cache's listing
    and removal of pools count it with them."""
    return target.with_name(f"{target.name}.from-{start:09d}.npy")


def _finished_chunk(target: Path, start: int, length: int) -> np.ndarray | None:
    """A chunk a stopped run finished, or None: unreadable or of another length (chunk size changed)."""
    path = _chunk_path(target, start)
    try:
        part = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    return part if len(part) == length else None


class PoolSampler:
    """Loads the policy once and samples pools, keeping each in the cache under a key of everything
    that determines it (policy, prompts, pool, length, temperature, dtype, batch size, seed, device).
    `scores` and `features` of a pool are cached beside it."""

    def __init__(self, settings: SamplingSettings) -> None:
        self.settings = settings
        self._policy: tuple[Any, Any] | None = None
        self._tokenizer: Any = None
        self._sampler: Any = None

    @property
    def policy(self) -> tuple[Any, Any]:
        """(float32 model, tokenizer), loaded on first use: a study whose pools are cached never loads it."""
        if self._policy is None:
            from goodhartlab.text.models import load_policy

            self._policy = load_policy(self.settings.policy)
        return self._policy

    @property
    def tokenizer(self) -> Any:
        """The policy's tokenizer, without loading its weights when they are not needed."""
        if self._policy is not None:
            return self._policy[1]
        if self._tokenizer is None:
            from goodhartlab.text.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.settings.policy)
        return self._tokenizer

    @property
    def sampling_model(self) -> Any:
        """The policy in `sample_dtype`: bfloat16 halves the cost of every matrix product on CPUs that
        have it, and its rounding is far below the 4-bit quantization the SmolLM2 weights come from."""
        if self._sampler is None:
            import torch

            model = self.policy[0]
            model = model if self.settings.sample_dtype == "float32" else _copy_as(model, torch.bfloat16)
            self._sampler = model.to(self.settings.resolved_device())
        return self._sampler

    def _path(self, prompts: list[str], pool: int, seed: int) -> tuple[Path, str]:
        from goodhartlab.text.assets import cache_dir

        cfg = self.settings
        identity = [_policy_identity(cfg.policy), prompts, pool, cfg.max_new_tokens, cfg.temperature,
                    cfg.sample_dtype, cfg.sample_batch_size, seed]
        device = cfg.resolved_device()
        if device != "cpu":  # another device draws other numbers; CPU pools keep the keys they always had
            identity.append(device)
        key = json.dumps(identity)
        return cache_dir() / "pools" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json", key

    def features(self, prompts: list[str], pool: int, seed: int) -> np.ndarray:
        """The policy's features of a pool, (prompts, pool, width), cached beside it."""
        from goodhartlab.text.models import PolicyFeatures

        path = self._path(prompts, pool, seed)[0].with_suffix(".features.npy")
        if (cached := _cached_array(path)) is not None:
            return cached
        pools = self.pools(prompts, pool, seed)
        encoder = PolicyFeatures(self.sampling_model, self.policy[1])
        return _in_chunks("encoding with the policy:", *flatten_pools(prompts, pools), encoder.encode, path,
                          lambda flat: flat.reshape(len(prompts), pool, -1))

    def scores(self, scorer: Scorer, prompts: list[str], pool: int, seed: int) -> np.ndarray:
        """`scorer`'s scores of a pool, (prompts, pool), cached beside it under the scorer's name and
        version: the variants of a study share the gold, whose encoder is the slow part of scoring."""
        identity = hashlib.sha256(f"{scorer.name}\n{scorer.version}".encode()).hexdigest()[:12]
        path = self._path(prompts, pool, seed)[0].with_suffix(f".scores-{identity}.npy")
        if (cached := _cached_array(path)) is not None:
            return cached
        pools = self.pools(prompts, pool, seed)
        return _in_chunks(f"scoring with {scorer.name}:", *flatten_pools(prompts, pools), scorer.score, path,
                          lambda flat: flat.astype(np.float64).reshape(len(prompts), pool))

    def pools(self, prompts: list[str], pool: int, seed: int) -> list[list[str]]:
        path, key = self._path(prompts, pool, seed)
        journal = BatchJournal(path.with_suffix(JOURNAL_SUFFIX))
        sampled = None
        if not path.exists():
            with journal:
                if not path.exists():  # else it was sampled meanwhile, by the study this one waited for
                    sampled = self._sample(journal, path, key, prompts, pool, seed)
        if journal.path.exists():  # obsolete once the pool is written (and closed, as Windows needs)
            with contextlib.suppress(OSError):  # a read-only cache still reads
                journal.path.unlink()
        if sampled is not None:
            return sampled
        cached: list[list[str]] = json.loads(path.read_text())["pools"]
        _mark_used(path)
        return cached

    def _sample(self, journal: BatchJournal, path: Path, key: str, prompts: list[str], pool: int,
                seed: int) -> list[list[str]]:
        from goodhartlab.text.sampling import sample_pool

        cfg = self.settings
        _say(f"sampling {len(prompts)} prompts x {pool} responses of up to {cfg.max_new_tokens} tokens")
        done = journal.read(cfg.sample_batch_size, len(prompts) * pool)
        if done:
            _say(f"  resuming: {len(done)} batches were sampled before the last run stopped")
        model = self.sampling_model  # loaded before the clock starts
        progress = Progress(len(prompts) * pool, already=sum(len(batch) for batch in done.values()))
        pools = sample_pool(model, self.policy[1], prompts, pool, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, batch_size=cfg.sample_batch_size, seed=seed,
                            progress=lambda count, _: progress(count), done=done, on_batch=journal.append)
        text = json.dumps({"key": json.loads(key), "pools": pools})
        write_atomically(path, lambda partial: partial.write_text(text))
        return pools


class BatchJournal:
    """The batches of a pool being sampled, one JSON line each, written as each finishes: a study
    stopped an hour into a large pool resumes from them instead of sampling it all again (each batch
    has its own seed, so the resumed pool is the one an uninterrupted run gives).

    Used as a context manager it holds an exclusive lock on the file, so two studies that need the
    same pool (variants run on several workers) do not both sample it: the second waits for the first.
    Where the platform or file system has no locks, run one study per pool at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None

    def __enter__(self) -> BatchJournal:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a+b")
        try:
            self._lock()
        except BaseException:  # interrupted while waiting: let the file go
            self._file.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()  # and with it the lock

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:
            return
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"waiting for another study that is sampling this pool ({self.path.name})")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        except OSError as error:
            _say(f"cannot lock {self.path} ({error}): run one study per pool at a time on this file system")

    def read(self, batch_size: int, requests: int) -> dict[int, list[list[int]]]:
        """The batches written so far, by their first request, checked against a pool of `requests`
        responses in batches of `batch_size`. A line cut short when the run stopped is dropped from the
        file, so the next batch starts a line of its own."""
        self._file.seek(0)
        data = self._file.read()
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            self._file.truncate(len(complete))
        done = {}
        for number, line in enumerate(complete.splitlines(), 1):
            try:
                row = json.loads(line)
                start, tokens = row["start"], row["tokens"]
                expected = min(batch_size, requests - start) if isinstance(start, int) else -1
                if start % batch_size or expected < 1 or len(tokens) != expected or not all(
                        isinstance(response, list) and all(isinstance(token, int) for token in response)
                        for response in tokens):
                    raise ValueError(f"expected the {expected if expected > 0 else '?'} token lists of the batch "
                                     f"at request {start}")
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{self.path}, line {number}: not a sampled batch of this pool ({error}); "
                                 "delete the file to sample the pool from the start") from None
            done[start] = tokens
        return done

    def append(self, start: int, tokens: list[list[int]]) -> None:
        self._file.write((json.dumps({"start": start, "tokens": tokens}) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def is_locked(self) -> bool:
        """Whether a study holds this journal now, i.e. is sampling its pool."""
        try:
            import fcntl
        except ImportError:
            return False
        try:
            with self.path.open("rb") as file:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # gone meanwhile, or no locks here
            return False
        return False


@dataclass(frozen=True)
class CachedPool:
    """A sampled pool in the cache with everything derived from it (scores, features, the
    batches of a pool still being sampled, partial writes)."""

    name: str  # the hash the pool's files share
    files: tuple[Path, ...]
    bytes: int
    last_used: float  # seconds since the epoch: the newest of its files' times, refreshed on every read

    def being_sampled(self) -> bool:
        return any(BatchJournal(file).is_locked() for file in self.files if file.name.endswith(JOURNAL_SUFFIX))


def _mark_used(path: Path) -> None:
    """Refresh a cached file's time so `remove_cached_pools(unused_for_days=)` keeps it; a cache on a
    read-only disk, or a file removed meanwhile, is still read as before."""
    with contextlib.suppress(OSError):
        os.utime(path)


def cached_pools() -> list[CachedPool]:
    """The pools studies have sampled and kept in the cache, most recently used first. Pools are
    never evicted by the studies themselves: a repeated study must find them."""
    from goodhartlab.text.assets import cache_dir

    folder = cache_dir() / "pools"
    groups: dict[str, list[tuple[Path, os.stat_result]]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            stat = path.stat()
        except FileNotFoundError:  # a study's partial write, renamed meanwhile
            continue
        groups.setdefault(path.name.split(".", 1)[0], []).append((path, stat))
    pools = [CachedPool(name, tuple(path for path, _ in files), sum(stat.st_size for _, stat in files),
                        max(stat.st_mtime for _, stat in files)) for name, files in groups.items()]
    return sorted(pools, key=lambda pool: -pool.last_used)


def remove_cached_pools(*, unused_for_days: float | None = None) -> list[CachedPool]:
    """Delete cached pools (all, or those no study has used for `unused_for_days`) and return them.
    A study that needs one again samples it again, with the same seed and so the same responses.
    A pool a study is sampling now is kept; scores or features a study is computing from a pool
    removed under it are written all the same, so clear the cache when no study is running."""
    if unused_for_days is not None and unused_for_days < 0:
        raise ValueError(f"unused_for_days must be >= 0, got {unused_for_days}")
    cutoff = time.time() - (unused_for_days or 0) * 86400
    removed = [pool for pool in cached_pools()
               if (unused_for_days is None or pool.last_used < cutoff) and not pool.being_sampled()]
    for pool in removed:
        for file in pool.files:
            file.unlink(missing_ok=True)
    return removed


def _save_array(path: Path, array: np.ndarray) -> None:
    def write(partial: Path) -> None:
        with partial.open("wb") as file:  # a file object, so numpy does not append ".npy" to the name
            np.save(file, array)

    write_atomically(path, write)


def flatten_pools(prompts: list[str], pools: list[list[str]]) -> tuple[list[str], list[str]]:
    """(prompt of each response, response): the flat pairs every scorer and encoder takes."""
    return [p for p, responses in zip(prompts, pools, strict=True) for _ in responses], [r for rs in pools for r in rs]


def word_counts(pools: list[list[str]]) -> np.ndarray:
    """Words of each response, (prompts, pool): run through the best-of-n estimator like a score, they
    give the expected length of the proxy's pick at each n."""
    return np.array([[word_count(response) for response in responses] for responses in pools], dtype=np.float64)


def _policy_identity(policy: str) -> str:
    """A policy's name, and for a local folder the time its files last changed: a model retrained into
    the same folder must not be served the old model's pools."""
    folder = Path(policy)
    if not folder.is_dir():
        return policy
    return f"{folder.resolve()}@{max((f.stat().st_mtime_ns for f in folder.iterdir() if f.is_file()), default=0)}"


def _copy_as(model: Any, dtype: Any) -> Any:
    import copy

    return copy.deepcopy(model).to(dtype)
