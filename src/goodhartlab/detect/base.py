"""The detector contract: `fit(healthy_runs)`, `reset(context)`, `update(row) -> Alarm | None`, `score(run)`.

A detector turns each row it is given into a *statistic* (higher is more suspicious; None while it warms up) and
raises an `Alarm` when the statistic crosses its threshold from below (edge-triggered, as river's drift detectors
report a drift once: it re-arms only after the statistic has fallen back to the threshold). `score(run)` is the
largest statistic over a run, the run-level number an AUROC ranks. `fit` calibrates the threshold on healthy runs
so that at most a `false_alarm_rate` share of healthy runs alarms at all (a conformal order statistic of their
scores); before `fit` a detector uses its own default threshold.

Each detector declares its access level and the signals it needs. A run or stream that lacks one skips the
detector with a reason (`skip_reason`), never a traceback; a non-finite value in a needed signal is reported in
`problems` and that row is passed over, never averaged in.

To score a detector of your own on the benchmark, subclass `Detector`: set `kind`, `access`, `family`,
`config_class`, and implement `needs`, `_start` and `_observe`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from goodhartlab.config import ConfigError, above, parse_config
from goodhartlab.detect.rows import SIGNAL_ACCESS, Access, Row, RunContext, as_row
from goodhartlab.detect.runs import check_one_source

if TYPE_CHECKING:
    from typing import Self

    from goodhartlab.detect.runs import LabelledRun

MAX_PROBLEMS = 50
"""Problems kept per run; the count goes on past it."""


class NothingToCalibrate(ValueError):
    """No healthy run given to `fit` logs the signals a detector needs."""


@dataclass
class DetectorConfig:
    threshold: float | None = None
    """Alarm when the statistic exceeds this; None: the detector's default until `fit` calibrates one."""
    false_alarm_rate: float = 0.05
    """`fit`'s target: the share of healthy runs allowed to alarm at all."""

    def __post_init__(self) -> None:
        above(self, "false_alarm_rate", 0)
        if not self.false_alarm_rate < 1:
            raise ConfigError("false_alarm_rate", f"must be < 1, got {self.false_alarm_rate!r}")


ConfigT = TypeVar("ConfigT", bound=DetectorConfig)


@dataclass(frozen=True)
class Alarm:
    """A detector's alarm: where (step, KL, the row's index in the run) and on what."""

    step: float
    kl: float | None
    signal: str
    detector: str
    access: str  # "L0" .. "L3"
    statistic: float
    threshold: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "kl": self.kl, "signal": self.signal, "detector": self.detector,
                "access": self.access, "statistic": self.statistic, "threshold": self.threshold}


@dataclass(frozen=True)
class Calibration:
    threshold: float
    false_alarm_rate: float
    runs: int  # healthy runs whose scores set the threshold
    skipped: int  # healthy runs that lacked a needed signal
    environments: tuple[str, ...]
    guaranteed: bool  # enough runs for the bound (one environment: at least 1/rate - 1 runs)


def calibrated_threshold(scores: Sequence[float], false_alarm_rate: float,
                         groups: Sequence[str] | None = None) -> tuple[float, bool]:
    """The threshold that a new healthy run's score exceeds with probability at most `false_alarm_rate`.

    With n exchangeable healthy scores, the k-th smallest, k = ⌈(n + 1)(1 − rate)⌉, is exceeded by a new one with
    probability ≤ (n + 1 − k)/(n + 1) ≤ rate (a split-conformal bound). With `groups` (each score's environment),
    runs are exchangeable only within an environment, and every environment weighs the same whatever its number of
    runs: the threshold is the smallest score whose bound, (runs above it + 1)/(runs + 1), averaged over the
    environments, is within the rate (one group gives the k-th smallest again). Pooled by run instead, an
    environment that contributes many runs would set the threshold for the others. With too few runs the largest
    score is used and the bound does not hold: the second value says whether it does.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no healthy score to calibrate on")
    labels = (np.zeros(values.size, dtype=np.int64) if groups is None
              else np.unique(np.asarray(list(groups), dtype=str), return_inverse=True)[1])
    if labels.size != values.size:
        raise ValueError(f"groups holds {labels.size} labels for {values.size} scores")
    runs = np.bincount(labels)
    candidates = np.unique(values)  # ascending
    at_or_below = np.stack([np.searchsorted(np.sort(values[labels == group]), candidates, side="right")
                            for group in range(runs.size)])  # per group and candidate
    bound = ((runs[:, None] - at_or_below + 1) / (runs[:, None] + 1)).mean(axis=0)
    within = np.flatnonzero(bound <= false_alarm_rate + 1e-12)
    if within.size == 0:
        return float(candidates[-1]), False
    return float(candidates[within[0]]), True


@dataclass
class Trace:
    """One detector's pass over one run."""

    detector: str
    run_id: str
    statistics: NDArray[np.float64]  # per row, NaN where the detector had no statistic
    alarms: list[Alarm]
    skipped: str | None
    problems: list[str]
    problem_count: int

    @property
    def score(self) -> float:
        """The largest statistic; -inf if there was none, NaN if the detector was skipped."""
        if self.skipped is not None:
            return math.nan
        finite = self.statistics[~np.isnan(self.statistics)]
        return float(finite.max()) if finite.size else -math.inf


