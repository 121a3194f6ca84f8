"""Configs are parsed and checked once, at the boundary; errors name the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from goodhartlab.config import ConfigError, at_least, config_dict, field_docs, parse_config, unknown_fields


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    """The step size."""
    layers: tuple[int, ...] = (64, 64)


@dataclass
class Outer:
    name: str = "a"  # what it is called
    steps: int = 10
    mode: Literal["fast", "slow"] = "fast"
    flag: bool = False
    limit: float | None = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        at_least(self, "steps", 1)


@pytest.mark.parametrize(("values", "field_name", "message"), [
    ({"steps": "many"}, "steps", "must be a whole number, got 'many'"),
    ({"steps": True}, "steps", "must be a whole number, got True"),
    ({"steps": 2.5}, "steps", "must be a whole number, got 2.5"),
    ({"steps": 10**400}, "steps", "must fit a 64-bit integer"),
    ({"steps": 0}, "steps", "must be >= 1, got 0"),
    ({"mode": "medium"}, "mode", "must be one of 'fast', 'slow', got 'medium'"),
    ({"flag": "no"}, "flag", "must be true or false, got 'no'"),
    ({"limit": float("nan")}, "limit", "must be a number or null, got nan"),
    ({"name": 3}, "name", "must be a string, got 3 \\(quote it in YAML\\)"),
    ({"inner": {"lr": "fast"}}, "inner.lr", "must be a number, got 'fast'"),
    ({"inner": {"layers": [64, "x"]}}, "inner.layers\\[1\\]", "must be a whole number"),
    ({"inner": 3}, "inner", "must be a mapping of Inner settings"),
])
def test_a_wrong_value_is_named_with_its_dotted_field(values: dict, field_name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse_config(Outer, values)
    assert error.value.field.replace("\\", "") == field_name.replace("\\", "")


def test_values_are_coerced_once_and_the_resolved_config_holds_every_default() -> None:
    config = parse_config(Outer, {"steps": 3.0, "limit": 2, "inner": {"layers": [8]}})
    assert config.steps == 3 and isinstance(config.limit, float) and config.inner == Inner(layers=(8,))
    assert config_dict(config) == {"name": "a", "steps": 3, "mode": "fast", "flag": False, "limit": 2.0,
                                   "inner": {"lr": 0.1, "layers": [8]}}
    assert parse_config(Outer, config) is config


def test_unknown_names_are_found_in_nested_configs_too() -> None:
    assert unknown_fields(Outer, {"steps": 1, "colour": 2, "inner": {"lrr": 1}}) == ["colour", "inner.lrr"]
    with pytest.raises(ConfigError, match="Outer has no field\\(s\\) colour"):
        parse_config(Outer, {"colour": "red"})


def test_field_docs_come_from_the_dataclass_itself() -> None:
    docs = field_docs(Outer)
    assert docs["name"] == "what it is called" and field_docs(Inner)["lr"] == "The step size."
