"""``hub schemas``: the Avro schemas of the event contract, their compatibility check and release."""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli.common import echo_json, echo_table, log_for_operator, output_option, pass_settings
from hub.settings import Settings


@click.group()
def schemas() -> None:
    """Avro schemas of the event contract."""


def _schema_dirs(against: Path | None) -> tuple[Path, Path]:
    from importlib.resources import files

    current = Path(str(files("schemas")))
    return current, against or current / "released"


@schemas.command("list")
@output_option
@pass_settings
def schemas_list(settings: Settings, output: str) -> None:
    """Every event type with its Avro schema, version and dataschema."""
    from hub.registry import SchemaRegistry

    log_for_operator(settings)
    registry = SchemaRegistry.load()
    rows = [registry.for_type(event_type) for event_type in sorted(registry.event_types)]
    if output == "json":
        echo_json([{"type": s.event_type, "schema": s.name, "version": s.version, "dataschema": s.dataschema}
                   for s in rows])
        return
    echo_table(("type", "Avro schema", "version"), ((s.event_type, s.name, s.version) for s in rows))


@schemas.command("check")
@click.option("--against", type=click.Path(path_type=Path, file_okay=False),
              help="Released snapshot to compare with (default: schemas/released).")
@output_option
@pass_settings
def schemas_check(settings: Settings, against: Path | None, output: str) -> None:
    """Fail when a schema change is not backward compatible with the released version."""
    from hub.compat import check_backward
    from hub.registry import SchemaRegistry

    log_for_operator(settings)
    current, released = _schema_dirs(against)
    registry = SchemaRegistry.load(current)
    problems = check_backward(current, released)
    if output == "json":
        echo_json({"compatible": not problems, "released": str(released),
                   "problems": [{"schema": p.name, "type": p.event_type, "reason": p.reason} for p in problems]})
    else:
        for problem in problems:
            click.echo(f"INCOMPATIBLE {problem.name} ({problem.event_type or 'shared type'}): {problem.reason}")
    if problems:
        raise click.ClickException(f"{len(problems)} incompatible schema change(s)")
    if output != "json":
        click.echo(f"{len(registry.event_types)} event types backward compatible with {released}")


@schemas.command("release")
@pass_settings
def schemas_release(settings: Settings) -> None:
    """Record the current schemas as the released snapshot (after a passing check)."""
    from hub.compat import release

    log_for_operator(settings)
    current, released = _schema_dirs(None)
    for name in release(current, released):
        click.echo(f"released {name}")


@schemas.command("export")
@click.option("--file", "-f", "target", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="File to write (default: standard output).")
@pass_settings
def schemas_export(settings: Settings, target: Path | None) -> None:
    """Write the AsyncAPI 3.0 document of the topic exchange (every event type with its Avro schema)."""
    import json

    import actors
    from hub.cli.compose import events_document
    from hub.registry import SchemaRegistry

    log_for_operator(settings)
    registry = SchemaRegistry.load(schema_base_url=f"{settings.public_url}/v1/schemas")
    text = json.dumps(events_document(settings, registry, actors.load_policy(settings.policy_file)), indent=2)
    if target is None:
        click.echo(text)
    else:
        target.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {target}", err=True)
