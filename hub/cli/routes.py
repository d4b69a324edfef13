"""``hub routes``: which actors receive which event types."""

from __future__ import annotations

import click

from hub.cli.common import echo_json, echo_table, log_for_operator, output_option, pass_settings
from hub.settings import Settings


@click.command()
@output_option
@pass_settings
def routes(settings: Settings, output: str) -> None:
    """Show the routing table: which actors receive which event types ("*": every type)."""
    import actors
    from hub.dispatch import RoutingTable

    log_for_operator(settings)
    table = sorted(RoutingTable.of(actors.SPECS).as_dict().items())
    if output == "json":
        echo_json({event_type: list(actors) for event_type, actors in table})
    else:
        echo_table(("event type", "actors"), ((event_type, ", ".join(actors)) for event_type, actors in table))
