"""Experiment specs: one YAML file describes a study, its variants and seeds; `goodhartlab run` runs it.

    study: traffic-capacity            # the name the results are stored under
    title: Traffic merge, model width
    description: What the curves show.
    task: capability_sweep             # a name from TASKS, or "package.module:function"
    seeds: 3                           # or a list, e.g. [0, 1, 2]
    log_x: true                        # optional: plot the pressure on a log axis
    config: {env: goodhartlab/TrafficMerge-v0, axis: width, values: [4, 16, 64]}
    variants:                          # optional: each overrides fields of `config`
      - {name: velocity proxy, config: {env: goodhartlab/TrafficMerge-v0}}

Every mistake is reported with the file and the field, before anything runs, so a bad spec never
leaves half a study in the store.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from goodhartlab.lab.runner import RunSpec, resolve_task
from goodhartlab.lab.store import run_id

TASKS = {  # name in a spec -> (the task, the config dataclass in the same module that checks its fields)
    "capability_sweep": ("goodhartlab.rl.sweeps:capability_sweep", "CapabilitySweepConfig"),
    "tabular_training": ("goodhartlab.rl.sweeps:tabular_training", "TabularTrainingConfig"),
    "approval_training": ("goodhartlab.rl.sweeps:approval_training", "ApprovalTrainingConfig"),
    "bestofn_study": ("goodhartlab.text.bestofn:bestofn_study", "BestOfNConfig"),
    "direct_alignment_study": ("goodhartlab.text.direct:direct_alignment_study", "DirectAlignmentConfig"),
    "rl_study": ("goodhartlab.text.rl:rl_study", "RLConfig"),
    "bestofn_goodhart": ("goodhartlab.lab.studies:bestofn_goodhart", "BestOfNGoodhartConfig"),
    "ensemble_goodhart": ("goodhartlab.lab.studies:ensemble_goodhart", "EnsembleGoodhartConfig"),
    "planted_transition": ("goodhartlab.lab.studies:planted_transition", "PlantedTransitionConfig"),
}
CONFIG_CLASSES = dict(TASKS.values())
TOP_LEVEL = {"study", "title", "description", "task", "seeds", "config", "variants", "log_x"}


class SpecError(ValueError):
    """A spec file is wrong; the message names the file and the field."""


@dataclass
class Spec:
    study: str
    title: str
    description: str
    task: str
    runs: list[RunSpec]
    meta: dict[str, Any]


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except OSError as error:
        raise SpecError(f"{where}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{where}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a spec is a mapping with at least 'study', 'task' and 'config'")
    unknown = sorted(set(data) - TOP_LEVEL)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_LEVEL))}")
    for required in ("study", "task"):
        if not isinstance(data.get(required), str) or not data[required].strip():
            raise SpecError(f"{where}: field '{required}' is missing or not a string")
    task_name: str = data["task"]
    task: str = TASKS[task_name][0] if task_name in TASKS else task_name
    if ":" not in task:
        raise SpecError(f"{where}: field 'task': {task_name!r} is not one of {', '.join(TASKS)} "
                        "nor a 'package.module:function' path")
    try:
        resolve_task(task)
    except ValueError as error:
        raise SpecError(f"{where}: field 'task': {error}") from None
    seeds_field = data.get("seeds", 3)
    if isinstance(seeds_field, int) and not isinstance(seeds_field, bool) and seeds_field >= 1:
        seeds = list(range(seeds_field))
    elif isinstance(seeds_field, list) and seeds_field and all(isinstance(s, int) for s in seeds_field):
        seeds = list(seeds_field)
    else:
        raise SpecError(f"{where}: field 'seeds' must be a positive count or a list of integers, got {seeds_field!r}")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise SpecError(f"{where}: field 'seeds' lists seed(s) {', '.join(map(str, repeated))} more than once; "
                        "a seed gives the same run every time")
    base = data.get("config", {}) or {}
    if not isinstance(base, dict):
        raise SpecError(f"{where}: field 'config' must be a mapping of the task's settings")
    variants = data.get("variants") or [{"name": data["study"], "config": {}}]
    if not isinstance(variants, list):
        raise SpecError(f"{where}: field 'variants' must be a list of {{name, config}} mappings")
    _check_field_names(where, "config", task, base)
    runs = []
    first_of_config: dict[str, int] = {}
    first_of_name: dict[str, int] = {}
    for i, variant in enumerate(variants):
        if not isinstance(variant, dict) or not isinstance(variant.get("name"), str):
            raise SpecError(f"{where}: variants[{i}] needs a 'name' (string) and optionally a 'config' mapping")
        extra = sorted(set(variant) - {"name", "config"})
        if extra:
            raise SpecError(f"{where}: variants[{i}] has unknown field(s) {', '.join(extra)}")
        if not isinstance(variant.get("config") or {}, dict):
            raise SpecError(f"{where}: variants[{i}].config must be a mapping of the task's settings")
        _check_field_names(where, f"variants[{i}].config", task, variant.get("config") or {})
        config = {**base, **(variant.get("config") or {})}
        _check_config(where, f"variants[{i}].config" if variant.get("config") else "config", task, config)
        if (same := first_of_name.setdefault(variant["name"], i)) != i:
            raise SpecError(f"{where}: variants[{i}] has the name of variants[{same}] ({variant['name']!r}); "
                            "the report tells variants apart by name")
        if (same := first_of_config.setdefault(run_id(data["study"], task, config, 0), i)) != i:
            raise SpecError(f"{where}: variants[{i}] ({variant['name']!r}) has the same config as variants[{same}]; "
                            "it would be the same runs: change a setting or remove it")
        runs += [RunSpec(data["study"], variant["name"], task, config, seed) for seed in seeds]
    meta = {"log_x": bool(data.get("log_x", False))}
    return Spec(data["study"], str(data.get("title", data["study"])), str(data.get("description", "")), task,
                runs, meta)


def _config_class(task: str) -> Any:
    """The config dataclass a task declares in its module, if any."""
    module = importlib.import_module(task.partition(":")[0])
    return getattr(module, CONFIG_CLASSES.get(task, ""), None)


def _check_field_names(where: str, field_name: str, task: str, config: dict[str, Any]) -> None:
    """Unknown settings, named where they are written: in the base config or in a variant's."""
    from goodhartlab.lab import studies

    config_class = _config_class(task)
    if config_class is None:
        return
    try:
        studies.check_field_names(config_class, config)
    except ValueError as error:
        raise SpecError(f"{where}: field '{field_name}': {error}") from None


