"""Preference pairs: a prompt, the answer the gold prefers and the one it does not.

Reward models are trained and scored on these. They come from MultiEmo (`review_pairs`: a positive
review over a negative one) or from a user's JSONL file (`read_pairs`), whose every bad row is one error
naming the file, the row and the field: a missing field, an empty text, the same text on both sides,
a gold score that is not a finite number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from goodhartlab.files import write_atomically

REQUIRED = ("prompt", "chosen", "rejected")
OPTIONAL_NUMBERS = ("chosen_gold", "rejected_gold")


class PairError(ValueError):
    """A preference pair (or a file of them) that cannot be trained or scored on; the message names where."""


@dataclass(frozen=True)
class PreferencePair:
    """`chosen` is the better answer to `prompt`; the gold scores, where known, say by how much."""

    prompt: str
    chosen: str
    rejected: str
    chosen_gold: float | None = None
    rejected_gold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def check_pair(pair: PreferencePair, where: str) -> None:
    """One pair's rules, with `where` ("pairs.jsonl, row 3") in the message."""
    for name in REQUIRED:
        value = getattr(pair, name)
        if not isinstance(value, str):
            raise PairError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
    for name in ("chosen", "rejected"):
        if not getattr(pair, name).strip():
            raise PairError(f"{where}: field '{name}' is empty; a reward model cannot compare an empty answer")
    if pair.chosen == pair.rejected:
        raise PairError(f"{where}: fields 'chosen' and 'rejected' are the same text; such a pair says nothing about "
                        "which answer is better: drop it")
    for name in OPTIONAL_NUMBERS:
        value = getattr(pair, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise PairError(f"{where}: field '{name}' is {value!r}, not a finite number; NaN or infinite labels are "
                            "reported, never trained on: fix or drop the row")
    if pair.chosen_gold is not None and pair.rejected_gold is not None and pair.chosen_gold < pair.rejected_gold:
        raise PairError(f"{where}: 'chosen_gold' ({pair.chosen_gold}) is below 'rejected_gold' ({pair.rejected_gold}); "
                        "chosen must be the answer the gold prefers")


def check_preference_pairs(pairs: Sequence[PreferencePair], source: str = "pairs") -> None:
    """Every pair's rules; `source` names the file or set in the message. At least one pair."""
    if not pairs:
        raise PairError(f"{source}: no preference pairs")
    for row, pair in enumerate(pairs, 1):
        check_pair(pair, f"{source}, row {row}")


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Pairs from a JSONL file, one object a line with prompt, chosen, rejected (and optionally chosen_gold,
    rejected_gold); every error names the file, the row and the field."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PairError(f"{file}: cannot read it ({error})") from None
    pairs = []
    for row, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{file}, row {row}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise PairError(f"{where}: not a JSON object ({error.msg})") from None
        if not isinstance(data, dict):
            raise PairError(f"{where}: expected a JSON object with fields {', '.join(REQUIRED)}")
        missing = [name for name in REQUIRED if name not in data]
        if missing:
            raise PairError(f"{where}: missing field '{missing[0]}' (each row needs {', '.join(REQUIRED)})")
        unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL_NUMBERS))
        if unknown:
            raise PairError(f"{where}: unknown field '{unknown[0]}' (known: {', '.join(REQUIRED + OPTIONAL_NUMBERS)})")
        pair = PreferencePair(**{name: _number(data[name]) if name in OPTIONAL_NUMBERS else data[name]
                                 for name in data})
        check_pair(pair, where)
        pairs.append(pair)
    if not pairs:
        raise PairError(f"{file}: no preference pairs (one JSON object a line: {', '.join(REQUIRED)})")
    return pairs


def _number(value: Any) -> Any:
    """JSON has no NaN, but Python's json reads 'NaN' and a file may hold "nan" as a string: both are NaN here."""
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return value


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> Path:
    """Pairs as JSONL, written atomically."""
    text = "".join(json.dumps(pair.to_dict(), ensure_ascii=False) + "\n" for pair in pairs)
    return write_atomically(path, lambda staged: staged.write_text(text, encoding="utf-8"))


def review_pairs(count: int, *, offset: int = 0, words: int = 20,
                 opening: bool = False) -> list[PreferencePair]:
    """Gold-labelled pairs with no sampling: the closing `words` words of a positive MultiEmo review (gold 1) over
    those of a negative one (gold 0), the sentiment task's preference. Reviews `offset` to `offset + count` of
    each label, so sets at different offsets share no review (a held-out set). `opening`: the first `words`
    words instead, the part of a review that sets the scene rather than gives the verdict (a shifted set)."""
    from goodhartlab.text.multiemo import multiemo

    reviews = multiemo()
    positive = [r.text for r in reviews if r.label == "positive"][offset:offset + count]
    negative = [r.text for r in reviews if r.label == "negative"][offset:offset + count]
    if len(positive) < count or len(negative) < count:
        raise ValueError(f"MultiEmo has {len(positive)} positive and {len(negative)} negative reviews from offset "
                         f"{offset}; asked for {count} of each")
    def part(text: str) -> str:
        kept = text.split()[:words] if opening else text.split()[-words:]
        return " " + " ".join(kept)

    return [PreferencePair("Review:", part(good), part(bad), 1.0, 0.0)
            for good, bad in zip(positive, negative, strict=True)]

