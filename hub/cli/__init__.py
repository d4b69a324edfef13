"""The ``hub`` command: one module per command group; :mod:`hub.cli.compose` is the composition root.

Settings are loaded once by the group and handed to every command. Operator mistakes and unreachable
servers end in one line naming the file, field or server, and a non-zero exit, never a traceback.
"""

from __future__ import annotations

from typing import Any

import click
import pika.exceptions
import redis

from hub.cli.common import Config
from hub.cli.consumers import consumers
from hub.cli.db import db
from hub.cli.demo import demo
from hub.cli.dlq import dlq
from hub.cli.documents import documents
from hub.cli.events import events
from hub.cli.exceptions import exceptions
from hub.cli.jobs import jobs
from hub.cli.readiness import readiness
from hub.cli.reconcile import reconcile
from hub.cli.routes import routes
from hub.cli.schemas import schemas
from hub.cli.servers import serve, worker
from hub.cli.simulate import simulate
from hub.cli.trace import trace
from hub.cli.xref import xref
from hub.errors import BrokerUnavailable, HubError, StoreUnavailable
from hub.settings import Settings
from observability.logging import mask_text

__all__ = ["main"]


def _explain(error: Exception, settings: Settings | None) -> str | None:
    """One line for an error an operator can act on; None for a defect (shown with its traceback)."""
    amqp = mask_text(settings.amqp_url) if settings else "the configured URL"
    cache = mask_text(settings.redis_url) if settings else "the configured URL"
    database = mask_text(settings.database_url) if settings else "the configured URL"
    if isinstance(error, StoreUnavailable) and str(error).startswith("database"):
        return f"the database does not answer at {database} ({error})"
    if isinstance(error, StoreUnavailable):
        return f"Redis does not answer at {cache}"
    if isinstance(error, BrokerUnavailable):
        return f"RabbitMQ does not answer at {amqp} ({error})"
    if isinstance(error, HubError):
        return str(error)
    if isinstance(error, pika.exceptions.ProbableAuthenticationError):
        return f"RabbitMQ at {amqp} refused the credentials"
    if isinstance(error, pika.exceptions.AMQPConnectionError):
        return f"RabbitMQ does not answer at {amqp}"
    if isinstance(error, pika.exceptions.ChannelClosedByBroker):
        return f"RabbitMQ at {amqp} refused: {error.reply_text}"
    if isinstance(error, redis.AuthenticationError):
        return f"Redis at {cache} refused the credentials"
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return f"Redis does not answer at {cache}"
    return None


class HubGroup(click.Group):
    """The top-level group: translates operator errors into one line and an exit code of 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, explaining the errors an operator can act on."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            config = ctx.find_object(Config)
            explained = _explain(error, config.settings if config else None)
            if explained is None:
                raise
            raise click.ClickException(explained) from None


@click.group(cls=HubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ps-integration-hub", prog_name="hub")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Integration hub for ERP/PSA, document platforms and e-signature (settings: HUB_* variables)."""
    ctx.obj = Config.load()  # every command fails at start on an unknown or invalid setting


for _command in (serve, worker, demo, simulate, trace, schemas, dlq, documents, readiness, reconcile, routes, xref, db,
                 consumers, events, exceptions, jobs):
    main.add_command(_command)
