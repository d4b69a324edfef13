"""README tells the truth where it can be checked: its event table is the registry's."""

from __future__ import annotations

import re
from pathlib import Path

from hub.registry import SchemaRegistry

README = Path(__file__).resolve().parent.parent / "README.md"


def event_table(registry: SchemaRegistry) -> str:
    """The README's event table for the schemas in ``registry``."""
    rows = [f"| `{t}` | `{registry.for_type(t).name}` | {registry.for_type(t).version} |"
            for t in sorted(registry.event_types)]
    return "\n".join(["| type | Avro schema | version |", "|---|---|---|", *rows])


def test_the_readme_event_table_is_generated_from_the_schemas() -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- event-types:[^>]*-->\n(.*?)\n<!-- /event-types -->", text, re.DOTALL)
    assert found is not None, "README lost its event-types markers"
    expected = event_table(SchemaRegistry.load())
    assert found.group(1) == expected, f"README's event table is out of date; replace it with:\n{expected}"


def test_every_command_of_the_cli_is_in_the_readme() -> None:
    from hub.cli import main

    text = README.read_text(encoding="utf-8")
    for name, command in main.commands.items():
        subcommands = getattr(command, "commands", None)
        for full in ([f"hub {name} {sub}" for sub in subcommands] if subcommands else [f"hub {name}"]):
            assert f"`{full}" in text, f"README's command table does not list {full}"
