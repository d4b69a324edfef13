"""``hub consumers``: an analytics consumer's durable queue on the topic exchange, with its dead-letter queue."""

from __future__ import annotations

import contextlib

import click

from hub.cli.common import echo_json, log_for_operator, output_option, pass_settings
from hub.settings import Settings


@click.group()
def consumers() -> None:
    """Queues of analytics and downstream consumers on the topic exchange."""


@consumers.command("add")
@click.argument("name")
@click.option("--bind", "bindings", multiple=True, required=True,
              help="Binding key on the exchange, e.g. 'erp.project.#' (repeat for several).")
@click.option("--restricted", is_flag=True,
              help="Bind to the exchange of walled matters' full events (the policy's ethical_walls.on_the_bus) "
                   "instead of the topic exchange: for consumers inside the wall only.")
@output_option
@pass_settings
def consumers_add(settings: Settings, name: str, bindings: tuple[str, ...], restricted: bool, output: str) -> None:
    """Declare consumer NAME's quorum queue, bound with each --bind key, and its dead-letter queue (safe to
    run again; a key added later is bound too, none is removed)."""
    import pika
    import pika.exceptions

    from hub.endpoints import amqp_parameters
    from hub.topology import consumer_queue, declare_consumer, exchange_name

    log_for_operator(settings)
    exchange = exchange_name(settings.queue_prefix)
    if restricted:
        import actors
        from hub.cli.compose import restricted_exchange

        walled = restricted_exchange(settings, actors.load_policy(settings.policy_file))
        if walled is None:
            raise click.ClickException("the policy sets no ethical_walls.on_the_bus: there is no restricted exchange")
        exchange = walled
    consumer = consumer_queue(settings.queue_prefix, name, bindings, exchange=exchange)
    connection = pika.BlockingConnection(amqp_parameters(settings.amqp_url))
    try:
        declare_consumer(connection.channel(), consumer, delivery_limit=settings.delivery_limit)
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()
    read = consumer.queue.replace(".", "\\.")
    if output == "json":
        echo_json({"queue": consumer.queue, "dead_letters": consumer.dead_letters,
                   "exchange": exchange, "bindings": list(consumer.bindings),
                   "permissions": {"configure": "^$", "write": "^$", "read": f"^{read}$"}})
        return
    click.echo(f"queue {consumer.queue} (quorum) bound to {exchange} with "
               f"{', '.join(consumer.bindings)}; dead letters to {consumer.dead_letters} after "
               f"{settings.delivery_limit} deliveries")
    click.echo(f"its own RabbitMQ user, reading this queue only: rabbitmqctl add_user {name} <password> && "
               f"rabbitmqctl set_permissions -p / {name} '^$' '^$' '^{read}$'")
