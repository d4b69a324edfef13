"""README tells the truth where it can be checked: its event table is the registry's."""

from __future__ import annotations

import re
from pathlib import Path

from hub.catalogue import SchemaCatalogue
from hub.registry import SchemaRegistry

README = Path(__file__).resolve().parent.parent / "README.md"


def event_table(registry: SchemaRegistry) -> str:
    """The README's event table for the schemas in ``registry``, with every revision consumers are served."""
    catalogue = SchemaCatalogue.load(registry)
    rows = [f"| `{t}` | `{registry.for_type(t).name}` | {registry.for_type(t).version} | "
            f"{', '.join(str(v) for v in catalogue.versions(t))} |" for t in sorted(registry.event_types)]
    return "\n".join(["| type | Avro schema | version | revisions served |", "|---|---|---|---|", *rows])


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


def _section(text: str, heading: str) -> str:
    """The README's text under ``heading`` up to the next heading of its level or above (outside code)."""
    level = len(heading.split(" ", 1)[0])
    lines = text.splitlines()
    start = lines.index(heading)
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].startswith("```")
        marks = lines[end].split(" ", 1)[0]
        if not fenced and marks and set(marks) == {"#"} and len(marks) <= level:
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def test_the_readme_tells_topic_consumers_delivery_is_at_least_once_and_how_to_drop_a_copy() -> None:
    import hub.duplicates
    import hub.topics

    text = README.read_text(encoding="utf-8")
    section = " ".join(_section(text, "### Consuming `hub.events`").split())
    assert "**Delivery is at-least-once.**" in section
    assert "the same `ce-source` and `ce-id`, and the same AMQP `message_id`" in section
    assert "Deduplicate on (`ce-source`, `ce-id`)" in section
    assert "**No order is guaranteed**" in section
    # The example runs on what hub.duplicates exports, and every helper named exists.
    example = re.search(r"```python\n(.*?)```", _section(text, "### Consuming `hub.events`"), re.DOTALL)
    assert example is not None, "the consumer section lost its example"
    compile(example.group(1), "README consumer example", "exec")
    imported = re.findall(r"from hub\.duplicates import ([\w, ]+)", example.group(1))
    assert imported and all(name in hub.duplicates.__all__ for name in imported[0].split(", "))
    for module, name in re.findall(r"`hub\.(duplicates|topics)\.(\w+)`", section):
        assert hasattr({"duplicates": hub.duplicates, "topics": hub.topics}[module], name), name
    assert "(see [Consuming `hub.events`](#consuming-hubevents)" in text  # the table and Reliability point to it


def test_the_readme_tells_analytics_consumers_how_to_discover_subscribe_and_replay() -> None:
    text = README.read_text(encoding="utf-8")
    section = " ".join(_section(text, "## Consuming events").split())
    for told in ("`GET /v1/asyncapi.json`", "`hub schemas export`", "`hub consumers add bi --bind",
                 "`hub events replay --since 24h", "x-stream-offset", "'^$' '^$' '^hub\\.consumer\\.bi$'",
                 "`basic_reject(requeue=False)`", "`examples/consumer.py`", "Schema evolution for readers"):
        assert told in section, told
    assert (README.parent / "examples" / "consumer.py").is_file()
