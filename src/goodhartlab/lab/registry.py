"""The study kinds a spec, the CLI and the demo can run: name -> config class, function, preparation.

A kind is registered by import path (imported when first used), so the registry costs nothing to
load and a spec naming an RL kind never imports torch's text stack. Only registered kinds run by
name; a spec that names an import path instead runs user code, and only when the user allows it
(`goodhartlab run --allow-import`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from goodhartlab.config import import_object
from goodhartlab.results import RunResult

Study = Callable[[Any, int], RunResult]
"""A study kind's function: (its config, seed) -> RunResult."""
Tables = Callable[[Sequence[Mapping[str, Any]]], list[tuple[str, list[str], list[list[Any]]]]]
"""A study kind's tables across the seeds of a variant: (their summaries) -> [(title, header, rows)]."""


class KindError(ValueError):
    """A study kind that is not registered, or an import path that may not or cannot be used."""


GIB = 2**30


@dataclass(frozen=True)
class Resources:
    """What one run needs of a machine: a scheduler (Ray) places it where these are free, and gives it as many
    threads as CPUs."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int = 0
    """Bytes; 0 declares nothing (Ray then counts no memory against the node)."""

    def describe(self) -> str:
        parts = [f"{self.num_cpus:g} CPU{'s' if self.num_cpus != 1 else ''}"]
        if self.num_gpus:
            parts.append(f"{self.num_gpus:g} GPU{'s' if self.num_gpus != 1 else ''}")
        if self.memory:
            parts.append(f"{self.memory / GIB:.1f} GiB of memory")
        return ", ".join(parts)


@dataclass(frozen=True)
class StudyKind:
    """One kind of study. `config` and `run` (and `prepare`) are 'module:name' paths; `prepare`, if any, is
    called once before a sweep with the pending runs' (config, seed), to do shared work there (sample the
    pools the variants share) rather than in every run. `num_cpus`, `num_gpus` and `memory_gib` are what
    one run needs; a config whose `device` is 'cuda' needs a GPU as well (`resources`)."""

    name: str
    config: str | None
    run: str
    prepare: str | None = None
    description: str = ""
    registered: bool = True
    """False for a user's 'package.module:function' kind, imported only where the user allows it."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gib: float = 0.0
    tables: str | None = None
    """'module:name' of a function that takes the summaries of one variant's runs (its seeds) and gives the
    report's tables across them: [(title, header, rows)]."""

    def resources(self, config: Any) -> Resources:
        """What a run of this kind with `config` needs: the kind's declaration, and one GPU for `device: cuda`."""
        gpus = self.num_gpus
        device = config.get("device") if isinstance(config, Mapping) else getattr(config, "device", None)
        if device == "cuda":
            gpus = max(gpus, 1.0)
        return Resources(self.num_cpus, gpus, int(self.memory_gib * GIB))

    def config_class(self) -> type | None:
        if self.config is None:
            return None
        cls: type = import_object(self.config, f"config of kind {self.name}", ours=self.registered)
        return cls

    def function(self) -> Study:
        function: Study = import_object(self.run, f"study kind {self.name}", ours=self.registered)
        return function

    def preparation(self) -> Callable[[Sequence[tuple[Any, int]]], None] | None:
        if self.prepare is None:
            return None
        prepare: Callable[[Sequence[tuple[Any, int]]], None] = import_object(
            self.prepare, f"preparation of kind {self.name}", ours=self.registered)
        return prepare

    def table_function(self) -> Tables | None:
        if self.tables is None:
            return None
        tables: Tables = import_object(self.tables, f"tables of kind {self.name}", ours=self.registered)
        return tables


