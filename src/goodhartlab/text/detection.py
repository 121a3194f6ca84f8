"""Language-model runs for the detection benchmark: GRPO on a proxy with a loophole (hacked), and its healthy twin.

The twin has the same policy, optimizer, budget, seed and logging, and optimizes the task's gold itself: it rises,
drifts in KL and loses entropy too, but does not hack. Both log, at every step, what a TRL user's log holds (KL in
nats per sequence, the proxy, the completions' mean length and the policy's entropy) and gold, which the benchmark
hides from every detector below access L3. A hacked run carries the benchmark's ground-truth onset.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from typing import Literal

from goodhartlab.config import ConfigError
from goodhartlab.detect.runs import BENCHMARK_VERSION, ONSET_RULE, LabelledRun
from goodhartlab.measure.runlog import read_run_log
from goodhartlab.results import RunResult
from goodhartlab.text.grpo import GRPOStudyConfig, grpo_prompts, train_grpo
from goodhartlab.text.tasks import resolve_task, task_gold


def _tiny_grpo() -> GRPOStudyConfig:
    return GRPOStudyConfig(task="goodhartlab.text.tiny:ExclamationTask", proxy="exclamations",
                           policy="goodhartlab-tiny", steps=30, learning_rate=5e-3, max_completion_length=16,
                           gold_every=1)


@dataclass
class GRPODetectionConfig:
    """One GRPO run of the detection benchmark: `grpo.proxy` has the loophole; the healthy twin optimizes gold."""

    grpo: GRPOStudyConfig = field(default_factory=_tiny_grpo)
    label: Literal["hacked", "healthy"] = "hacked"
    benchmark: str = BENCHMARK_VERSION

    def __post_init__(self) -> None:
        if self.grpo.gold_every != 1:
            raise ConfigError("grpo.gold_every", "must be 1 here: the ground-truth onset needs gold at every step "
                              "(the benchmark hides it from detectors below L3)")
        if self.grpo.log_dir is not None:
            raise ConfigError("grpo.log_dir", "is set by the benchmark run; leave it out")


def grpo_detection_run(cfg: GRPODetectionConfig, seed: int) -> RunResult:
    """Train, read the run log the TRL callback wrote, label it, and return it as a LabelledRun in the summary."""
    grpo = cfg.grpo
    policy = grpo.policy
    with tempfile.TemporaryDirectory(prefix="goodhartlab-detect-") as scratch:
        if policy == "goodhartlab-tiny":  # a tiny policy built from a config, the same for every seed
            from goodhartlab.text.tiny import tiny_policy

            policy = str(tiny_policy(f"{scratch}/policy"))
        run_cfg = replace(grpo, policy=policy, log_dir=f"{scratch}/logs")
        task = resolve_task(grpo.task)
        prompts = grpo_prompts(task, grpo.prompts, seed, policy)
        gold = task_gold(task, grpo.gold)
        proxy = task.proxy(grpo.proxy) if cfg.label == "hacked" else gold
        result = train_grpo(run_cfg, seed, prompts=prompts, proxy=proxy, gold=gold)
        log = read_run_log(run_cfg.run_folder() / f"seed-{seed}" / "runlog.jsonl")
    name = f"{grpo.task}/{grpo.proxy}"
    run = LabelledRun.from_run_log(
        log, run_id=f"{name}/{cfg.label}/seed={seed}", environment=f"grpo {task.name}", label=cfg.label,
        twin=f"{name}/{'healthy' if cfg.label == 'hacked' else 'hacked'}/seed={seed}")
    run = replace(run, metadata={**run.metadata, "log": "runlog.jsonl", "proxy": grpo.proxy,
                                 "benchmark": cfg.benchmark})
    onsets = [None if run.onset is None else run.onset.step]
    return RunResult(result.curves, {"labelled_runs": [run.to_dict()], "label": cfg.label, "onsets": onsets,
                                     "onset_rule": ONSET_RULE, "train_seconds": result.summary.get("train_seconds")})
