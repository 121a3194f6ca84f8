"""Measure over-optimization inside your own TRL run: a callback and a gold reward function.

    from goodhartlab.integrations.trl import OveroptimizationCallback, ScorerReward

    callback = OveroptimizationCallback("runs/grpo", gold=my_gold_scorer, gold_every=10)
    trainer = GRPOTrainer(
        model=..., train_dataset=..., callbacks=[callback],
        reward_funcs=[ScorerReward(my_proxy_scorer), callback.gold_reward],
        args=GRPOConfig(beta=0.04, reward_weights=[1.0, 0.0], logging_steps=1, ...))
    trainer.train()   # runs/grpo/runlog.jsonl grows one row per logging step

The callback writes files: `runlog.jsonl` (what `goodhartlab fit` reads), `samples.jsonl`, `summary.json`
and `config.json` (the trainer's arguments). To see the run in a report beside other studies, add its
folder to a results store: `goodhartlab report --add runs/grpo`. Asked, it also writes its KL, proxy and
gold as scalars to TensorBoard (`tensorboard="runs/tb"`) or MLflow (`mlflow=True`: the run TRL's own
`report_to="mlflow"` opened, else a new one), under the tags `goodhartlab export` gives the same run
(`<curve>/kl`, `<curve>/proxy`, `<curve>/gold`; `goodhartlab.integrations.trackers`), beside whatever
TRL's `report_to` logs.

Why gold is a reward function with weight 0: that is the way TRL's maintainers endorse for an
evaluation-only reward (huggingface/trl#3018). TRL computes and logs it as `rewards/gold/mean`
but sums weighted rewards with `nansum`, so weight 0 leaves the advantages untouched. It scores
the completions TRL has already generated, so gold costs one scorer call and no extra sampling.
`ScorerReward(every=k)` scores only the batch of every k-th optimizer step (and the first, for a
baseline at KL ≈ 0) and returns None for every other batch: TRL turns None into NaN, leaves it
out of its means and logs no gold value for that step, so the gold scorer's cost is divided by k
and never mistaken for a zero reward.

KL is stored in nats per sequence, the one unit goodhartlab uses. GRPO and RLOO log `kl` as a
per-token masked mean over the batch (k3 in GRPO), and the batch's token mean times its mean
completion length is exactly the mean per-sequence sum; PPO and Online DPO log `objective/kl`,
already a sequence sum. With `logging_steps > 1` TRL averages each over the window first, so the
product is then an approximation: log every step for exact figures. RLOO's `kl` is the sampled
log-ratio (k1), which dips below zero near the reference policy; it is stored as 0, the KL's floor,
and the value as logged is kept beside it (`kl_logged`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from goodhartlab.detect.monitor import Monitor
from goodhartlab.detect.rows import RunContext
from goodhartlab.files import write_atomically
from goodhartlab.integrations.trackers import MlflowScalars, ScalarWriter, TensorBoardScalars, scalar_tag
from goodhartlab.measure.kl import KL_UNITS, KLUnit, to_nats_per_sequence
from goodhartlab.measure.runlog import (
    TRL_ENTROPY_KEY,
    TRL_KL_KEYS,
    TRL_LENGTH_KEY,
    TRL_PROXY_KEYS,
    TRL_TRAINING_KEYS,
    reward_function_key,
)
from goodhartlab.measure.scaling import FitError, fit_law
from goodhartlab.rewards.scorer import Scorer, checked_scores

RUN_LOG = "runlog.jsonl"
SUMMARY = "summary.json"
SAMPLES = "samples.jsonl"
ALARMS = "alarms.jsonl"
TRAINER_CONFIG = "config.json"
KEEP_SAMPLES = 2  # completions kept per batch gold scores, unless a run asks otherwise


@dataclass(frozen=True)
class LogKeys:
    """Where the callback finds each metric in the trainer's logs; unset, TRL's own names.

    gold: default 'rewards/<the gold reward's name>/mean'. proxy: default 'reward' (GRPO, RLOO) or
    'objective/scores' (PPO); 'rewards/<function name>/mean' follows one reward function. kl and kl_unit
    name the KL for a trainer that logs it elsewhere (both or neither)."""

    gold: str | None = None
    proxy: str | None = None
    kl: str | None = None
    kl_unit: KLUnit | None = None
    length: str = TRL_LENGTH_KEY
    entropy: str = TRL_ENTROPY_KEY

    def __post_init__(self) -> None:
        if self.kl is not None and self.kl_unit is None:
            raise ValueError(f"kl key {self.kl!r} needs kl_unit, one of {', '.join(KL_UNITS)}, so the callback can "
                             "convert it to nats per sequence")
        if self.kl_unit is not None and self.kl_unit not in KL_UNITS:
            raise ValueError(f"unknown kl_unit {self.kl_unit!r}; choose one of {', '.join(KL_UNITS)}")


class MissingMetricError(ValueError):
    """A metric the callback needs is not in the trainer's logs; the message says what to change."""


