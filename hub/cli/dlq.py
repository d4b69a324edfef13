"""``hub dlq``: list an actor queue's dead letters with their reasons, and replay them."""

from __future__ import annotations

import sys

import click
import dramatiq

from hub.cli.common import Config, echo_json, echo_table, log_for_operator, note, output_option, pass_config
from hub.cli.compose import build_app
from hub.dlq import DeadLetter
from hub.runtime import Runtime


@click.group()
def dlq() -> None:
    """Dead letters of the actor queues."""


def _queues(runtime: Runtime, actors: tuple[str, ...], queues: tuple[str, ...]) -> list[str]:
    names = list(queues)
    for name in actors or (() if queues else tuple(sorted(runtime.actors))):
        try:
            names.append(runtime.broker.get_actor(name).queue_name)
        except dramatiq.errors.ActorNotFound:
            known = ", ".join(sorted(runtime.actors))
            raise click.ClickException(f"no actor named {name!r}; known: {known}") from None
    return names


def _letters(runtime: Runtime, queues: list[str], message_ids: set[str] | None = None) -> list[DeadLetter]:
    from hub.dlq import list_dead_letters

    found = [letter for queue in queues
             for letter in list_dead_letters(runtime.settings.amqp_url, queue, runtime.dead_letters)]
    return [letter for letter in found if message_ids is None or letter.message_id in message_ids]


def _show(letters: list[DeadLetter], output: str) -> None:
    if output == "json":
        echo_json([{"queue": d.queue, "message_id": d.message_id, "actor": d.actor, "event_id": d.event_id,
                    "event_type": d.event_type, "death_reason": d.death_reason, "deaths": d.deaths,
                    "why": (d.reason or {}).get("why"), "error": (d.reason or {}).get("error"),
                    "attempts": (d.reason or {}).get("attempts")} for d in letters])
        return
    echo_table(("message id", "actor", "event type", "event id", "death", "why", "error"),
               ((d.message_id, d.actor, d.event_type, d.event_id, d.death_reason,
                 (d.reason or {}).get("why") or ("poison: delivery limit reached"
                                                 if d.death_reason == "delivery_limit" else None),
                 (d.reason or {}).get("error")) for d in letters))


@dlq.command("list")
@click.option("--actor", "actors", multiple=True, help="Actor name (default: every actor).")
@click.option("--queue", "queues", multiple=True, help="Queue name, instead of an actor.")
@output_option
@pass_config
def dlq_list(config: Config, actors: tuple[str, ...], queues: tuple[str, ...], output: str) -> None:
    """List dead letters with their failure reasons (listing consumes nothing)."""
    settings = config.settings
    log_for_operator(settings)
    runtime = build_app(settings, embedded=False, connections=config.connections)
    try:
        letters = _letters(runtime, _queues(runtime, actors, queues))
    finally:
        runtime.close()
    _show(letters, output)
    note(f"{len(letters)} dead letter(s)")


@dlq.command("replay")
@click.option("--actor", "actors", multiple=True, help="Actor whose dead letters to replay.")
@click.option("--queue", "queues", multiple=True, help="Queue name, instead of an actor.")
@click.option("--message-id", "message_ids", multiple=True, help="Replay only these (default: all).")
@click.option("--yes", "-y", is_flag=True, help="Replay without asking (for scripts).")
@output_option
@pass_config
def dlq_replay(config: Config, actors: tuple[str, ...], queues: tuple[str, ...], message_ids: tuple[str, ...],
               yes: bool, output: str) -> None:
    """Replay dead letters with their original ids, so idempotency still holds.

    Shows what it will replay and asks first, unless --yes. Only the letters shown are replayed.
    """
    from hub.dlq import replay_dead_letters

    if not actors and not queues:
        raise click.UsageError("name the dead letters to replay with --actor or --queue")
    settings = config.settings
    log_for_operator(settings)
    runtime = build_app(settings, embedded=False, connections=config.connections)
    try:
        names = _queues(runtime, actors, queues)
        letters = _letters(runtime, names, set(message_ids) or None)
        if not letters:
            note("no dead letter to replay")
            return
        if not yes:
            _show(letters, "table")
            if not sys.stdin.isatty():
                raise click.UsageError(f"{len(letters)} dead letter(s) would be replayed; add --yes to replay "
                                       "them without a prompt")
            click.confirm(f"Replay these {len(letters)} dead letter(s)?", abort=True, err=True)
        chosen = {letter.message_id for letter in letters}
        replayed: list[str] = []
        for queue in names:
            replayed += replay_dead_letters(runtime.settings.amqp_url, runtime.broker, queue, message_ids=chosen,
                                            reasons=runtime.dead_letters)
    finally:
        runtime.close()
    if output == "json":
        echo_json({"replayed": replayed})
    else:
        for message_id in replayed:
            click.echo(f"replayed {message_id}")
    note(f"{len(replayed)} dead letter(s) replayed")
