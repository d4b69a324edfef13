"""``hub events``: the topic exchange's history, re-delivered to one consumer."""

from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import click

from hub.cli.common import echo_json, log_for_operator, note, output_option, pass_settings
from hub.settings import Settings

_AGO = re.compile(r"^([1-9][0-9]*)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def since_instant(value: str, *, now: datetime | None = None) -> datetime:
    """``--since``: an RFC 3339 instant (``2027-01-04T00:00:00Z``) or an age (``24h``, ``7d``, ``30m``)."""
    found = _AGO.match(value)
    if found:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    from hub import rfc3339

    try:
        return rfc3339.parse(value)
    except ValueError:
        raise click.BadParameter("an RFC 3339 instant (2027-01-04T00:00:00Z) or an age (24h, 7d, 30m)") from None


@click.group()
def events() -> None:
    """The topic exchange's history (a RabbitMQ stream)."""


@events.command("replay")
@click.option("--since", "since", required=True, help="From when: RFC 3339 (2027-01-04T00:00:00Z) or an age (24h).")
@click.option("--type", "types", multiple=True, help="Event type to replay (repeat; default: every type).")
@click.option("--to", "to_queue", required=True, help="The consumer's queue (hub consumers add), e.g. hub.consumer.bi")
@click.option("--yes", "-y", is_flag=True, help="Replay without asking (for scripts).")
@output_option
@pass_settings
def events_replay(settings: Settings, since: str, types: tuple[str, ...], to_queue: str, yes: bool,
                  output: str) -> None:
    """Copy the events that reached the exchange since --since into one consumer's queue; no other queue
    sees them again. Each keeps its ce-source, ce-id and message id, so a consumer drops what it has."""
    from hub.history import replay

    log_for_operator(settings)
    start = since_instant(since)
    if not yes:
        what = ", ".join(types) or "every type"
        if not sys.stdin.isatty():
            raise click.UsageError(f"would copy {what} since {start.isoformat()} into {to_queue}; add --yes to "
                                   "replay without a prompt")
        click.confirm(f"Copy {what} since {start.isoformat()} into {to_queue}?", abort=True, err=True)
    copied: Counter[str] = Counter()
    result = replay(settings.amqp_url, prefix=settings.queue_prefix, since=start, to_queue=to_queue, types=types,
                    on_copy=lambda event_type: copied.update([event_type]))
    if output == "json":
        echo_json({"since": start.isoformat(), "to": to_queue, "read": result.read, "copied": result.copied,
                   "by_type": dict(sorted(copied.items()))})
        return
    for event_type, count in sorted(copied.items()):
        click.echo(f"{count:>8}  {event_type}")
    note(f"{result.copied} of {result.read} event(s) since {start.isoformat()} copied into {to_queue}")
