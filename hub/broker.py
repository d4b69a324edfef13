"""The one broker factory: RabbitMQ (quorum queues, publisher confirms) or Dramatiq's StubBroker.

Queues per actor, all durable:

- ``<queue>``: quorum, ``x-delivery-limit`` so a message that kills its worker is parked after a
  bounded number of deliveries instead of looping forever; dead-letters to ``<queue>.XQ``.
- ``<queue>.DQ``: quorum, retries waiting for their time (no delivery limit: a worker restart
  returns every waiting message and must not count against it).
- ``<queue>.XQ``: classic, no expiry: dead letters are kept until someone handles them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

#: Rounds of Dramatiq's enqueue (each already tries up to 6 times at once, reconnecting) before giving up.
ENQUEUE_ROUNDS = 3


@dataclass(frozen=True)
class QueueDeclaration:
    """One ``queue.declare`` for an actor: its name, durability and arguments."""

    queue: str
    durable: bool
    arguments: dict[str, Any] = field(default_factory=dict)


def queue_declarations(queue_name: str, *, delivery_limit: int) -> list[QueueDeclaration]:
    """Every queue of one actor, in the order Dramatiq declares them: the queue, ``.DQ`` and ``.XQ``.

    The one statement of their arguments: the hub's broker declares from it, and so does every other
    publisher (the ingress's), so a declaration never differs from one process to another (RabbitMQ
    refuses a redeclaration with other arguments).
    """
    return [
        QueueDeclaration(queue_name, True, {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": xq_name(queue_name),
            "x-delivery-limit": delivery_limit,
        }),
        QueueDeclaration(dq_name(queue_name), True, {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": xq_name(queue_name),
        }),
        QueueDeclaration(xq_name(queue_name), True, {}),
    ]


class HubRabbitmqBroker(RabbitmqBroker):
    """RabbitmqBroker with quorum actor and delay queues and dead letters that never expire."""

    def __init__(self, *, url: str, delivery_limit: int, middleware: list[Middleware]) -> None:
        super().__init__(url=url, confirm_delivery=True, middleware=middleware)
        self.delivery_limit = delivery_limit

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Dramatiq's confirmed enqueue, given more rounds after a short pause when it gives up: its own
        attempts follow each other at once, and a quorum queue electing its leader (just declared, under
        load) nacks publishes for longer than that. Sending again is safe: consumers are idempotent."""
        for attempt in range(ENQUEUE_ROUNDS):
            try:
                enqueued: Message[Any] = super().enqueue(message, delay=delay)
                return enqueued
            except ConnectionClosed:
                if attempt == ENQUEUE_ROUNDS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    # Dramatiq's documented hook for the queue's arguments (how quorum queues are declared), and its two
    # declare methods for the delay and dead-letter queues: all three from :func:`queue_declarations`.
    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return dict(self._declarations(queue_name)[0].arguments)

    def _declare_dq_queue(self, queue_name: str) -> Any:
        declaration = self._declarations(queue_name)[1]
        return self.channel.queue_declare(queue=declaration.queue, durable=declaration.durable,
                                          arguments=dict(declaration.arguments))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        declaration = self._declarations(queue_name)[2]
        return self.channel.queue_declare(queue=declaration.queue, durable=declaration.durable,
                                          arguments=dict(declaration.arguments))

    def _declarations(self, queue_name: str) -> list[QueueDeclaration]:
        return queue_declarations(queue_name, delivery_limit=self.delivery_limit)


def base_middleware() -> list[Middleware]:
    """Dramatiq's defaults that the hub keeps (its own retries replace ``Retries``), and ``CurrentMessage``
    so an actor that emits events can name the message it is processing as their parent."""
    return [AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), CurrentMessage()]


def build_broker(
    *,
    amqp_url: str,
    embedded: bool,
    delivery_limit: int,
    middleware: Sequence[Middleware],
) -> dramatiq.Broker:
    """Build the broker with the given middleware stack and make it Dramatiq's global broker.

    Nothing connects here: pika opens connections on first use.
    """
    stack = [*base_middleware(), *middleware]
    broker: dramatiq.Broker
    if embedded:
        broker = StubBroker(middleware=stack)
        broker.emit_after("process_boot")
    else:
        broker = HubRabbitmqBroker(url=amqp_url, delivery_limit=delivery_limit, middleware=stack)
    dramatiq.set_broker(broker)
    return broker
