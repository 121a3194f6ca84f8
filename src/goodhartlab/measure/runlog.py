"""Run logs: one row per evaluation point (step, kl in nats per sequence, proxy, gold, ...).

Readers accept CSV, JSONL and a TRL `trainer_state.json`. A bad file is rejected with a
message naming the file, the row and the field, because a fit of a silently mangled log is
worse than no fit. Gold may be missing between gold evaluations (an empty cell or a missing
key); NaN or infinite values are errors, never skipped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from goodhartlab.measure.curve import Curve, average_repeats
from goodhartlab.measure.kl import KLUnit, to_nats_per_sequence
from goodhartlab.results import PRESSURE_KINDS, CurvePoints, PressureKind, check_pressure_kind

REQUIRED = ("step", "kl", "proxy", "gold")
OPTIONAL_NUMBERS = ("length", "seed")
COLUMNS = (*REQUIRED, *OPTIONAL_NUMBERS, "ensemble_scores", "pressure_kind")

# TRL's metric names, in one place: the log reader here and the training callback (integrations.trl) both use them.
TRL_KL_KEYS: tuple[tuple[str, KLUnit], ...] = (("objective/kl", "nats_per_sequence"), ("kl", "nats_per_token"))
"""(key, unit) in the order they are looked for: PPO and Online DPO log a sequence sum; GRPO and RLOO a masked
per-token mean, which needs the batch's mean completion length to become nats per sequence."""
TRL_PROXY_KEYS = ("reward", "objective/scores")
"""GRPO and RLOO: the weighted sum of the reward functions they optimize; PPO: the reward model's score."""
TRL_LENGTH_KEY = "completions/mean_length"
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


def _build(path: Path, rows: Iterator[tuple[str, Mapping[str, Any]]], notes: list[str]) -> RunLog:
    columns: dict[str, list[float]] = {name: [] for name in (*REQUIRED, *OPTIONAL_NUMBERS)}
    ensembles: list[list[float] | None] = []
    kinds: set[str] = set()
    for label, record in rows:
        for name in REQUIRED:
            columns[name].append(_number(path, label, name, record.get(name),
                                         required=name in ("step", "kl")))
        columns["length"].append(_number(path, label, "length", record.get("length"), required=False))
        seed = _number(path, label, "seed", record.get("seed"), required=False)
        if not math.isnan(seed) and seed != int(seed):
            raise RunLogError(path, f"a seed must be a whole number, got {seed}", label, "seed")
        columns["seed"].append(0.0 if math.isnan(seed) else seed)
        ensembles.append(_ensemble(path, label, record.get("ensemble_scores")))
        kind = record.get("pressure_kind")
        if kind not in (None, ""):
            if kind not in PRESSURE_KINDS:
                raise RunLogError(path, f"{str(kind)[:40]!r} is not a pressure kind; use one of "
                                  f"{', '.join(PRESSURE_KINDS)}", label, "pressure_kind")
            kinds.add(str(kind))
    if not columns["step"]:
        raise RunLogError(path, "holds no rows; a run log needs one row per evaluation point with "
                          f"the fields {', '.join(REQUIRED)}")
    if len(kinds) > 1:
        raise RunLogError(path, f"mixes pressure kinds {sorted(kinds)}; split it into one log per kind",
                          field="pressure_kind")
    gold = np.array(columns["gold"])
    if np.isnan(gold).all():
        raise RunLogError(path, "no row has a gold score, so nothing can be fitted; log the gold "
                          "reward at least at some evaluation steps", field="gold")
    return RunLog(path=str(path), step=np.array(columns["step"]), kl=np.array(columns["kl"]),
                  proxy=np.array(columns["proxy"]), gold=gold, length=np.array(columns["length"]),
                  seed=np.array(columns["seed"], dtype=np.int64),
                  pressure_kind=check_pressure_kind(kinds.pop()) if kinds else "kl", ensemble_scores=ensembles,
                  notes=notes)


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if not header:
        raise RunLogError(path, f"is empty; expected a header with the columns {', '.join(REQUIRED)}")
    names = [name.strip() for name in header]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise RunLogError(path, f"the header lacks the column(s) {', '.join(missing)} "
                          f"(found: {', '.join(names)[:200]}); KL must be in nats per sequence",
                          "line 1", missing[0])
    for record in reader:
        line = f"line {reader.line_num}"
        if None in record:
            raise RunLogError(path, f"has {len(header) + len(record[None])} cells but the header "
                              f"names {len(header)}", line)
        if None in record.values():  # cells are matched by position: a short row may have shifted
            cells = sum(value is not None for value in record.values())
            raise RunLogError(path, f"has {cells} cells but the header names {len(header)}; leave a cell "
                              "empty (',,') where a value was not logged", line)
        yield line, {key.strip(): value for key, value in record.items()}


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RunLogError(path, f"is not valid JSON ({error.msg} at column {error.colno})",
                              label) from None
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


