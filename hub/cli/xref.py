"""``hub xref``: every identity of one entity in the crosswalk, and its lineage."""

from __future__ import annotations

import click

from hub.cli.common import echo_json, log_for_operator, output_option, pass_settings
from hub.settings import Settings


@click.command()
@click.argument("ref", metavar="ID")
@output_option
@pass_settings
def xref(settings: Settings, ref: str, output: str) -> None:
    """Show every identity of an entity, the canonical id it resolves to and its lineage.

    ID is a canonical id (project_...) or entity:system:system_id (project:erp:ENG-ACME-0001).
    """
    from hub.crosswalk import SqlCrosswalk
    from hub.db import connect_database
    from hub.xref import UnknownReference, describe, render

    log_for_operator(settings)
    database = connect_database(settings.database_url, prefix=settings.queue_prefix, embedded=False)
    try:
        report = describe(SqlCrosswalk(database), ref)
    except UnknownReference as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        database.close()
    if output == "json":
        echo_json({
            "query": report.query, "canonical_id": report.canonical_id, "resolved_id": report.resolved_id,
            "entity": report.entity, "primaries": report.primaries,
            "identities": [{"system": i.system, "system_id": i.system_id,
                            "primary": report.primaries.get(i.system) == i.system_id} for i in report.identities],
            "path": report.path,
            "lineage": {owner: [{"kind": e.kind, "other": e.other, "at": e.at.isoformat(), "reason": e.reason,
                                 "identities": [str(i) for i in e.identities]} for e in entries]
                        for owner, entries in report.lineage.items()},
        })
    else:
        click.echo(render(report))