class Detector(ABC, Generic[ConfigT]):
    kind: ClassVar[str]
    """The detector's name in alarms and tables (a setting may extend it: `name`)."""
    access: Access  # a class attribute; a detector built of others (fused) sets its own
    family: ClassVar[str]
    """Which family it belongs to; the baselines say so ("heuristic baseline", "Pan et al. (2022) baseline")."""
    config_class: ClassVar[type[DetectorConfig]]
    default_threshold: ClassVar[float]

    def __init__(self, config: ConfigT | Mapping[str, Any] | None = None, **settings: Any) -> None:
        if config is not None and settings:
            raise TypeError(f"{type(self).__name__}: pass a config or settings, not both")
        self.config: ConfigT = parse_config(self.config_class, config if config is not None else settings)  # type: ignore[assignment]
        above_level = [name for name in self.needs if SIGNAL_ACCESS[name] > self.access]
        if above_level:
            raise TypeError(f"{self.name} declares access {self.access} but needs {', '.join(above_level)}")
        self.threshold_: float | None = None
        self.calibration_: Calibration | None = None
        self.reset()

    # -- what a subclass states --------------------------------------------------------------------------------

    @property
    @abstractmethod
    def needs(self) -> tuple[str, ...]:
        """The row signals the statistic is made of."""

    @property
    def signal(self) -> str:
        """What an alarm of this detector is about, in words."""
        return ", ".join(self.needs)

    @property
    def name(self) -> str:
        return self.kind

    @abstractmethod
    def _start(self, context: RunContext) -> str | None:
        """Clear the per-run state; return a reason to skip this run, or None."""

    @abstractmethod
    def _observe(self, row: Row) -> float | None:
        """The statistic after this row (its needed signals finite where present), or None while warming up."""

    # -- the contract ------------------------------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        if self.threshold_ is not None:
            return self.threshold_
        return self.config.threshold if self.config.threshold is not None else self.default_threshold

    @property
    def skip_reason(self) -> str | None:
        """Why this detector has nothing to say about the current run, or None."""
        if self._skip is not None:
            return self._skip
        if self._rows > 0:
            unseen = [name for name in self.needs if name not in self._seen]
            if unseen:
                return f"no row so far carried {', '.join(unseen)}"
        return None

    def reset(self, context: RunContext | None = None) -> None:
        """Start a new run; `context` says what the run provides (see RunContext)."""
        context = context or RunContext()
        self._context = context
        self._rows = 0
        self._seen: set[str] = set()
        self._armed = True
        self.problems: list[str] = []
        self.problem_count = 0
        self.last_statistic: float | None = None
        missing = [] if context.signals is None else [n for n in self.needs if n not in context.signals]
        self._skip: str | None = (f"needs {', '.join(missing)}, which this run does not log" if missing
                                  else None)
        reason = self._start(context)
        if self._skip is None:
            self._skip = reason

    def update(self, row: Row | Mapping[str, Any]) -> Alarm | None:
        """Take one evaluation; return an Alarm when the statistic crosses the threshold."""
        current = as_row(row)
        index = self._rows
        self._rows += 1
        self.last_statistic = None
        if self._skip is not None:
            return None
        for name in self.needs:
            if not current.carries(name):
                continue
            self._seen.add(name)
            bad = current.bad_value(name)
            if bad is not None:
                self._problem(f"step {current.step:g}: {name} is {bad}; the row is passed over, not averaged")
                return None
        statistic = self._observe(current)
        if statistic is None:
            return None
        if not math.isfinite(statistic):
            self._problem(f"step {current.step:g}: the statistic is {statistic}; the row is passed over")
            return None
        self.last_statistic = statistic
        if statistic <= self.threshold:
            self._armed = True
            return None
        if not self._armed:
            return None
        self._armed = False
        return Alarm(step=current.step, kl=current.kl, signal=self.signal, detector=self.name,
                     access=str(self.access), statistic=statistic, threshold=self.threshold, index=index)

    def trace(self, run: LabelledRun) -> Trace:
        """Run the detector over `run` online, row by row, from a reset."""
        self.reset(run.context())
        statistics = np.full(len(run), np.nan)
        alarms = []
        for index, row in enumerate(run.rows()):
            alarm = self.update(row)
            if self.last_statistic is not None:
                statistics[index] = self.last_statistic
            if alarm is not None:
                alarms.append(alarm)
        return Trace(self.name, run.run_id, statistics, alarms, self.skip_reason, list(self.problems),
                     self.problem_count)

    def score(self, run: LabelledRun) -> float:
        """Offline: how suspicious the whole run looks (higher is more); NaN if skipped (see `skip_reason`)."""
        return self.trace(run).score

    def fit(self, healthy_runs: Iterable[LabelledRun], *, false_alarm_rate: float | None = None) -> Self:
        """Calibrate the threshold so that at most `false_alarm_rate` (default: the config's) of healthy runs
        alarm. Hacked runs are refused: calibrating on them would hide what the detector is meant to find."""
        runs = list(healthy_runs)
        hacked = [run.run_id for run in runs if run.label != "healthy"]
        if hacked:
            raise ValueError(f"fit calibrates on healthy runs only; got hacked run(s) {', '.join(hacked[:3])}")
        check_one_source(runs, "calibration")
        rate = self.config.false_alarm_rate if false_alarm_rate is None else false_alarm_rate
        if not 0 < rate < 1:
            raise ValueError(f"false_alarm_rate must lie strictly between 0 and 1, got {rate}")
        scores, environments, skipped = [], [], 0
        for run in runs:
            score = self.score(run)
            if math.isnan(score):
                skipped += 1
            else:
                scores.append(score)
                environments.append(run.environment)
        if not scores:
            raise NothingToCalibrate(f"{self.name}: none of the {len(runs)} healthy run(s) carries what it needs "
                             f"({', '.join(self.needs)})")
        threshold, guaranteed = calibrated_threshold(scores, rate, environments)
        self.threshold_ = threshold
        self.calibration_ = Calibration(threshold, rate, len(scores), skipped,
                                        tuple(sorted({run.environment for run in runs})), guaranteed)
        self.reset()
        return self

    def _problem(self, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