def _trl_rows(path: Path, history: list[Any], gold_name: str,
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
            kl = float(to_nats_per_sequence(per_token, unit, mean_length))
            if key not in noted:
                notes.append(f"{key}: per-token mean × {TRL_LENGTH_KEY} → nats per sequence")
                noted.add(key)
        proxy_name = next((k for k in TRL_PROXY_KEYS if k in entry), None)
        yield label, {
            "step": entry.get("step"), "kl": kl,
            "proxy": entry.get(proxy_name) if proxy_name else None,
            "gold": entry.get(gold_name),
            "length": entry.get(TRL_LENGTH_KEY),
        }


def _trl_log(path: Path, state: Mapping[str, Any], gold_key: str | None, notes: list[str]) -> RunLog:
    history = state.get("log_history")
    if not isinstance(history, list):
        raise RunLogError(path, "has no 'log_history' list; is this a TRL/transformers "
                          "trainer_state.json?", field="log_history")
    for index, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise RunLogError(path, f"expected an object, got {type(entry).__name__}", f"log_history[{index}]")
    keys = {key for entry in history for key in entry}
    gold_name = trl_gold_key(path, keys, gold_key)
    log = _build(path, _trl_rows(path, history, gold_name, notes), notes)
    return RunLog(**{**log.__dict__, "gold_key": gold_name})


def read_run_log(path: str | Path, *, gold_key: str | None = None) -> RunLog:
    """Read a CSV, JSONL or TRL trainer_state.json run log.

    In a TRL log, gold is read from `gold_key`, else from 'rewards/gold/mean' (a weight-0 reward function
    named gold), else from the one reward function whose name says gold (see `trl_gold_key`).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunLogError(source, "no such file") from None
    except IsADirectoryError:
        raise RunLogError(source, "is a directory; pass the log file itself") from None
    except UnicodeDecodeError as error:
        raise RunLogError(source, f"is not UTF-8 text (byte {error.start}); export the log as CSV "
                          "or JSONL") from None
    if not text.strip():
        raise RunLogError(source, f"is empty; expected rows with {', '.join(REQUIRED)}")
    suffix = source.suffix.lower()
    notes: list[str] = []
    try:
        if suffix == ".csv":
            return _build(source, _csv_rows(source, text), notes)
        if suffix in (".jsonl", ".ndjson"):
            return _build(source, _jsonl_rows(source, text), notes)
        if suffix == ".json":
            try:
                document = json.loads(text)
            except json.JSONDecodeError as error:
                raise RunLogError(source, f"is not valid JSON ({error.msg} at line {error.lineno})") from None
            if isinstance(document, dict):
                return _trl_log(source, document, gold_key, notes)
            if isinstance(document, list):
                return _build(source, _list_rows(source, document), notes)
            raise RunLogError(source, "expected a trainer_state.json object or a list of rows")
    except csv.Error as error:
        raise RunLogError(source, f"is not valid CSV ({error})") from None
    raise RunLogError(source, f"unknown log format '{suffix or '(no extension)'}'; use .csv, "
                      ".jsonl or a TRL trainer_state.json")
