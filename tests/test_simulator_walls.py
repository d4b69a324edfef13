"""The walls around the simulators (docs/architecture.md): they stand for other companies' systems, so they
import nothing of the hub's runtime, and the runtime never reaches into them (only ``hub/cli`` wires them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = {"hub", "actors", "connectors", "observability"}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (relative imports stay in its own package and are left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
    return {name.split(".")[0] for name in names}


def modules(package: str) -> list[Path]:
    """Every module of a top-level package, or fails when there is none (a wall around nothing)."""
    found = sorted((ROOT / package).rglob("*.py"))
    assert found, f"no module under {package}/"
    return found


def test_the_simulators_import_nothing_of_the_hub_runtime() -> None:
    walled = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & RUNTIME)
              for path in modules("simulators")}
    assert {path: packages for path, packages in walled.items() if packages} == {}


@pytest.mark.parametrize("package", ["connectors", "hub", "actors", "observability"])
def test_the_runtime_never_imports_the_simulators_outside_the_composition_root(package: str) -> None:
    reaching = [str(path.relative_to(ROOT)) for path in modules(package)
                if "simulators" in imported_packages(path) and not path.is_relative_to(ROOT / "hub" / "cli")]
    assert reaching == []


def test_the_wall_check_sees_an_import_of_the_runtime(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("import json\nfrom hub.settings import Settings\nimport connectors.http as h\nfrom . import x\n")
    assert imported_packages(module) & RUNTIME == {"hub", "connectors"}