KINDS: dict[str, StudyKind] = {kind.name: kind for kind in (
    StudyKind("bestofn_goodhart", "goodhartlab.lab.synthetic:BestOfNGoodhartConfig",
              "goodhartlab.lab.synthetic:bestofn_goodhart",
              description="best-of-n against proxy = gold + Gaussian or heavy-tailed noise"),
    StudyKind("ensemble_goodhart", "goodhartlab.lab.synthetic:EnsembleGoodhartConfig",
              "goodhartlab.lab.synthetic:ensemble_goodhart",
              description="best-of-n against an aggregated ensemble of noisy proxies"),
    StudyKind("planted_transition", "goodhartlab.lab.synthetic:PlantedTransitionConfig",
              "goodhartlab.lab.synthetic:planted_transition",
              description="a capability sweep with a known shape: sharp drop, gradual decline or none"),
    StudyKind("detector_rates", "goodhartlab.lab.synthetic:DetectorRatesConfig",
              "goodhartlab.lab.synthetic:detector_rates",
              description="detection and false-positive rates of the transition test on planted curves"),
    StudyKind("tabular_training", "goodhartlab.rl.studies:TabularTrainingConfig",
              "goodhartlab.rl.studies:tabular_training",
              description="tabular Q-learning on a gridworld: proxy and true return over episodes"),
    StudyKind("approval_training", "goodhartlab.rl.studies:ApprovalTrainingConfig",
              "goodhartlab.rl.studies:approval_training",
              description="(decoupled) approval learning on a feedback-tampering gridworld"),
    StudyKind("capability_sweep", "goodhartlab.rl.studies:CapabilitySweepConfig",
              "goodhartlab.rl.studies:capability_sweep",
              description="PPO along a capability axis (training steps, width, depth, action resolution, noise)"),
    StudyKind("rl_detection", "goodhartlab.rl.detection:RLDetectionConfig", "goodhartlab.rl.detection:rl_detection_run",
              prepare="goodhartlab.rl.detection:prepare_trusted",
              description="a detection-benchmark run: an RL learner on a loophole proxy, or its healthy twin"),
    StudyKind("grpo_detection", "goodhartlab.text.detection:GRPODetectionConfig",
              "goodhartlab.text.detection:grpo_detection_run",
              description="a detection-benchmark run: GRPO on a loophole proxy, or its healthy twin on gold"),
    StudyKind("bestofn", "goodhartlab.text.bestofn:BestOfNConfig", "goodhartlab.text.bestofn:bestofn_study",
              prepare="goodhartlab.text.bestofn:prepare_pools",
              description="best-of-n on a language model against a lexicon or learned proxy", memory_gib=2),
    StudyKind("grpo", "goodhartlab.text.grpo:GRPOStudyConfig", "goodhartlab.text.grpo:grpo_study",
              description="GRPO or RLOO (TRL) against a proxy, gold as a weight-0 reward", memory_gib=4),
    StudyKind("direct_alignment", "goodhartlab.text.direct_alignment:DirectAlignmentConfig",
              "goodhartlab.text.direct_alignment:direct_alignment_study",
              description="DPO, IPO or SLiC (TRL) on proxy-labelled pairs, gold win rate against √KL", memory_gib=4),
    StudyKind("kl_limits", "goodhartlab.text.kl_limits:KLLimitsConfig", "goodhartlab.text.kl_limits:kl_limits_study",
              description="the teacher agent under a total KL budget or a per-token penalty (Cohen et al.)",
              memory_gib=4),
    StudyKind("mitigation", "goodhartlab.text.mitigation:MitigationConfig",
              "goodhartlab.text.mitigation:mitigation_study", prepare="goodhartlab.text.mitigation:prepare_pools",
              tables="goodhartlab.text.mitigation:frontier_tables",
              description="reward-model mitigations (BT, GRM, ensembles, WARM, capping) on one best-of-n frontier",
              memory_gib=4),
    StudyKind("mitigation_rl", "goodhartlab.text.mitigation_rl:RLMitigationConfig",
              "goodhartlab.text.mitigation_rl:rl_mitigation_study",
              prepare="goodhartlab.text.mitigation_rl:prepare_rl_pools",
              tables="goodhartlab.text.mitigation_rl:rl_frontier_tables",
              description="GRPO against one reward-model mitigation (BT, GRM, an ensemble, WARM, PAR), gold weight 0",
              memory_gib=4),
)}
RENAMED = {"bestofn_study": "bestofn", "rl_study": "grpo", "direct_alignment_study": "direct_alignment"}
"""Kinds known under an earlier name: still read, with a note to use the new one."""


def study_kind(name: str, *, allow_import: bool = False) -> StudyKind:
    """The registered kind `name` (or its earlier name), or with `allow_import` a user's 'package.module:function'
    that takes (config mapping, seed) and returns a RunResult."""
    name = RENAMED.get(name, name)
    if name in KINDS:
        return KINDS[name]
    if ":" not in name:
        raise KindError(f"{name!r} is not a study kind; known: {', '.join(KINDS)}")
    if not allow_import:
        raise KindError(f"{name!r} is an import path, which would run that module's code; only registered kinds "
                        f"({', '.join(KINDS)}) run by name. If you trust the spec and its author, pass --allow-import")
    kind = StudyKind(name, None, name, registered=False)
    try:
        kind.function()
    except ValueError as error:
        raise KindError(str(error)) from None
    return kind
