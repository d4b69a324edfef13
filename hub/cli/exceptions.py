"""``hub exceptions``: the exception inbox: every case raised to an owner, acknowledged and resolved by operators."""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import click

from hub.cli.common import Config, echo_json, echo_table, log_for_operator, note, output_option, pass_config
from hub.cli.compose import build_app, exception_desk

T = TypeVar("T")
_AGE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> timedelta:
    """``30m``, ``6h``, ``2d`` as a duration (a click error otherwise)."""
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter("an age is a number and m, h or d: 30m, 6h, 2d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _age(since: datetime) -> str:
    seconds = int((datetime.now(UTC) - since).total_seconds())
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def operator() -> str:
    """Who acts from this command line, as the inbox records it."""
    return f"cli:{getpass.getuser()}"


@click.group()
def exceptions() -> None:
    """The exception inbox: cases raised to their owners (finance, PMO, records management, platform team)."""


@exceptions.command("list")
@click.option("--owner", help="Only this owner's cases (finance, pmo, records_management, platform_team, risk).")
@click.option("--older-than", "older_than", help="Only cases first seen longer ago than this (30m, 6h, 2d).")
@click.option("--state", "states", multiple=True, type=click.Choice(["open", "acknowledged", "resolved"]),
              help="Only cases in this state (default: open and acknowledged).")
@output_option
@pass_config
def exceptions_list(config: Config, owner: str | None, older_than: str | None, states: tuple[str, ...],
                    output: str) -> None:
    """Cases not yet resolved, the oldest first."""
    age = parse_age(older_than) if older_than else None
    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    try:
        cases = exception_desk(runtime).cases(owner=owner, older_than=age,
                                              states=states or ("open", "acknowledged"))  # type: ignore[arg-type]
    finally:
        runtime.close()
    if output == "json":
        echo_json([case.as_dict() for case in cases])
        return
    echo_table(("id", "owner", "state", "kind", "subject", "seen", "age", "last seen"),
               ((case.case_id[:8], case.owner, case.state, case.kind, case.subject, case.occurrences,
                 _age(case.first_seen), _age(case.last_seen)) for case in cases))
    note(f"{len(cases)} case(s)")


@exceptions.command("show")
@click.argument("case_id")
@output_option
@pass_config
def exceptions_show(config: Config, case_id: str, output: str) -> None:
    """One case with its evidence (CASE_ID: its id, or its first 6 characters or more)."""
    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    try:
        case = _known(lambda: exception_desk(runtime).case(case_id))
    finally:
        runtime.close()
    if output == "json":
        echo_json(case.as_dict())
        return
    for name, value in case.as_dict().items():
        if name != "dead_letters":
            click.echo(f"{name:>13}: {value if value is not None else '-'}")
    for actor, message_id in case.dead_letters:
        click.echo(f"  dead letter: {actor} {message_id}")


@exceptions.command("ack")
@click.argument("case_id")
@click.option("--note", "text", help="Why, or what is being done.")
@output_option
@pass_config
def exceptions_ack(config: Config, case_id: str, text: str | None, output: str) -> None:
    """Acknowledge a case: someone is on it."""
    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    try:
        case = _known(lambda: exception_desk(runtime).acknowledge(case_id, by=operator(), note=text))
    finally:
        runtime.close()
    if output == "json":
        echo_json(case.as_dict())
    else:
        click.echo(f"{case.case_id} {case.state}")


@exceptions.command("resolve")
@click.argument("case_id")
@click.option("--retry", is_flag=True, help="Replay the dead letters behind the case first (the cause is fixed).")
@click.option("--note", "text", help="What fixed it.")
@output_option
@pass_config
def exceptions_resolve(config: Config, case_id: str, retry: bool, text: str | None, output: str) -> None:
    """Resolve a case; with --retry, replay its dead letters (same ids: what was done is not done again)."""
    from actors.exceptions.desk import CannotRetry

    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    try:
        resolved = _known(lambda: exception_desk(runtime).resolve(case_id, by=operator(), note=text, retry=retry))
    except CannotRetry as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        runtime.close()
    if output == "json":
        echo_json({**resolved.case.as_dict(), "replayed": list(resolved.replayed)})
    else:
        click.echo(f"{resolved.case.case_id} {resolved.case.state}")
        for message_id in resolved.replayed:
            click.echo(f"replayed {message_id}")


def _known(call: Callable[[], T]) -> T:
    from actors.exceptions.store import UnknownCase

    try:
        return call()
    except UnknownCase as exc:
        raise click.ClickException(str(exc)) from None
