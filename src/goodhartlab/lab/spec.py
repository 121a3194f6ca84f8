"""Experiment specs: one YAML file describes a study, its variants and seeds; `goodhartlab run` runs it.

    study: traffic-capacity            # the name the results are stored under
    title: Traffic merge, model width
    description: What the curves show.
    kind: capability_sweep             # a registered study kind (`goodhartlab kinds` lists them)
    seeds: 3                           # or a list, e.g. [0, 1, 2]
    log_x: true                        # optional: plot the pressure on a log axis
    config: {env: goodhartlab/TrafficMerge-v0, axis: width, values: [4, 16, 64]}
    variants:                          # optional: each overrides fields of `config` (nested mappings merge)
      - {name: velocity proxy, config: {env: goodhartlab/TrafficMerge-v0}}

Every variant's config is parsed into its kind's config dataclass here, once; the runs carry the
parsed configs, and their identity is the hash of the resolved config (defaults included). Every
mistake is reported with the file and the field before anything runs, so a bad spec never leaves half
a study in the store. YAML is read strictly: a repeated key, `yes`/`no`/`on`/`off` as booleans, and
aliases or nesting that would blow up in memory are errors.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from goodhartlab.config import ConfigError, imports_allowed, parse_config, unknown_fields
from goodhartlab.lab.registry import KindError, StudyKind, study_kind
from goodhartlab.lab.runner import RunSpec
from goodhartlab.lab.store import StudyInfo

TOP_LEVEL = {"study", "title", "description", "kind", "task", "seeds", "config", "variants", "log_x"}
MAX_SPEC_BYTES = 1_000_000
MAX_SEEDS = 10_000
"""More seeds than this in one spec is taken for a typo; `seeds` as a list of that many numbers is still fine
to split across specs."""
MAX_DEPTH = 50
MAX_ALIASES = 100


class SpecError(ValueError):
    """A spec file is wrong; the message names the file and the field."""


@dataclass
class Spec:
    study: StudyInfo
    kind: StudyKind
    runs: list[RunSpec]


class _StrictLoader(yaml.SafeLoader):
    """YAML 1.2's booleans (true/false only), no repeated keys, bounded aliases and nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_ALIASES} aliases (*name); a spec has no need of them",
                    event.start_mark)
        depth = getattr(self, "_depth", 0) + 1
        if depth > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                    self.peek_event().start_mark)
        self._depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth - 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (the first at line {seen[key] + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {k: [(tag, regexp) for tag, regexp in v if tag != "tag:yaml.org,2002:bool"]
                                         for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def read_yaml(path: Path) -> Any:
    """The document in `path`, read strictly; errors name the file."""
    where = str(path)
    try:
        if path.is_dir():
            raise SpecError(f"{where}: is a folder; pass the spec's .yaml file")
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"{where}: is {size:,} bytes; a spec is a short YAML file (at most {MAX_SPEC_BYTES:,})")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"{where}: not UTF-8 text (byte {error.start}); save the spec as UTF-8") from None
    except OSError as error:
        raise SpecError(f"{where}: cannot read it ({error.strerror})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as error:
        raise SpecError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise SpecError(f"{where}: not valid YAML: nested too deeply") from None


def load_spec(path: str | Path, *, allow_import: bool = False) -> Spec:
    """Read, check and expand a spec into its runs. `allow_import` lets the spec name code to import — a `kind`
    'package.module:function', a text `task` 'package.module:Class', an environment 'module:Env-v0' — whose
    module's code then runs: pass it only for specs whose author you trust."""
    with imports_allowed(allow_import):
        return _load_spec(Path(path), allow_import)


def _load_spec(path: Path, allow_import: bool) -> Spec:
    where = str(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a spec is a mapping with at least 'study', 'kind' and 'config'")
    unknown = sorted(str(key) for key in set(data) - TOP_LEVEL)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_LEVEL))}")
    if "task" in data:
        if "kind" in data:
            raise SpecError(f"{where}: field 'task' is the earlier name of 'kind'; give only 'kind'")
        warnings.warn(f"{where}: field 'task' is now called 'kind'; rename it", DeprecationWarning, stacklevel=2)
        data["kind"] = data.pop("task")
    for required in ("study", "kind"):
        if not isinstance(data.get(required), str) or not data[required].strip():
            raise SpecError(f"{where}: field '{required}' is missing or not a string")
    for text_field in ("title", "description"):
        if text_field in data and not isinstance(data[text_field], str | int | float):
            raise SpecError(f"{where}: field '{text_field}' must be text")
    if not isinstance(data.get("log_x", False), bool):
        raise SpecError(f"{where}: field 'log_x' must be true or false")
    try:
        kind = study_kind(data["kind"], allow_import=allow_import)
    except KindError as error:
        raise SpecError(f"{where}: field 'kind': {error}") from None
    seeds = _seeds(where, data.get("seeds", 3))
    base = data.get("config", {})
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise SpecError(f"{where}: field 'config' must be a mapping of the kind's settings")
    variants = data.get("variants", [{"name": data["study"], "config": {}}])
    if not isinstance(variants, list) or not variants:
        raise SpecError(f"{where}: field 'variants' must be a non-empty list of {{name, config}} mappings (leave it "
                        "out for a single variant)")
    config_class = kind.config_class()
    _check_names(where, "config", config_class, base)
    study = StudyInfo(data["study"], str(data.get("title", data["study"])), str(data.get("description", "")),
                      {"log_x": bool(data.get("log_x", False))})
    runs = []
    first_of_config: dict[str, int] = {}
    first_of_name: dict[str, int] = {}
    for i, variant in enumerate(variants):
        field = f"variants[{i}]"
        if not isinstance(variant, dict) or not isinstance(variant.get("name"), str) or not variant["name"].strip():
            raise SpecError(f"{where}: {field} needs a 'name' (string) and optionally a 'config' mapping")
        extra = sorted(str(key) for key in set(variant) - {"name", "config"})
        if extra:
            raise SpecError(f"{where}: {field} has unknown field(s) {', '.join(extra)}")
        overrides = variant.get("config") or {}
        if not isinstance(overrides, dict):
            raise SpecError(f"{where}: {field}.config must be a mapping of the kind's settings")
        _check_names(where, f"{field}.config", config_class, overrides)
        merged = _merged(base, overrides)
        config: Any = merged
        if config_class is not None:
            try:
                config = parse_config(config_class, merged)
            except ConfigError as error:
                blamed = f"{field}.config" if _touches(overrides, error.field) else "config"
                raise SpecError(f"{where}: field '{blamed}': {error}") from None
            except (ValueError, TypeError) as error:
                raise SpecError(f"{where}: field '{field}.config': {error}") from None
        if (same := first_of_name.setdefault(variant["name"], i)) != i:
            raise SpecError(f"{where}: {field} has the name of variants[{same}] ({variant['name']!r}); the report "
                            "tells variants apart by name")
        probe = RunSpec(study, variant["name"], kind.name, config, 0)
        if (same := first_of_config.setdefault(probe.run_id, i)) != i:
            raise SpecError(f"{where}: {field} ({variant['name']!r}) has the same config as variants[{same}]; it would "
                            "be the same runs: change a setting or remove it")
        runs += [RunSpec(study, variant["name"], kind.name, config, seed) for seed in seeds]
    return Spec(study, kind, runs)


