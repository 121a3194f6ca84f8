"""What every study returns: curves of proxy and gold against a pressure, and a summary.

The ground floor of the study contract. A study kind (RL, text, synthetic) returns a `RunResult`;
the lab stores it, the report draws it, an integration writes one from a user's training run. It
imports nothing of goodhartlab, so every layer can speak it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

PressureKind = Literal["kl", "sqrt_kl", "n", "steps", "episodes", "capability", "training_steps", "width", "depth",
                       "action_resolution", "observation_noise"]
"""How hard a curve's policy was optimized: KL in nats per sequence (or its square root), best-of-n's n,
training steps or episodes, or a capability knob (the last five name Pan et al.'s axes)."""
PRESSURE_KINDS: tuple[str, ...] = get_args(PressureKind)


def check_pressure_kind(kind: object) -> PressureKind:
    """`kind` if it is one of PRESSURE_KINDS, else a ValueError that lists them."""
    if kind not in PRESSURE_KINDS:
        raise ValueError(f"pressure_kind {kind!r} is not one of {', '.join(PRESSURE_KINDS)}")
    return kind  # type: ignore[return-value]


@dataclass
class CurvePoints:
    """One curve of a run: proxy and gold at each pressure (None where not measured)."""

    pressure: list[float]
    proxy: list[float | None]
    gold: list[float | None]
    pressure_kind: PressureKind = "kl"

    def __post_init__(self) -> None:
        if not len(self.pressure) == len(self.proxy) == len(self.gold):
            raise ValueError(f"a curve needs as many proxy ({len(self.proxy)}) and gold "
                             f"({len(self.gold)}) values as pressures ({len(self.pressure)})")
        check_pressure_kind(self.pressure_kind)
        bad = next((x for x in self.pressure if not isinstance(x, int | float) or not math.isfinite(x)), None)
        if bad is not None or any(isinstance(x, bool) for x in self.pressure):
            raise ValueError(f"a curve's pressures must be finite numbers, got {bad!r}")


@dataclass
class RunResult:
    """A finished run: its curves by name and a JSON-ready summary (numbers, strings, lists, dicts)."""

    curves: dict[str, CurvePoints]
    summary: dict[str, Any] = field(default_factory=dict)