def _check_config(where: str, field_name: str, task: str, config: dict[str, Any]) -> None:
    """Build the task's config dataclass (if it declares one) so a typo fails here, not mid-run."""
    from goodhartlab.lab import studies

    config_class = _config_class(task)
    if config_class is None:
        return
    try:
        parsed = studies.parse_config(config_class, config)
        if hasattr(parsed, "env"):
            _check_environment(parsed)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{where}: field '{field_name}': {error}") from None


def _check_environment(config: Any) -> None:
    """The environment exists and takes the given arguments; the agent's settings are real fields."""
    import gymnasium as gym

    import goodhartlab.rl  # noqa: F401  (registers the environments)

    try:
        gym.spec(config.env)
    except gym.error.Error:
        raise ValueError(f"unknown environment {config.env!r}; `goodhartlab envs` lists them") from None
    env = gym.make(config.env, **getattr(config, "env_config", {}))
    metadata = env.unwrapped.metadata
    env.close()
    if getattr(config, "learn_from", None) == "current_rf" and "initial_reward_parameters" not in metadata:
        raise ValueError(f"learn_from 'current_rf' needs an environment with reward parameters; "
                         f"{config.env} has none")
    if hasattr(config, "agent"):
        from goodhartlab.lab.studies import parse_config
        from goodhartlab.rl.agents.ppo import PPOConfig

        parse_config(PPOConfig, config.agent)
