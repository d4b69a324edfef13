"""The wall around the ingress: ``hub/ingress/`` names no vendor and no pattern, not even through data.

Every identifier, import, string (docstrings included) and comment of its modules is read; vendors and
patterns contribute their routers, blocks of keys and OpenAPI descriptions from their own packages.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INGRESS = ROOT / "hub" / "ingress"
#: The vendors and patterns the ingress served before they contributed their own parts.
NAMED = re.compile(r"docusign|graph|box|readiness|invoice", re.IGNORECASE)
#: What the runtime may not import (``hub.cli`` alone wires them).
WIRED = ("actors", "connectors", "simulators")


def _words(node: ast.AST) -> list[str]:
    """The names and text a node carries itself (its children are visited on their own)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword):
        return [node.arg or ""]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    return []


def naming(source: str) -> list[tuple[int, str]]:
    """Each (line, text) of ``source`` whose identifier, string or comment names a vendor or a pattern."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        found += [(getattr(node, "lineno", 0), word) for word in _words(node) if NAMED.search(word)]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and NAMED.search(token.string):
            found.append((token.start[0], token.string))
    return found


def imported(source: str) -> set[str]:
    """Every module ``source`` imports."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


MODULES = sorted(INGRESS.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(INGRESS)) for p in MODULES])
def test_no_ingress_module_names_a_vendor_or_a_pattern(path: Path) -> None:
    assert naming(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(INGRESS)) for p in MODULES])
def test_no_ingress_module_imports_a_pattern_a_connector_or_a_simulator(path: Path) -> None:
    modules = imported(path.read_text(encoding="utf-8"))
    assert [m for m in modules if m.split(".")[0] in WIRED] == []


def test_the_check_finds_a_name_in_code_in_a_string_and_in_a_comment() -> None:
    source = '''
"""Serves the Box adapter."""
from connectors.docusign import inbound as signer
def readiness(number): ...
class GraphKeys: ...
route = f"/v1/{kind}/invoices"  # the INVOICE route
'''
    lines = sorted({line for line, _ in naming(source)})
    assert lines == [2, 3, 4, 5, 6]
    assert "connectors.docusign" in imported(source)
    assert naming('"""A vendor\'s webhook, a pattern\'s query."""\nrouter = mount(contributed)\n') == []