def _seeds(where: str, given: Any) -> list[int]:
    """Seeds as a count (0 .. n-1) or a list: whole numbers in [0, 2^63), each once, at most MAX_SEEDS."""
    if isinstance(given, int) and not isinstance(given, bool):
        if not 1 <= given <= MAX_SEEDS:
            raise SpecError(f"{where}: field 'seeds': a count must be between 1 and {MAX_SEEDS:,}, got {given}; "
                            "for more, split the study across specs")
        return list(range(given))
    if not isinstance(given, list) or not given:
        raise SpecError(f"{where}: field 'seeds' must be a positive count or a list of whole numbers, got "
                        f"{str(given)[:40]}")
    if len(given) > MAX_SEEDS:
        raise SpecError(f"{where}: field 'seeds' lists {len(given):,} seeds, more than {MAX_SEEDS:,}")
    for seed in given:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            shown = str(seed) if len(str(seed)) < 30 else f"a number of {len(str(seed))} digits"
            raise SpecError(f"{where}: field 'seeds': every seed must be a whole number from 0 to 2^63 - 1, "
                            f"got {shown}")
    counts: dict[int, int] = {}
    for seed in given:
        counts[seed] = counts.get(seed, 0) + 1
    repeated = sorted(seed for seed, count in counts.items() if count > 1)
    if repeated:
        raise SpecError(f"{where}: field 'seeds' lists seed(s) {', '.join(map(str, repeated[:10]))} more than once; "
                        "a seed gives the same run every time")
    return list(given)


def _check_names(where: str, field: str, config_class: type | None, values: Mapping[str, Any]) -> None:
    """Unknown settings, named where they are written: in the base config or in a variant's."""
    if config_class is None:
        return
    unknown = unknown_fields(config_class, values)
    if unknown:
        known = ", ".join(sorted(f.name for f in dataclasses.fields(config_class)))
        raise SpecError(f"{where}: field '{field}': {config_class.__name__} has no field(s) {', '.join(unknown)}; "
                        f"known: {known}")


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's settings over the base's; nested mappings (agent:, env_kwargs:) merge key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _touches(overrides: Mapping[str, Any], field: str) -> bool:
    """Whether the variant's own settings include the (dotted) field an error names."""
    node: Any = overrides
    for part in field.split("."):
        name = part.split("[")[0]
        if not isinstance(node, Mapping) or name not in node:
            return not field and bool(overrides)
        node = node[name]
    return True


__all__ = ["MAX_SEEDS", "Spec", "SpecError", "load_spec", "read_yaml"]
