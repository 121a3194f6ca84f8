"""Configs: parsed and checked once, at the boundary, into typed dataclasses.

Every study, agent and optimizer is configured by a dataclass whose defaults run on a laptop CPU.
`parse_config` builds one from a mapping (a spec's YAML, the CLI's flags, a stored run) and is the
only place where a setting's *type* is checked: unknown names, a string where a number belongs,
booleans posing as numbers, NaN, integers no array can hold, nested configs (`agent:` holds a
`PPOConfig`). The dataclass's `__post_init__` then states its own rules, one line each, with the
constraint helpers below. Errors are `ConfigError`s naming the field, so a spec or the CLI can say
where the mistake is.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")
INT64 = 2**63
"""Whole numbers must fit a signed 64-bit integer: NumPy seeds, SQLite columns and array sizes do."""


class ConfigError(ValueError):
    """A setting is wrong. `field` is its dotted name (``agent.lr``); the message names it too."""

    def __init__(self, field: str, message: str, *, names_field: bool = False) -> None:
        """`message` continues the field's name ("must be >= 1, got 0"), or with `names_field` is a whole
        sentence that names it already ("unknown task 'poetry'; known: ...")."""
        super().__init__(message if names_field or not field else f"{field} {message}")
        self.field, self.message, self.names_field = field, message, names_field

    def within(self, prefix: str) -> ConfigError:
        """The same error for a config nested under `prefix` (``agent`` of a sweep)."""
        return ConfigError(f"{prefix}.{self.field}" if self.field else prefix, self.message,
                           names_field=self.names_field)


def check_field_names(kind: type, values: Mapping[str, Any]) -> None:
    """Name any setting the config dataclass lacks: a typo in a spec is an error, not a default."""
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(str(name) for name in set(values) - known)
    if unknown:
        raise ConfigError("", f"{kind.__name__} has no field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")


def unknown_fields(kind: type, values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted names in `values` (nested configs included) that `kind` has no field for."""
    hints = _hints(kind)
    unknown = []
    for name, value in values.items():
        if name not in hints or name not in {f.name for f in dataclasses.fields(kind)}:
            unknown.append(f"{prefix}{name}")
        elif dataclasses.is_dataclass(hints[name]) and isinstance(value, Mapping):
            unknown += unknown_fields(hints[name], value, f"{prefix}{name}.")
    return unknown


