"""What the ``hub`` commands share: the settings loaded once, logging per kind of command, output as a
table or JSON, and exit codes."""

from __future__ import annotations

import functools
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from hub.cli.compose import Connections
from hub.errors import ConfigurationError
from hub.settings import Settings, load_settings, unknown_variables
from observability.logging import configure_logging

F = TypeVar("F", bound=Callable[..., Any])

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Exit code of ``hub readiness show`` for an invoice the gate holds (0: ready; 1: an error; 2: usage).
EXIT_HELD = 3

@dataclass(frozen=True)
class Config:
    """Everything the ``hub`` group reads from the environment, once: the hub's settings and the
    connectors' (:class:`hub.cli.compose.Connections`)."""

    settings: Settings
    connections: Connections

    @classmethod
    def load(cls) -> Config:
        """Load and check every settings model; refuse a ``HUB_*`` variable none of them reads."""
        unknown = unknown_variables(*Connections.models())
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(settings=load_settings(), connections=Connections.load())


def pass_settings(function: F) -> F:
    """Hand the command the hub's settings (loaded once by the group)."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(click.get_current_context().find_object(Config).settings, *args, **kwargs)  # type: ignore[union-attr]
    return wrapper  # type: ignore[return-value]


def pass_config(function: F) -> F:
    """Hand the command the whole :class:`Config` (loaded once by the group)."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(click.get_current_context().find_object(Config), *args, **kwargs)
    return wrapper  # type: ignore[return-value]


def log_for_operator(settings: Settings) -> None:
    """Interactive commands log at WARNING unless HUB_LOG_LEVEL asks for more; the AMQP clients' own
    connection errors stay quiet (``configure_logging``: the command says in one line which server did
    not answer)."""
    level = settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
    configure_logging(fmt=settings.log_format, level=level)


def log_for_server(settings: Settings) -> None:
    """Servers (serve, worker, simulate) log at HUB_LOG_LEVEL (INFO by default)."""
    configure_logging(fmt=settings.log_format, level=settings.log_level)


def output_option(function: F) -> F:
    """``--output table|json`` on a list or show command."""
    option = click.option("--output", "-o", "output", type=click.Choice(["table", "json"]), default="table",
                          show_default=True, help="table for people, json for scripts.")
    return option(function)


def echo_json(value: Any) -> None:
    """Print a JSON document (dates and other values as text)."""
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr: progress), as wide as the terminal (or wide enough when piped)."""
    stream = sys.stderr if stderr else sys.stdout
    width = shutil.get_terminal_size((160, 40)).columns if stream.isatty() else 160
    return Console(width=width, highlight=False, soft_wrap=False, stderr=stderr)


def echo_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    """Print rows as a table (long values fold instead of being cut); nothing when there is no row."""
    table = Table(*columns, title=title, title_justify="left", show_lines=False)
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*("-" if value is None else str(value) for value in row))
    if table.row_count:
        console().print(table)


def note(text: str) -> None:
    """A line for the operator on stderr (counts, hints), so stdout stays the data."""
    click.echo(text, err=True)
