"""Run logs: one row per evaluation point (step, kl in nats per sequence, proxy, gold, ...).

Readers accept CSV, JSONL and a TRL `trainer_state.json`. A bad file is rejected with a
message naming the file, the row and the field, because a fit of a silently mangled log is
worse than no fit. Gold may be missing between gold evaluations (an empty cell or a missing
key); NaN or infinite values are errors, never skipped.

Logs are read as a stream into typed arrays (about 60 bytes a row), with limits on the bytes and rows
read (`MAX_BYTES`, `MAX_ROWS`; raise them with the keyword arguments or `goodhartlab fit --max-rows`), so
a huge or endless input (`/dev/zero`) is refused with a message rather than read until memory runs out.
A UTF-8 byte-order mark (Excel's default) is accepted. A step logged twice (a run resumed from a
checkpoint logs again the steps after it) keeps its last row, and the log's notes say so.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from goodhartlab.measure.curve import Curve, average_repeats
from goodhartlab.measure.kl import KLUnit, to_nats_per_sequence
from goodhartlab.results import PRESSURE_KINDS, CurvePoints, PressureKind, check_pressure_kind

MAX_BYTES = 4 * 2**30
"""Bytes read from a log before it is refused as too large (4 GiB)."""
MAX_ROWS = 20_000_000
"""Rows read before a log is refused as too long."""
MAX_JSON_BYTES = 512 * 2**20
"""A trainer_state.json is parsed whole: at most this large."""
MAX_LINE_BYTES = 1 << 20
"""A row longer than this (1 MiB) is not a run log's."""
CHUNK_BYTES = 1 << 20
EXACT_INTEGER = 2**53
"""Steps and seeds are stored as float64 on the way in: whole numbers up to here are exact."""

REQUIRED = ("step", "kl", "proxy", "gold")
OPTIONAL_NUMBERS = ("length", "entropy", "seed")
COLUMNS = (*REQUIRED, *OPTIONAL_NUMBERS, "ensemble_scores", "pressure_kind")

# TRL's metric names, in one place: the log reader here and the training callback (integrations.trl) both use them.
TRL_KL_KEYS: tuple[tuple[str, KLUnit], ...] = (("objective/kl", "nats_per_sequence"), ("kl", "nats_per_token"))
"""(key, unit) in the order they are looked for: PPO and Online DPO log a sequence sum; GRPO and RLOO a masked
per-token mean, which needs the batch's mean completion length to become nats per sequence."""
TRL_PROXY_KEYS = ("reward", "objective/scores")
"""GRPO and RLOO: the weighted sum of the reward functions they optimize; PPO: the reward model's score."""
TRL_LENGTH_KEY = "completions/mean_length"
TRL_ENTROPY_KEY = "entropy"
"""GRPO's mean token entropy of the completions (a training metric detectors read)."""
TRL_GOLD_KEY = "rewards/gold/mean"
"""Where gold is, when it is a weight-0 reward function named 'gold' (TRL logs rewards/<name>/mean)."""
TRL_TRAINING_KEYS = ("loss", *TRL_PROXY_KEYS, *(key for key, _ in TRL_KL_KEYS))
"""A log entry holding one of these is a training step; others are evaluations or the end-of-training summary."""


def reward_function_key(name: str) -> str:
    """The key TRL logs a reward function's batch mean under."""
    return f"rewards/{name}/mean"


class RunLogError(ValueError):
    """A run log that cannot be read; the message says where and what to do."""

    def __init__(self, path: str | Path, message: str, row: str | None = None,
                 field: str | None = None) -> None:
        where = ", ".join(part for part in (row, f"field '{field}'" if field else None) if part)
        super().__init__(f"{path}: {where + ': ' if where else ''}{message}")
        self.path, self.row, self.field = str(path), row, field


