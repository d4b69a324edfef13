"""The walls of the house: the import-linter contracts hold (``make lint`` runs them too), the
benchmarks have no import cycle, and no module grows past 400 lines without saying why at its top."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_linter_contract_is_kept() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _imports_of(package: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (ROOT / package).glob("*.py"):
        module = f"{package}.{path.stem}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith(f"{package}."):
                    graph[module].add(node.module)
                elif node.module == package:
                    graph[module].update(f"{package}.{alias.name}" for alias in node.names)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for successor in sorted(graph.get(node, ())):
            found = visit(successor, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_the_benchmarks_import_no_module_of_theirs_in_a_cycle() -> None:
    assert _cycle(_imports_of("bench")) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


#: Where a module may grow past the limit: its docstring says why, in these words.
LONG_MODULE_LIMIT = 400
_REASON = ("400 lines on purpose",)


def _long_modules_without_a_reason(paths: list[Path], root: Path = ROOT) -> list[str]:
    unexplained = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= LONG_MODULE_LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if not any(reason in docstring for reason in _REASON):
            unexplained.append(str(path.relative_to(root)))
    return unexplained


def test_no_module_over_400_lines_without_a_reason_at_its_top() -> None:
    paths = [path for room in ("hub", "actors", "connectors", "observability", "simulators", "bench", "chaos", "tests")
             for path in sorted((ROOT / room).rglob("*.py"))]
    assert len(paths) > 150
    assert _long_modules_without_a_reason(paths) == []


def test_a_long_module_without_a_reason_is_found(tmp_path: Path) -> None:
    long_body = "x = 1\n" * (LONG_MODULE_LIMIT + 1)
    silent = tmp_path / "silent.py"
    silent.write_text('"""A module."""\n' + long_body, encoding="utf-8")
    explained = tmp_path / "explained.py"
    explained.write_text('"""A module. Past 400 lines on purpose: one story."""\n' + long_body, encoding="utf-8")
    short = tmp_path / "short.py"
    short.write_text('"""A module."""\nx = 1\n', encoding="utf-8")
    assert _long_modules_without_a_reason([silent, explained, short], tmp_path) == ["silent.py"]


def test_no_crash_dump_is_kept_and_every_private_rabbitmq_dumps_outside_the_tree() -> None:
    """An Erlang VM that fails to boot writes ``erl_crash.dump`` into its working directory: none is tracked,
    git ignores one, and every place that starts a private RabbitMQ node points its dump elsewhere."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not [name for name in tracked.splitlines() if name.endswith(".dump")]
    ignored = subprocess.run(["git", "check-ignore", "erl_crash.dump", "chaos/erl_crash.dump"], cwd=ROOT,
                             capture_output=True, text=True, check=False)
    assert ignored.stdout.split() == ["erl_crash.dump", "chaos/erl_crash.dump"], ignored.stderr
    starters = [path for folder in ("hub", "chaos", "tests", "bench") for path in (ROOT / folder).rglob("*.py")
                if "rabbitmq-server" in (text := path.read_text(encoding="utf-8")) and "Popen(" in text]
    assert starters, "no module starts a private RabbitMQ node: this check would check nothing"
    assert [path.relative_to(ROOT).as_posix() for path in starters
            if "ERL_CRASH_DUMP" not in path.read_text(encoding="utf-8")] == []
