"""What a detector sees of one evaluation (a `Row`) and of the run it belongs to (a `RunContext`), and which access
level each signal needs.

Access levels say what a detector may look at, so that a score is never flattered by a signal a user would not
have: L0 the proxy and the training metrics of the log; L1 plus samples (trajectories or completions, their
embeddings, statistics computed from them such as distinct n-grams); L2 plus a trusted or reference policy queried
at the states the policy visits; L3 plus sparse gold. Each signal is listed in `SIGNAL_ACCESS` once; runs are
restricted to a level by dropping every signal above it (`LabelledRun.restricted`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray


class Access(IntEnum):
    """What a detector may see; each level includes the ones below it."""

    L0 = 0  # the proxy and the training metrics of the log
    L1 = 1  # + samples: completions or trajectories, their embeddings and statistics
    L2 = 2  # + a trusted or reference policy queried at the visited states
    L3 = 3  # + sparse gold

    def __str__(self) -> str:
        return self.name


ACCESS_MEANING = {
    Access.L0: "proxy and training metrics",
    Access.L1: "+ samples",
    Access.L2: "+ trusted/reference policy",
    Access.L3: "+ sparse gold",
}

SCALAR_SIGNALS = ("kl", "proxy", "gold", "length", "entropy", "distinct_n")
ARRAY_SIGNALS = ("ensemble_scores", "embeddings", "policy_probs", "trusted_probs")
SIGNALS = (*SCALAR_SIGNALS, *ARRAY_SIGNALS)

SIGNAL_ACCESS: dict[str, Access] = {
    "kl": Access.L0,  # nats per sequence, as the trainer logs it
    "proxy": Access.L0,
    "length": Access.L0,  # mean completion or episode length
    "entropy": Access.L0,  # the policy's mean entropy, a training metric (TRL logs it)
    "ensemble_scores": Access.L0,  # each proxy member's mean score: members are proxies, not gold
    "distinct_n": Access.L1,  # computed from the completions themselves
    "embeddings": Access.L1,  # (samples, dim) embeddings of this evaluation's completions
    "policy_probs": Access.L2,  # (states, actions) the policy's action or token distributions at sampled states
    "trusted_probs": Access.L2,  # (states, actions) the trusted policy's, at the same states
    "gold": Access.L3,
}


def check_access(value: object) -> Access:
    """An Access from 0..3, 'L0'..'L3' or an Access; a ValueError naming the choices otherwise."""
    if isinstance(value, Access):
        return value
    if isinstance(value, str) and value.upper() in Access.__members__:
        return Access[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in {a.value for a in Access}:
        return Access(value)
    raise ValueError(f"access {value!r} is not one of L0, L1, L2, L3")


@dataclass(frozen=True, slots=True)
class Row:
    """One evaluation of a run: None where a signal was not logged at this evaluation.

    NaN or infinite values are kept as given, so that a detector can report them (it never averages them in).
    """

    step: float
    kl: float | None = None
    proxy: float | None = None
    gold: float | None = None
    length: float | None = None
    entropy: float | None = None
    distinct_n: float | None = None
    ensemble_scores: NDArray[np.float64] | None = None  # (members,)
    embeddings: NDArray[np.float64] | None = None  # (samples, dim)
    policy_probs: NDArray[np.float64] | None = None  # (states, actions)
    trusted_probs: NDArray[np.float64] | None = None  # (states, actions)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Row:
        """A row from a mapping such as a parsed log line; an unknown key is an error, so a misspelt signal is
        never silently ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in values if key not in names)
        if unknown:
            raise ValueError(f"a row has no field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if values.get("step") is None:
            raise ValueError("a row needs its 'step'")
        parsed: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name in ARRAY_SIGNALS:
                try:
                    parsed[name] = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    raise ValueError(f"row field '{name}' must hold numbers, got {str(value)[:40]}") from None
            else:
                if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                    raise ValueError(f"row field '{name}' must be a number, got {value!r}")
                parsed[name] = float(value)
        return cls(**parsed)

    def carries(self, signal: str) -> bool:
        return getattr(self, signal) is not None

    def bad_value(self, signal: str) -> str | None:
        """How `signal`'s value in this row is not finite (for the problem report), or None."""
        value = getattr(self, signal)
        if value is None:
            return None
        if isinstance(value, float):
            return None if math.isfinite(value) else f"{value}"
        finite = np.isfinite(value)
        if finite.all():
            return None
        return f"{int(finite.size - finite.sum())} non-finite value(s)"


def as_row(row: Row | Mapping[str, Any]) -> Row:
    return row if isinstance(row, Row) else Row.from_mapping(row)


@dataclass(frozen=True)
class RunContext:
    """What a detector may know of a run before its first row.

    `signals`: the signals the log provides at all (None: unknown, as for a live stream), so a detector that needs
    another can say so at once. `reference_embeddings`: embeddings of the reference policy's samples — the policy's
    own completions before its first update, which L1 includes.
    """

    environment: str = ""
    signals: frozenset[str] | None = None
    reference_embeddings: NDArray[np.float64] | None = None