def _message_text(message: Any) -> str:
    """The text of one chat message's content (a string, or a list of typed parts)."""
    content = message.get("content", "") if isinstance(message, Mapping) else message
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, Mapping) else str(part) for part in content)
    return "" if content is None else str(content)


def as_text(item: Any, *, prompt: bool) -> str:
    """A TRL prompt or completion as plain text.

    Conversational items are lists of {"role", "content"} messages: a prompt becomes its last user
    turn (the text a task's scorer judges a response against; system prompts are left out), a
    completion the concatenated content of its assistant messages.
    """
    if isinstance(item, str):
        return item
    if isinstance(item, list) and all(isinstance(m, Mapping) for m in item):
        if prompt:
            users = [m for m in item if m.get("role") == "user"]
            return _message_text(users[-1]) if users else "\n".join(_message_text(m) for m in item)
        replies = [m for m in item if m.get("role", "assistant") == "assistant"] or list(item)
        return "".join(_message_text(m) for m in replies)
    raise TypeError(f"expected a string or a list of chat messages, got {type(item).__name__}")


def _checked_keep(keep: Any) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValueError(f"keep must be a whole number >= 0 (completions kept per scored batch), got {keep!r}")
    return keep


class ScorerReward:
    """A goodhartlab scorer as a TRL reward function, optionally scoring only every `every` steps.

    TRL calls it as `f(prompts=..., completions=..., trainer_state=..., **kwargs)` and names its
    metric `rewards/<name>/mean` after `__name__`. Batches not due return None per completion
    (TRL logs no value for them). Non-finite scores raise: a NaN reward is reported, never averaged.
    The first `keep` completions of each scored batch are kept in `samples` with their scores: a
    curve says that gold fell, the text says how.
    """

    def __init__(self, scorer: Scorer, *, every: int = 1, name: str | None = None, keep: int = 0) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number >= 1 (score every k-th step), got {every!r}")
        self.scorer = scorer
        self.every = every
        self.keep = _checked_keep(keep)
        self.__name__ = name or scorer.name
        self.calls = 0  # batches seen
        self.scored = 0  # batches scored
        self.seconds = 0.0  # time spent inside the scorer
        self.samples: list[dict[str, Any]] = []  # {"step", "prompt", "completion", "score"}
        self._next_due = 0
        self._last_step = -1

    def __repr__(self) -> str:
        return f"ScorerReward({self.scorer.name!r}, every={self.every}, name={self.__name__!r})"

    def reset(self) -> None:
        self.calls = self.scored = 0
        self.seconds = 0.0
        self.samples = []
        self._next_due, self._last_step = 0, -1

    def due(self, step: int) -> bool:
        """Whether the batch generated at `step` (completed optimizer steps) gets scored.

        The batch trains step `step + 1`; the due steps are 1, every, 2·every, … A batch that
        spans several steps (num_iterations > 1) is scored once it reaches the next due step.
        """
        if step < self._last_step:  # the same function used for a new run
            self._next_due = 0
        self._last_step = step
        if step + 1 < self._next_due:
            return False
        self._next_due = ((step + 1) // self.every + 1) * self.every
        return True

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], trainer_state: Any = None,
                 **kwargs: Any) -> list[float | None]:
        step = int(trainer_state.global_step) if trainer_state is not None else self.calls
        self.calls += 1
        if not self.due(step):
            return [None] * len(completions)
        start = time.perf_counter()
        prompt_texts = [as_text(p, prompt=True) for p in prompts]
        completion_texts = [as_text(c, prompt=False) for c in completions]
        scores = checked_scores(self.scorer, prompt_texts, completion_texts, where=f"at step {step + 1}")
        self.seconds += time.perf_counter() - start
        self.scored += 1
        self.samples.extend({"step": step + 1, "prompt": prompt, "completion": completion, "score": float(score)}
                            for prompt, completion, score in zip(prompt_texts[:self.keep],
                                                                 completion_texts[:self.keep], scores, strict=False))
        return [float(s) for s in scores]


