"""``hub db``: the hub's database (PostgreSQL): bring its tables up to date, show what the outbox holds."""

from __future__ import annotations

import click

from hub.cli.common import Config, echo_json, log_for_operator, output_option, pass_config
from observability.logging import mask_text


@click.group()
def db() -> None:
    """The hub's database: the records a firm cannot lose and the outbox."""


@db.command()
@pass_config
def upgrade(config: Config) -> None:
    """Create the database if missing and run every migration not yet applied (the workers also do at start).

    Safe to run from several processes at once, and again: what is applied is skipped.
    """
    from hub.cli.compose import build_app

    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections, migrate=False)
    try:
        runtime.upgrade_database()
        schema = runtime.db.schema or "main"
        click.echo(f"database {mask_text(runtime.db.url)} (schema {schema}) is up to date")
    finally:
        runtime.close()


@db.command()
@output_option
@pass_config
def outbox(config: Config, output: str) -> None:
    """How many events wait in the outbox (written with their state change, not yet published)."""
    from hub.db import connect_database
    from hub.outbox import SqlOutbox

    settings = config.settings
    log_for_operator(settings)
    database = connect_database(settings.database_url, prefix=settings.queue_prefix, embedded=False)
    try:
        box = SqlOutbox(database)
        pending = box.count_pending()
        oldest = box.pending(limit=1)
    finally:
        database.close()
    if output == "json":
        echo_json({"pending": pending, "oldest_event_id": oldest[0].event.get_id() if oldest else None})
    else:
        click.echo(f"{pending} event(s) pending" + (f"; oldest {oldest[0].event.get_id()}" if oldest else ""))
