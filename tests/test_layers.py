"""The layers point one way (../DESIGN.md): a package imports only packages of the rows before its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import goodhartlab

SOURCE = Path(goodhartlab.__file__).parent
LAYERS = [  # the ground floor first, the face last; a package may import its own row and the rows before it
    {"results", "config", "files", "measure"},
    {"rewards"},
    {"detect"},
    {"rl", "integrations"},
    {"text"},
    {"agentic"},
    {"lab"},
    {"cli"},
]
ROW = {package: row for row, packages in enumerate(LAYERS) for package in packages}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "goodhartlab" and len(parts) > 1 else None


def imports() -> dict[str, set[str]]:
    """Every goodhartlab module's goodhartlab imports, lazy ones (inside functions) included."""
    found: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        module = "goodhartlab." + ".".join(path.relative_to(SOURCE).with_suffix("").parts).removesuffix(".__init__")
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[module] = {name for name in names if name.startswith("goodhartlab.")}
    return found


def test_every_import_points_down_or_sideways() -> None:
    upward = []
    for module, targets in imports().items():
        own = package_of(module)
        if own is None:
            continue
        for target in targets:
            other = package_of(target)
            if other is not None and other != own and ROW[other] > ROW[own]:
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(sorted(upward))


def test_packages_form_no_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for module, targets in imports().items():
        own = package_of(module)
        if own is not None:
            edges.setdefault(own, set()).update(p for t in targets if (p := package_of(t)) not in (None, own))
    state: dict[str, int] = {}

    def visit(package: str, path: list[str]) -> None:
        state[package] = 1
        for target in edges.get(package, ()):
            assert state.get(target) != 1, f"import cycle: {' -> '.join([*path, target])}"
            if target not in state:
                visit(target, [*path, target])
        state[package] = 2

    for package in edges:
        if package not in state:
            visit(package, [package])


def test_the_trl_callback_loads_neither_the_lab_nor_matplotlib() -> None:
    code = ("import sys, goodhartlab.integrations.trl; "
            "print(sorted(m for m in sys.modules if m.startswith('goodhartlab.lab') or m.startswith('matplotlib')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_no_module_switches_the_plotting_backend_at_import() -> None:
    code = ("import matplotlib; matplotlib.use('svg'); import goodhartlab.lab.report, goodhartlab.cli; "
            "print(matplotlib.get_backend())")
    backend = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert backend.strip() == "svg"