def _finite(logs: Mapping[str, Any], key: str, step: int) -> float | None:
    """The logged value as a float; None where TRL logged none; an error where it is NaN or infinite."""
    value = logs.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MissingMetricError(f"step {step}: metric '{key}' is {value!r}, not a number")
    if not math.isfinite(value):
        raise MissingMetricError(f"step {step}: metric '{key}' is {value}; a non-finite reward or KL is "
                                 "reported, never averaged: check the reward functions and the learning rate")
    return float(value)


def _read_step_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of an earlier run's JSONL file; a line cut short by a kill is dropped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


class OveroptimizationCallback(TrainerCallback):
    """Records step, KL (nats per sequence), proxy, gold and length at each TRL logging step.

    Rows go to `<output_dir>/runlog.jsonl`, flushed one by one, so an interrupted run keeps every
    row it logged and `goodhartlab fit` can read the file at any time. The first `keep_samples`
    completions of every batch gold scores go to `<output_dir>/samples.jsonl` with their gold. At
    the end of training the RL-form law of Gao et al. is fitted to (KL, gold) and written, with the
    run's counts and columns, to `<output_dir>/summary.json`, and the trainer's arguments to
    `config.json`. A new run in the same directory replaces its logs; a run resumed from a checkpoint
    keeps the rows up to the checkpoint's step.

    gold: a scorer (wrapped as `self.gold_reward`, which you add to `reward_funcs` with weight 0),
        a ready `ScorerReward`, or None when gold is already logged under `keys.gold`.
    gold_every: with a scorer, score gold on the batch of every gold_every-th step.
    keep_samples: completions kept per batch gold scores; default `KEEP_SAMPLES`, or a ready
        `ScorerReward`'s own `keep`.
    keys: where each metric is in the trainer's logs (`LogKeys`; TRL's names by default).
    seed: stored with each row; default the trainer's seed. fit: fit the law at the end.
    curve: the name of the run's curve when the lab adds the folder to a store.
    monitor: detectors watching the run (a `goodhartlab.detect.monitor.Monitor`, detector names, or True for the
        default set with the benchmark's thresholds). Each alarm goes to `<output_dir>/alarms.jsonl` with the gold
        samples nearest it, and to `self.alarms`.
    stop_on_alarm: stop training at the first alarm (TRL's `should_training_stop`).
    tensorboard: a folder to write the scalars to as TensorBoard events (needs tensorboard).
    mlflow: True to write them to the active MLflow run (else a new one at MLflow's tracking URI), or a
        tracking URI or folder to write a new run there (needs mlflow-skinny).
    writers: further `ScalarWriter`s to hand each step's scalars to (yours to close).
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, gold: Scorer | ScorerReward | None = None,
                 gold_every: int = 10, keep_samples: int | None = None, keys: LogKeys | None = None,
                 seed: int | None = None, fit: bool = True, curve: str = "rl",
                 monitor: Monitor | Sequence[str] | bool | None = None, stop_on_alarm: bool = False,
                 tensorboard: str | os.PathLike[str] | None = None, mlflow: bool | str | None = None,
                 writers: Sequence[ScalarWriter] = ()) -> None:
        self.keys = keys or LogKeys()
        self.gold_reward: ScorerReward | None
        if isinstance(gold, ScorerReward):
            self.gold_reward = gold
            if keep_samples is not None:
                self.gold_reward.keep = _checked_keep(keep_samples)
        elif gold is not None:
            self.gold_reward = ScorerReward(gold, every=gold_every, name="gold",
                                            keep=KEEP_SAMPLES if keep_samples is None else keep_samples)
        else:
            self.gold_reward = None
            if self.keys.gold is None:
                raise ValueError("pass gold= (a scorer, evaluated as a weight-0 reward function) or "
                                 "keys=LogKeys(gold=...) (a metric your trainer already logs); without gold there is "
                                 "nothing to "
                                 "measure over-optimization against")
        self.gold_key = self.keys.gold or reward_function_key(self.gold_reward.__name__ if self.gold_reward else "gold")
        self.output_dir = Path(output_dir)
        self.seed, self.fit, self.curve = seed, fit, curve
        if stop_on_alarm and not monitor:
            raise ValueError("stop_on_alarm needs a monitor: pass monitor=True (the default detectors) or names")
        self.monitor: Monitor | None = (monitor if isinstance(monitor, Monitor) else Monitor() if monitor is True
                                        else Monitor(list(monitor)) if monitor else None)
        self.stop_on_alarm = stop_on_alarm
        self.alarms: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []  # completions gold scored, with their gold
        self.summary: dict[str, Any] = {}
        self.kl_source = ""
        self._proxy_used: str | None = None
        self._last_length: float | None = None
        self._gold_seen = False
        self._file: Any = None
        self._samples_file: Any = None
        self._samples_taken = 0  # of self.gold_reward.samples, already in self.samples
        self._trainer_config = ""
        self.tensorboard, self.mlflow = tensorboard, mlflow
        self.writers: list[ScalarWriter] = list(writers)
        self._made_writers: list[ScalarWriter] = []

    @property
    def run_log(self) -> Path:
        return self.output_dir / RUN_LOG

    @property
    def samples_log(self) -> Path:
        return self.output_dir / SAMPLES

    # -- training events -------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._check_config(args)
        self._trainer_config = type(args).__name__
        if self.seed is None:
            self.seed = int(getattr(args, "seed", 0))
        if self.gold_reward is not None:
            self.gold_reward.reset()
        self._proxy_used, self._last_length, self._gold_seen = None, None, False
        self._samples_taken = 0
        self._close_logs()  # a run that crashed before on_train_end left them open
        if not state.is_world_process_zero:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.rows = [row for row in _read_step_rows(self.run_log) if row["step"] <= state.global_step]
        self.samples = [row for row in _read_step_rows(self.samples_log) if row["step"] <= state.global_step]
        logs = [(self.run_log, self.rows)] + ([(self.samples_log, self.samples)] if self.gold_reward else [])
        for path, kept in logs:
            with path.open("w", encoding="utf-8") as handle:  # keep rows up to a resumed checkpoint
                handle.writelines(json.dumps(row) + "\n" for row in kept)
        self._file = self.run_log.open("a", encoding="utf-8")
        if self.gold_reward is not None:
            self._samples_file = self.samples_log.open("a", encoding="utf-8")
        if self.monitor is not None:
            self.monitor.start(RunContext(environment=self._trainer_config))  # a live stream: signals unknown
            self.alarms = []
            self.alarm_log.write_text("", encoding="utf-8")
        self._open_writers(args)
        config = json.loads(args.to_json_string()) if hasattr(args, "to_json_string") else {}
        text = json.dumps({"trainer": self._trainer_config, "seed": self.seed, "curve": self.curve,
                           "args": config}, indent=1, sort_keys=True)
        write_atomically(self.output_dir / TRAINER_CONFIG, lambda partial: partial.write_text(text, encoding="utf-8"))

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not state.is_world_process_zero or not any(key in logs for key in TRL_TRAINING_KEYS):
            return  # an evaluation or end-of-training summary, not a training step
        if not self._gold_seen:
            self._check_gold_weight(args, logs)
        row = self.record(logs, state.global_step)
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        self._write_new_samples()
        if self.monitor is not None and self._watch(row) and self.stop_on_alarm:
            control.should_training_stop = True
        scalars = {scalar_tag(self.curve, "kl"): row["kl"], scalar_tag(self.curve, "proxy"): row["proxy"],
                   scalar_tag(self.curve, "gold"): row["gold"]}
        for writer in [*self.writers, *self._made_writers]:
            writer.write(scalars, row["step"])

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._write_new_samples()  # batches scored after the last logging step
        self._close_logs()
        self._close_writers()
        if not state.is_world_process_zero:
            return
        self.summary = self.summarize()
        text = json.dumps(self.summary, indent=1)
        write_atomically(self.output_dir / SUMMARY, lambda partial: partial.write_text(text, encoding="utf-8"))
        if self.rows and not self._gold_seen:  # a gold key of the user's own metric, never logged: likely a typo
            raise MissingMetricError(f"'{self.gold_key}' was in none of the trainer's {len(self.rows)} training logs, "
                                     f"so the run log has no gold (it is kept in {self.output_dir}); pass "
                                     "keys=LogKeys(gold=...) naming the metric as the trainer logs it")

    @property
    def alarm_log(self) -> Path:
        return self.output_dir / ALARMS

    def _watch(self, row: Mapping[str, Any]) -> bool:
        """Feed the row to the monitor; write each alarm with the gold samples nearest its step. True if any."""
        assert self.monitor is not None
        signals = {name: row.get(name) for name in ("kl", "proxy", "gold", "length", "entropy")}
        raised = self.monitor.update({"step": row["step"], **signals})
        for alarm in raised:
            nearest = sorted(self.samples, key=lambda sample: abs(sample["step"] - alarm.step))[:KEEP_SAMPLES]
            record = {**alarm.to_dict(), "message": self.monitor.describe(alarm), "samples": nearest}
            self.alarms.append(record)
            with self.alarm_log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        return bool(raised)

    def _write_new_samples(self) -> None:
        if self.gold_reward is None or self._samples_file is None:
            return
        new = self.gold_reward.samples[self._samples_taken:]
        self._samples_taken += len(new)
        self.samples.extend(new)
        self._samples_file.writelines(json.dumps(sample) + "\n" for sample in new)
        self._samples_file.flush()

    def _open_writers(self, args: Any) -> None:
        """The TensorBoard and MLflow writers asked for, imported only now."""
        self._close_writers()
        if self.tensorboard is not None:
            self._made_writers.append(TensorBoardScalars(self.tensorboard))
        if self.mlflow:
            target = None if self.mlflow is True else str(self.mlflow)
            self._made_writers.append(MlflowScalars(tracking_uri=target, experiment="goodhartlab",
                                                    run_name=getattr(args, "run_name", None)))

    def _close_writers(self) -> None:
        for writer in self._made_writers:
            writer.close()
        self._made_writers = []

    def _close_logs(self) -> None:
        for handle in (self._file, self._samples_file):
            if handle is not None:
                handle.close()
        self._file = self._samples_file = None

    # -- the pieces, usable on their own -----------------------------------------------------------

    def _check_config(self, args: Any) -> None:
        """Fail before the first step on settings that make the run unmeasurable."""
        if self.keys.kl is None and getattr(args, "beta", None) == 0:
            raise MissingMetricError(f"{type(args).__name__}(beta=0) logs no 'kl' and loads no reference model, so "
                                     "there is no KL to measure pressure by: set beta > 0 (e.g. beta=0.04; GRPO's "
                                     "default is 0)")
        if self.gold_reward is not None and hasattr(args, "reward_weights"):
            weights = args.reward_weights
            if weights is None or 0 not in weights:
                raise ValueError(f"the gold reward must not be optimized: pass reward_weights with 0.0 at the "
                                 f"position of callback.gold_reward in reward_funcs (e.g. reward_weights=[1.0, "
                                 f"0.0]); got reward_weights={weights}, so TRL would optimize gold")

    def _check_gold_weight(self, args: Any, logs: Mapping[str, Any]) -> None:
        """The weight at gold's own place in reward_funcs is 0. GRPO and RLOO log each reward function's
        mean as 'rewards/<name>/mean' in reward_funcs order, which tells where gold is."""
        weights = getattr(args, "reward_weights", None)
        names = [key[len("rewards/"):-len("/mean")] for key in logs
                 if key.startswith("rewards/") and key.endswith("/mean")]
        gold_name = self.gold_key.removeprefix("rewards/").removesuffix("/mean")
        if self.gold_reward is None or weights is None or len(names) != len(weights) or gold_name not in names:
            return  # another trainer's layout: the check before training is all there is
        place = names.index(gold_name)
        if weights[place] != 0:
            raise ValueError(f"the gold reward is reward_funcs[{place}] and has weight {weights[place]} in "
                             f"reward_weights={list(weights)}, so TRL optimizes it: give it weight 0.0")

    def kl_nats_per_sequence(self, logs: Mapping[str, Any], step: int,
                             mean_length: float | None = None) -> tuple[float, float]:
        """(KL in nats per sequence, the value as logged) from one log entry.

        A per-token KL needs the batch's mean completion length: `mean_length`, else the log's own.
        """
        if self.keys.kl is not None and self.keys.kl_unit is not None:
            key, unit = self.keys.kl, self.keys.kl_unit
        else:
            found = next(((k, u) for k, u in TRL_KL_KEYS if logs.get(k) is not None), None)
            if found is None:
                raise MissingMetricError(
                    f"step {step}: no KL in the trainer's logs; looked for 'kl' (GRPO, RLOO) and 'objective/kl' (PPO, "
                    "Online DPO). GRPO logs 'kl' only when beta > 0 (its default is 0): set beta > 0, e.g. "
                    "GRPOConfig(beta=0.04). DPO logs no KL at all. For another trainer pass keys=LogKeys(kl=..., "
                    "kl_unit=...)")
            key, unit = found
        value = _finite(logs, key, step)
        if value is None:
            raise MissingMetricError(f"step {step}: metric '{key}' is missing from the trainer's logs; log the KL to "
                                     "the reference policy there (for GRPO: beta > 0)")
        length = None
        if unit.endswith("per_token"):
            length = mean_length if mean_length is not None else _finite(logs, self.keys.length, step)
            if length is None:
                raise MissingMetricError(f"step {step}: '{key}' is a per-token KL and needs the mean completion "
                                         f"length '{self.keys.length}' in the same log to become nats per sequence")
            self.kl_source = f"{key} ({unit}) × {self.keys.length}"
        else:
            self.kl_source = f"{key} ({unit})"
        return float(to_nats_per_sequence(value, unit, length)), value

    def record(self, logs: Mapping[str, Any], step: int) -> dict[str, Any]:
        """The run-log row for one training log entry (also kept in `self.rows`).

        A step that trained on a batch sampled at an earlier step (num_iterations > 1, or
        steps_per_generation > gradient_accumulation_steps) logs KL but no reward or length: its
        KL is converted with the length of the batch it trained on, and proxy and gold stay empty.
        """
        length = _finite(logs, self.keys.length, step)
        if length is not None:
            self._last_length = length
        kl, logged = self.kl_nats_per_sequence(logs, step, self._last_length)
        kl = max(kl, 0.0)  # RLOO logs k1, an unbiased estimate that dips below 0 near the reference; KL's floor is 0
        proxy_key = self.keys.proxy or next((k for k in TRL_PROXY_KEYS if k in logs), None) or self._proxy_used
        proxy = _finite(logs, proxy_key, step) if proxy_key else None
        if proxy is not None:
            self._proxy_used = proxy_key
        elif self._proxy_used is None:  # never seen, so a wrong or missing key, not a step without sampling
            raise MissingMetricError(f"step {step}: no proxy in the trainer's logs under "
                                     f"{proxy_key or ' or '.join(repr(k) for k in TRL_PROXY_KEYS)}; pass "
                                     "keys=LogKeys(proxy=...) naming the logged reward (for one GRPO reward "
                                     "function: 'rewards/<name>/mean')")
        if self.gold_reward is not None and not self._gold_seen and self.gold_key not in logs:
            raise MissingMetricError(f"step {step}: '{self.gold_key}' is not in the trainer's logs: add "
                                     "callback.gold_reward to reward_funcs (with weight 0.0 in reward_weights)")
        self._gold_seen = self._gold_seen or self.gold_key in logs
        row = {"step": int(step), "kl": kl, "proxy": proxy, "gold": _finite(logs, self.gold_key, step),
               "length": length, "entropy": _finite(logs, self.keys.entropy, step), "seed": int(self.seed or 0),
               "pressure_kind": "kl", "kl_logged": logged}
        self.rows.append(row)
        return row

    def columns(self) -> dict[str, list[Any]]:
        return {key: [row.get(key) for row in self.rows] for key in ("step", "kl", "proxy", "gold", "length")}

    def summarize(self) -> dict[str, Any]:
        """Counts, last and peak values, the run's columns and the RL-form law fitted to (KL, gold)."""
        gold_rows = [row for row in self.rows if row.get("gold") is not None]
        summary: dict[str, Any] = {
            "rows": len(self.rows), "gold_rows": len(gold_rows), "gold_key": self.gold_key,
            "proxy_key": self._proxy_used or self.keys.proxy,
            "kl_unit": "nats per sequence", "kl_source": self.kl_source,
            "gold_every": self.gold_reward.every if self.gold_reward else None,
        }
        if self.gold_reward is not None:
            summary["gold_scorer"] = f"{self.gold_reward.scorer.name} {self.gold_reward.scorer.version}"
            summary["gold_seconds"] = round(self.gold_reward.seconds, 4)
        if self.rows:
            last = self.rows[-1]
            proxies = [row["proxy"] for row in self.rows if row.get("proxy") is not None]
            summary.update(final_step=last["step"], final_kl=last["kl"], final_proxy=proxies[-1] if proxies else None)
        if gold_rows:
            best = max(gold_rows, key=lambda row: row["gold"])
            summary.update(final_gold=gold_rows[-1]["gold"], peak_gold=best["gold"], peak_gold_step=best["step"],
                           peak_gold_kl=best["kl"])
        summary["log"] = self.columns()
        if self.monitor is not None:
            summary["alarms"] = self.alarms
            summary["detectors_skipped"] = self.monitor.skipped
        if self.samples:
            summary["samples"] = self.samples
        if self.fit:
            kl = np.array([row["kl"] for row in gold_rows], dtype=np.float64)
            gold = np.array([row["gold"] for row in gold_rows], dtype=np.float64)
            try:
                summary["fit"] = fit_law(kl, gold, "rl").to_dict()
            except (FitError, ValueError) as error:  # too few gold points, or a negative (k1) KL
                summary["fit_error"] = str(error)
        return summary