def parse_config(kind: type[ConfigT], values: Mapping[str, Any] | ConfigT | None = None) -> ConfigT:
    """Build the config dataclass `kind` from a mapping, checking every given value against its field's
    annotation (nested dataclasses recursively); its `__post_init__` checks the rest. An instance of
    `kind` is returned as it is."""
    if isinstance(values, kind):
        return values
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError("", f"{kind.__name__} settings must be a mapping of field: value, got "
                          f"{type(values).__name__}")
    check_field_names(kind, values)
    hints = _hints(typing.cast(type, kind))
    parsed = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
    try:
        return kind(**parsed)
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError) as error:  # a rule of __post_init__ not yet written as one
        raise ConfigError("", f"{kind.__name__}: {error}") from None


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
    if annotation in names:
        return names[annotation]
    if origin in (list, tuple):
        return "a list"
    if origin in (dict, Mapping) or dataclasses.is_dataclass(annotation):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """`value` as the annotation wants it (tuples from YAML lists, nested configs from mappings), or a
    ConfigError saying what was expected."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        failures = []
        for option in typing.get_args(annotation):
            try:
                return _coerce(name, value, option)
            except ConfigError as error:
                failures.append(error)
        raise ConfigError(name, f"must be {_describe(annotation)}, got {_shown(value)}")
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if any(value == choice and type(value) is type(choice) for choice in choices):
            return value
        quoted = isinstance(value, bool) and str(value).lower() in choices
        hint = f" (quote it in YAML: '{str(value).lower()}')" if quoted else ""
        raise ConfigError(name, f"must be {_describe(annotation)}, got {_shown(value)}{hint}")
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(name, f"must be a mapping of {annotation.__name__} settings, got {_shown(value)}")
        try:
            return parse_config(annotation, value)
        except ConfigError as error:
            raise error.within(name) from None
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(name, f"must be null, got {_shown(value)}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        hint = " (in YAML write true or false, unquoted)" if isinstance(value, str) else ""
        raise ConfigError(name, f"must be true or false, got {_shown(value)}{hint}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _whole(name, value)
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return _whole(name, int(value))
        raise ConfigError(name, f"must be a whole number, got {_shown(value)}")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, int):
                _whole(name, value)
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(name, f"must be a finite number, got {value!r}")
            return number
        raise ConfigError(name, f"must be a number, got {_shown(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        hint = " (quote it in YAML)" if isinstance(value, bool | int | float) else ""
        raise ConfigError(name, f"must be a string, got {_shown(value)}{hint}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(name, f"must be a list, got {_shown(value)}")
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        items = [_coerce(f"{name}[{i}]", element, item) for i, element in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(name, f"must be a mapping, got {_shown(value)}")
        return dict(value)
    return value


def _whole(name: str, value: int) -> int:
    if not -INT64 <= value < INT64:
        raise ConfigError(name, f"must fit a 64-bit integer (|value| < 2^63), got a number of {len(str(abs(value)))} "
                          "digits")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- constraint helpers: one line per rule in a config's __post_init__ ------------------------------------------


def at_least(config: Any, name: str, minimum: float, *, why: str = "") -> None:
    """`config.name` >= minimum (None passes: an unset optional)."""
    value = getattr(config, name)
    if value is not None and value < minimum:
        raise ConfigError(name, f"must be >= {minimum:g}, got {value!r}{f'; {why}' if why else ''}")


def above(config: Any, name: str, bound: float, *, why: str = "") -> None:
    """`config.name` > bound (None passes)."""
    value = getattr(config, name)
    if value is not None and not value > bound:
        raise ConfigError(name, f"must be > {bound:g}, got {value!r}{f'; {why}' if why else ''}")


def between(config: Any, name: str, low: float, high: float) -> None:
    """low <= `config.name` <= high (None passes)."""
    value = getattr(config, name)
    if value is not None and not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {value!r}")


def one_of(config: Any, name: str, choices: Iterable[Any]) -> None:
    """`config.name` is one of `choices`, listed in the error."""
    value = getattr(config, name)
    options = list(choices)
    if value not in options:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(repr(option) for option in options)}")


def non_empty(config: Any, name: str) -> None:
    """A string or list that must hold something."""
    value = getattr(config, name)
    if not value or (isinstance(value, str) and not value.strip()):
        raise ConfigError(name, "must not be empty")


def config_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-ready data: every field, defaults included (tuples as lists)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def field_docs(kind: type) -> dict[str, str]:
    """Each field's documentation: the string written under it in the class body (as PPOConfig's are),
    else its trailing comment. The CLI's --help reads it, so a field is documented in one place."""
    docs: dict[str, str] = {}
    for klass in reversed(kind.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        statements = body.body
        for index, statement in enumerate(statements):
            if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
                continue
            following = statements[index + 1] if index + 1 < len(statements) else None
            if (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[statement.target.id] = " ".join(following.value.value.split())
                continue
            line = lines[statement.lineno - 1]
            if "#" in line:
                docs[statement.target.id] = line.split("#", 1)[1].strip()
    return docs


_IMPORTS_ALLOWED: ContextVar[bool] = ContextVar("goodhartlab_imports_allowed", default=True)


class ImportRefused(ValueError):
    """A config names code to import ('package.module:name') where the user has not allowed it."""


@contextmanager
def imports_allowed(allowed: bool) -> Iterator[None]:
    """Within the block, `import_object` imports only if `allowed`. A spec from someone else is parsed with
    imports refused unless its user passes --allow-import: naming a module in a config runs that module's code."""
    token = _IMPORTS_ALLOWED.set(allowed)
    try:
        yield
    finally:
        _IMPORTS_ALLOWED.reset(token)


def check_import_allowed(path: str, what: str) -> None:
    if not _IMPORTS_ALLOWED.get():
        raise ImportRefused(f"{what} {path!r} is an import path, which would run that module's code; this spec may "
                            "only name what goodhartlab registers. If you trust the spec and its author, pass "
                            "--allow-import")


def import_object(path: str, what: str, form: str = "package.module:name", *, ours: bool = False) -> Any:
    """The object a 'package.module:name' path names; `what` says what it is, in the error. `ours`: a path
    goodhartlab itself registers, imported whatever the user allowed."""
    module_name, _, name = path.partition(":")
    if not module_name or not name or module_name.startswith("."):
        raise ValueError(f"{what} {path!r} must be '{form}' (an absolute module path)")
    if not ours:
        check_import_allowed(path, what)
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"cannot load {what} {path!r}: {error}") from None