@dataclass(frozen=True)
class RunLog:
    path: str
    step: NDArray[np.float64]
    kl: NDArray[np.float64]
    proxy: NDArray[np.float64]  # NaN where not logged
    gold: NDArray[np.float64]  # NaN between gold evaluations
    length: NDArray[np.float64]
    seed: NDArray[np.int64]
    pressure_kind: PressureKind = "kl"
    ensemble_scores: list[list[float] | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # unit conversions applied on ingest
    gold_key: str | None = None  # in a TRL log, the key gold was read from
    entropy: NDArray[np.float64] | None = None  # the policy's mean entropy, where the log has it (NaN elsewhere)

    def __len__(self) -> int:
        return int(self.step.size)

    @property
    def has_gold(self) -> NDArray[np.bool_]:
        return ~np.isnan(self.gold)

    def curve_points(self) -> CurvePoints:
        """The gold-evaluated rows as one curve against KL, for a results store: rows at an equal KL averaged
        (seeds and all), proxy averaged where it was logged."""
        rows = self.has_gold
        levels, proxy, gold = average_repeats(self.kl[rows], self.proxy[rows], self.gold[rows])
        return CurvePoints(levels.tolist(), [None if np.isnan(p) else float(p) for p in proxy], gold.tolist(),
                           self.pressure_kind)

    def curve(self) -> Curve:
        """The gold-evaluated rows as a curve against KL.

        Seeds that log the same steps are aligned by step, at the mean KL of that step (or against
        steps, `pressure_kind` "steps", where mean KL does not increase with them). Otherwise the rows are pooled and
        rows with equal KL averaged.
        """
        rows = self.has_gold
        kl, proxy, gold = self.kl[rows], self.proxy[rows], self.gold[rows]
        steps, seeds = self.step[rows], self.seed[rows]
        seed_ids = np.unique(seeds)
        aligned = seed_ids.size > 1 and len({tuple(np.sort(steps[seeds == s])) for s in seed_ids}) == 1
        if aligned:
            _, index = np.unique(steps, return_inverse=True)
            mean_kl = np.bincount(index, weights=kl) / np.bincount(index)
            if np.all(np.diff(mean_kl) > 0):
                return Curve.from_points(mean_kl[index], proxy, gold, seeds, self.pressure_kind)
            return Curve.from_points(steps, proxy, gold, seeds, "steps")
        levels, mean_proxy, mean_gold = average_repeats(kl, proxy, gold)
        return Curve(levels, mean_proxy[None, :], mean_gold[None, :], self.pressure_kind)


def _number(path: Path, row: str, name: str, raw: Any, *, required: bool) -> float:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if required:
            raise RunLogError(path, "is missing; every row needs it", row, name)
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise RunLogError(path, f"expected a number, got {json.dumps(raw)[:40]}", row, name)
    try:
        value = float(raw)
    except ValueError:
        raise RunLogError(path, f"expected a number, got {str(raw)[:40]!r}", row, name) from None
    except OverflowError:
        raise RunLogError(path, f"a number of {len(str(raw))} digits is too large", row, name) from None
    if not math.isfinite(value):
        hint = " (leave it empty where gold was not evaluated)" if name == "gold" else ""
        raise RunLogError(path, f"value {raw!r} is not finite; NaN and infinite rewards are "
                          f"reported, never averaged{hint}", row, name)
    return value


def _ensemble(path: Path, row: str, raw: Any) -> list[float] | None:
    if raw is None or raw == "":
        return None
    values = raw
    if isinstance(raw, str):
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            raise RunLogError(path, "expected a JSON list of member scores such as [0.1, 0.3]",
                              row, "ensemble_scores") from None
    if not isinstance(values, list) or not values:
        raise RunLogError(path, "expected a non-empty list of member scores", row, "ensemble_scores")
    return [_number(path, row, f"ensemble_scores[{i}]", v, required=True) for i, v in enumerate(values)]


@dataclass
class _Limits:
    max_bytes: int = MAX_BYTES
    max_rows: int = MAX_ROWS
    require_gold: bool = True


def _build(path: Path, rows: Iterator[tuple[str, Mapping[str, Any]]], notes: list[str],
           limits: _Limits) -> RunLog:
    """Gather rows into typed arrays, checking each value where it is read (file, row, field)."""
    columns = {name: array("d") for name in (*REQUIRED, "length", "entropy")}
    seeds = array("q")
    ensembles: list[list[float] | None] = []
    labels: list[str] = []
    kinds: set[str] = set()
    for label, record in rows:
        if len(labels) >= limits.max_rows:
            raise RunLogError(path, f"has more than {limits.max_rows:,} rows; raise the limit (--max-rows) if it "
                              "is meant to be this long")
        for name in REQUIRED:
            columns[name].append(_number(path, label, name, record.get(name), required=name in ("step", "kl")))
        if columns["kl"][-1] < 0:
            raise RunLogError(path, f"is negative ({columns['kl'][-1]:.4g}); KL to the reference policy is >= 0 in "
                              "nats per sequence. A negative value is usually a k1 estimate on a small batch: log k3 "
                              "(always >= 0) instead", label, "kl")
        length = _number(path, label, "length", record.get("length"), required=False)
        if length < 0:
            raise RunLogError(path, f"is negative ({length:.4g}); a mean length counts tokens", label, "length")
        columns["length"].append(length)
        columns["entropy"].append(_number(path, label, "entropy", record.get("entropy"), required=False))
        seeds.append(_whole(path, label, "seed", _number(path, label, "seed", record.get("seed"), required=False)))
        _whole(path, label, "step", columns["step"][-1])
        ensembles.append(_ensemble(path, label, record.get("ensemble_scores")))
        labels.append(label)
        kind = record.get("pressure_kind")
        if kind not in (None, ""):
            if kind not in PRESSURE_KINDS:
                raise RunLogError(path, f"{str(kind)[:40]!r} is not a pressure kind; use one of "
                                  f"{', '.join(PRESSURE_KINDS)}", label, "pressure_kind")
            kinds.add(str(kind))
    if not labels:
        raise RunLogError(path, "holds no rows; a run log needs one row per evaluation point with "
                          f"the fields {', '.join(REQUIRED)}")
    if len(kinds) > 1:
        raise RunLogError(path, f"mixes pressure kinds {sorted(kinds)}; split it into one log per kind",
                          field="pressure_kind")
    arrays = {name: np.frombuffer(column, dtype=np.float64) for name, column in columns.items()}
    seed = np.frombuffer(seeds, dtype=np.int64)
    if limits.require_gold and np.isnan(arrays["gold"]).all():
        raise RunLogError(path, "no row has a gold score, so nothing can be fitted; log the gold "
                          "reward at least at some evaluation steps", field="gold")
    keep = _last_of_each_step(seed, arrays["step"])
    if keep is not None:
        notes.append(f"{len(labels) - keep.size} row(s) log a step of their seed again (a run resumed from a "
                     f"checkpoint?); the last row of each step is kept (first repeat: {labels[_first_repeat(keep)]})")
        arrays = {name: values[keep] for name, values in arrays.items()}
        seed, ensembles = seed[keep], [ensembles[i] for i in keep]
    return RunLog(path=str(path), step=arrays["step"], kl=arrays["kl"], proxy=arrays["proxy"], gold=arrays["gold"],
                  length=arrays["length"], seed=seed,
                  entropy=None if np.isnan(arrays["entropy"]).all() else arrays["entropy"],
                  pressure_kind=check_pressure_kind(kinds.pop()) if kinds else "kl", ensemble_scores=ensembles,
                  notes=notes)


def _whole(path: Path, row: str, name: str, value: float) -> int:
    """A step or seed as a whole number (0 where a seed is not given)."""
    if math.isnan(value):
        return 0
    if value != int(value) or abs(value) >= EXACT_INTEGER:
        raise RunLogError(path, f"must be a whole number below 2^53, got {value:.17g}", row, name)
    return int(value)


def _last_of_each_step(seed: np.ndarray, step: np.ndarray) -> np.ndarray | None:
    """Indices of the rows to keep when a (seed, step) repeats: the last of each, in order; None if none repeats."""
    pairs = np.stack([seed.astype(np.float64), step], axis=1)
    _, first_from_end = np.unique(pairs[::-1], axis=0, return_index=True)
    if first_from_end.size == step.size:
        return None
    return np.sort(step.size - 1 - first_from_end)


def _first_repeat(keep: np.ndarray) -> int:
    """The first row dropped: where the kept indices first skip one."""
    expected = np.arange(keep.size)
    skipped = np.flatnonzero(keep != expected)
    return int(expected[skipped[0]]) if skipped.size else int(keep.size)


def _lines(path: Path, handle: Any, limits: _Limits) -> Iterator[str]:
    """The file's lines as text, read in chunks: UTF-8 (a byte-order mark is dropped), at most `max_bytes` in
    all and MAX_LINE_BYTES a line, no NUL bytes. Endless or binary input is refused at the first chunk."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    read = 0
    line_number = 0
    while True:
        chunk = handle.read(CHUNK_BYTES)
        read += len(chunk)
        if read > limits.max_bytes:
            raise RunLogError(path, f"is larger than {limits.max_bytes:,} bytes; raise the limit if it is meant to "
                              "be this large")
        nul = chunk.find(b"\0")
        if nul >= 0:
            raise RunLogError(path, f"holds NUL bytes (byte {read - len(chunk) + nul}): not a text log; export the "
                              "log as CSV or JSONL")
        try:
            pending += decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as error:
            raise RunLogError(path, f"is not UTF-8 text (near byte {read - len(chunk) + error.start}); export the "
                              "log as CSV or JSONL") from None
        *complete, pending = pending.split("\n")
        for line in complete:
            line_number += 1
            yield line + "\n"
        if len(pending) > MAX_LINE_BYTES:
            raise RunLogError(path, f"line {line_number + 1} is longer than {MAX_LINE_BYTES:,} characters; not a "
                              "run log's row")
        if not chunk:
            if pending:
                yield pending
            return


def _csv_rows(path: Path, lines: Iterator[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    reader = csv.reader(lines, strict=True)
    start = 1
    try:
        header = next(reader, None)
        if not header:
            raise RunLogError(path, f"is empty; expected a header with the columns {', '.join(REQUIRED)}")
        names = [name.strip() for name in header]
        repeated = sorted({name for name in names if name and names.count(name) > 1})
        if repeated:
            raise RunLogError(path, f"the header names {', '.join(repeated)} more than once; which one is meant? "
                              "Keep one column of each name", "line 1", repeated[0])
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            raise RunLogError(path, f"the header lacks the column(s) {', '.join(missing)} "
                              f"(found: {', '.join(names)[:200]}); KL must be in nats per sequence",
                              "line 1", missing[0])
        while True:
            start = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                return
            if not cells:
                continue  # a blank line
            line = f"line {start}"
            if len(cells) != len(names):
                advice = ("leave a cell empty (',,') where a value was not logged" if len(cells) < len(names) else
                          "quote a value that holds a comma")
                raise RunLogError(path, f"has {len(cells)} cells but the header names {len(names)}; {advice}", line)
            yield line, dict(zip(names, cells, strict=True))
    except csv.Error as error:
        what = "a quote (\") opened here is never closed" if "EOF" in str(error) or "end of data" in str(error) \
            else f"is not valid CSV ({error})"
        raise RunLogError(path, what, f"line {start}") from None


def _jsonl_rows(path: Path, lines: Iterator[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        label = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RunLogError(path, f"is not valid JSON ({error.msg} at column {error.colno})",
                              label) from None
        except RecursionError:
            raise RunLogError(path, "is nested too deeply to be a row", label) from None
        yield label, _checked_record(path, label, record, "per line")


def _list_rows(path: Path, items: list[Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """A JSON list of rows: they are named by their place in the list, which need not be a line."""
    for number, item in enumerate(items, start=1):
        label = f"row {number} of the list"
        yield label, _checked_record(path, label, item, "per row")


def _checked_record(path: Path, label: str, record: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(record, dict):
        raise RunLogError(path, f"expected a JSON object {where}, got {type(record).__name__}", label)
    missing = [name for name in REQUIRED if name not in record]
    if missing and not (missing == ["gold"]):  # gold may be absent between evaluations
        raise RunLogError(path, f"lacks the key(s) {', '.join(missing)}", label, missing[0])
    return record


def trl_gold_key(path: str | Path, keys: set[str], gold_key: str | None) -> str:
    """The key gold is read from in a TRL log holding `keys`: `gold_key` if given (and present), else
    'rewards/gold/mean' or 'gold', else the one reward function's mean whose name says gold. Never a '/std', and never a
    key that only happens to contain 'gold' (say a 'golden_ratio_lr')."""
    rewards = sorted(key for key in keys if key.startswith("rewards/") and key.endswith("/mean"))
    if gold_key is not None:
        if gold_key not in keys:
            raise RunLogError(path, f"no log entry has the key {gold_key!r} (--gold-key); the reward functions' means "
                              f"logged are: {', '.join(rewards) or 'none'}", field=gold_key)
        return gold_key
    for default in (TRL_GOLD_KEY, "gold"):
        if default in keys:
            return default
    candidates = [key for key in rewards if "gold" in key.lower()]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise RunLogError(path, f"several reward functions could be gold ({', '.join(candidates)}); pass --gold-key "
                          "naming the one", field="gold")
    raise RunLogError(path, f"no log entry has gold: expected '{TRL_GOLD_KEY}' (a weight-0 reward function named "
                      f"'gold'); the reward functions' means logged are: {', '.join(rewards) or 'none'}. Pass "
                      "--gold-key naming the key that holds gold", field="gold")


def _trl_rows(path: Path, history: list[Any], gold_name: str | None,
              notes: list[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    noted: set[str] = set()
    for index, entry in enumerate(history):
        label = f"log_history[{index}]"
        kl_found = next(((key, unit) for key, unit in TRL_KL_KEYS if key in entry), None)
        if kl_found is None:
            continue  # a summary or eval-only entry: not an evaluation point of the policy
        key, unit = kl_found
        kl = entry[key]
        if unit == "nats_per_token":
            length = entry.get(TRL_LENGTH_KEY)
            if length is None:
                raise RunLogError(path, f"'{key}' is a per-token mean in GRPO/RLOO logs and needs "
                                  f"'{TRL_LENGTH_KEY}' in the same entry to become nats per sequence", label,
                                  TRL_LENGTH_KEY)
            per_token = _number(path, label, key, kl, required=True)
            mean_length = _number(path, label, TRL_LENGTH_KEY, length, required=True)
            if mean_length < 0:
                raise RunLogError(path, f"is negative ({mean_length:.4g}); a mean completion length counts tokens",
                                  label, TRL_LENGTH_KEY)
            kl = float(to_nats_per_sequence(per_token, unit, mean_length))
            if key not in noted:
                notes.append(f"{key}: per-token mean × {TRL_LENGTH_KEY} → nats per sequence")
                noted.add(key)
        proxy_name = next((k for k in TRL_PROXY_KEYS if k in entry), None)
        yield label, {
            "step": entry.get("step"), "kl": kl,
            "proxy": entry.get(proxy_name) if proxy_name else None,
            "gold": entry.get(gold_name) if gold_name else None,
            "length": entry.get(TRL_LENGTH_KEY),
            "entropy": entry.get(TRL_ENTROPY_KEY),
        }


def _trl_log(path: Path, state: Mapping[str, Any], gold_key: str | None, notes: list[str], limits: _Limits) -> RunLog:
    history = state.get("log_history")
    if not isinstance(history, list):
        raise RunLogError(path, "has no 'log_history' list; is this a TRL/transformers "
                          "trainer_state.json?", field="log_history")
    for index, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise RunLogError(path, f"expected an object, got {type(entry).__name__}", f"log_history[{index}]")
    keys = {key for entry in history for key in entry}
    try:
        gold_name: str | None = trl_gold_key(path, keys, gold_key)
    except RunLogError:
        if limits.require_gold or gold_key is not None:
            raise
        gold_name = None
    log = _build(path, _trl_rows(path, history, gold_name, notes), notes, limits)
    return replace(log, gold_key=gold_name)


def read_run_log(path: str | Path, *, gold_key: str | None = None, max_bytes: int | None = None,
                 max_rows: int | None = None, require_gold: bool = True) -> RunLog:
    """Read a CSV, JSONL or TRL trainer_state.json run log.

    In a TRL log, gold is read from `gold_key`, else from 'rewards/gold/mean' or 'gold' (a weight-0 reward
    function named gold), else from the one reward function whose name says gold (see `trl_gold_key`).
    `require_gold=False` reads a log without gold too (what a monitor watches); fitting needs gold.
    """
    source = Path(path)
    limits = _Limits(max_bytes or MAX_BYTES, max_rows or MAX_ROWS, require_gold)
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise RunLogError(source, f"unknown log format '{suffix or '(no extension)'}'; use .csv, "
                          ".jsonl or a TRL trainer_state.json")
    notes: list[str] = []
    try:
        with source.open("rb") as handle:
            if suffix == ".json":
                return _json_log(source, handle, gold_key, notes, limits)
            rows = _csv_rows(source, _lines(source, handle, limits)) if suffix == ".csv" else \
                _jsonl_rows(source, _lines(source, handle, limits))
            return _build(source, rows, notes, limits)
    except FileNotFoundError:
        raise RunLogError(source, "no such file") from None
    except IsADirectoryError:
        raise RunLogError(source, "is a directory; pass the log file itself") from None
    except OSError as error:
        raise RunLogError(source, f"cannot read it ({error.strerror or error})") from None


def _json_log(path: Path, handle: Any, gold_key: str | None, notes: list[str], limits: _Limits) -> RunLog:
    """A TRL trainer_state.json, or a JSON list of rows: parsed whole, so at most MAX_JSON_BYTES."""
    most = min(limits.max_bytes, MAX_JSON_BYTES)
    text = "".join(_lines(path, handle, _Limits(most, limits.max_rows, limits.require_gold)))
    if not text.strip():
        raise RunLogError(path, f"is empty; expected rows with {', '.join(REQUIRED)}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunLogError(path, f"is not valid JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise RunLogError(path, "is nested too deeply to be a run log") from None
    if isinstance(document, dict):
        return _trl_log(path, document, gold_key, notes, limits)
    if isinstance(document, list):
        return _build(path, _list_rows(path, document), notes, limits)
    raise RunLogError(path, "expected a trainer_state.json object or a list of rows")
