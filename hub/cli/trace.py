"""``hub trace``: the journey of one business event, from the flight record."""

from __future__ import annotations

from dataclasses import asdict

import click

from hub.cli.common import echo_json, log_for_operator, output_option, pass_settings
from hub.settings import Settings


@click.command()
@click.argument("event_id")
@output_option
@pass_settings
def trace(settings: Settings, event_id: str, output: str) -> None:
    """Print the journey of one business event: every hop, with timings, errors and trace ids.

    The record is kept for HUB_FLIGHT_TTL_S under HUB_QUEUE_PREFIX (the demo prints its own prefix).
    """
    from hub.store import connect_redis
    from observability.flight import RedisFlightRecord, render_tree

    log_for_operator(settings)
    client = connect_redis(settings.redis_url, embedded=False)
    try:
        hops = RedisFlightRecord(client, prefix=settings.queue_prefix, ttl_s=settings.flight_ttl_s).hops(event_id)
    finally:
        client.close()
    if not hops:
        raise click.ClickException(f"no flight record for event {event_id} under prefix {settings.queue_prefix!r} "
                                   "(expired, never seen, or another HUB_QUEUE_PREFIX)")
    if output == "json":
        echo_json([asdict(hop) for hop in hops])
    else:
        click.echo(render_tree(hops))
