"""The one broker factory: RabbitMQ (quorum queues, publisher confirms) or Dramatiq's StubBroker.

Queues per actor, all durable:

- ``<queue>``: quorum, ``x-delivery-limit`` so a message that kills its worker is parked after a
  bounded number of deliveries instead of looping forever; dead-letters to ``<queue>.XQ``.
- ``<queue>.DQ``: quorum, retries waiting for their time (no delivery limit: a worker restart
  returns every waiting message and must not count against it).
- ``<queue>.XQ``: classic, no expiry: dead letters are kept until someone handles them.

Connecting goes through the process's :class:`~hub.connectivity.ServerLink` for RabbitMQ: Dramatiq's
consumer threads (one per queue and delay queue, each restarting on its own every few seconds) take turns
to reconnect while RabbitMQ is down, with backoff and jitter, and an enqueue fails at once while no
attempt is due; the link logs each change of state once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pika.exceptions
from dramatiq import Message
from dramatiq.broker import Consumer, MessageProxy
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

from hub.connectivity import ServerLink, describe, refuses_credentials
from hub.endpoints import amqp_urls
from observability.logging import get_logger

log = get_logger(__name__)

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
    """RabbitmqBroker with quorum actor and delay queues, dead letters that never expire, and connections
    made through the process's link to RabbitMQ (``link``; by default one of its own). ``url`` may name
    several nodes (comma-separated): every connection tries them in turn (pika's list of parameters)."""

    def __init__(self, *, url: str, delivery_limit: int, middleware: list[Middleware],
                 link: ServerLink | None = None) -> None:
        urls = amqp_urls(url)
        super().__init__(url=urls[0] if len(urls) == 1 else list(urls), confirm_delivery=True, middleware=middleware)
        self.delivery_limit = delivery_limit
        self.link = link or ServerLink("RabbitMQ", url)
        self._stopping = threading.Event()
        self.add_middleware(_WorkerStops(self._stopping))

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """Dramatiq's consumer, connected in turn with the other consumer threads while RabbitMQ is down
        (a wait of the link's backoff); a connection it loses later is reported to the link."""
        if not self.link.turn(self._stopping):
            raise ConnectionClosed(self.link.refused or "the worker is stopping")  # type: ignore[no-untyped-call]
        try:
            consumer = super().consume(queue_name, prefetch, timeout)
        except ConnectionClosed as exc:
            self.link.failed(exc)
            raise
        except BaseException:
            self.link.release()
            raise
        self.link.succeeded()
        return _ReportingConsumer(consumer, self.link)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Dramatiq's confirmed enqueue, given more rounds after a short pause when it gives up: its own
        attempts follow each other at once, and a quorum queue electing its leader (just declared, under
        load) nacks publishes for longer than that. Sending again is safe: consumers are idempotent.

        While RabbitMQ does not answer and no reconnect attempt is due (the link's backoff), it fails at
        once instead of trying: the caller retries the message later."""
        for attempt in range(ENQUEUE_ROUNDS):
            if not self.link.due():
                raise ConnectionClosed(  # type: ignore[no-untyped-call]
                    f"RabbitMQ does not answer at {self.link.where}; reconnecting")
            try:
                enqueued: Message[Any] = super().enqueue(message, delay=delay)
            except ConnectionClosed as exc:
                if _connection_failure(exc):
                    self.link.failed(exc)
                if attempt == ENQUEUE_ROUNDS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1) * random.uniform(0.5, 1.0))
                continue
            self.link.succeeded()
            return enqueued
        raise AssertionError("unreachable")

    @property
    def unreachable(self) -> bool:
        """Whether the last news of RabbitMQ was that it does not answer (not a refusal of the credentials,
        which no wait mends)."""
        return self.link.down and self.link.refused is None

    def wait_until_reachable(self, timeout: float) -> bool:
        """Block until a publish may be tried again (RabbitMQ answers, or the link's backoff has passed);
        False when the worker is stopping, the credentials were refused, or ``timeout`` seconds pass."""
        return self.link.wait_due(self._stopping, timeout)

    # Dramatiq's documented hook for the queue's arguments (how quorum queues are declared), and its two
    # declare methods for the delay and dead-letter queues: all three from :func:`queue_declarations`.
    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return dict(self._declarations(queue_name)[0].arguments)

    def _declare_dq_queue(self, queue_name: str) -> Any:
        declaration = self._declarations(queue_name)[1]
        return self.channel.queue_declare(queue=declaration.queue, durable=declaration.durable,
                                          arguments=dict(declaration.arguments))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        # A classic queue: on a cluster it lives on one node. While that node is down RabbitMQ answers NOT_FOUND
        # (and closes the channel) though the queue exists: that must not keep the worker from consuming.
        declaration = self._declarations(queue_name)[2]
        try:
            return self.channel.queue_declare(queue=declaration.queue, durable=declaration.durable,
                                              arguments=dict(declaration.arguments))
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:  # NOT_FOUND
                raise
            del self.channel  # closed by the broker: the next call opens another
            log.warning(f"queue {declaration.queue} is on a RabbitMQ node that is down: nothing reaches it until "
                        "that node is back", reason=describe(exc))
            return None

    def _declarations(self, queue_name: str) -> list[QueueDeclaration]:
        return queue_declarations(queue_name, delivery_limit=self.delivery_limit)


def _connection_failure(error: ConnectionClosed) -> bool:
    """Whether Dramatiq gave up for want of a connection (not for a nack or a returned message)."""
    cause = error.message
    return isinstance(cause, pika.exceptions.AMQPConnectionError | OSError) or refuses_credentials(error)


class _ReportingConsumer(Consumer):
    """Dramatiq's RabbitMQ consumer, telling the link when its connection drops."""

    def __init__(self, consumer: Consumer, link: ServerLink) -> None:
        self._consumer = consumer
        self._link = link

    def __next__(self) -> MessageProxy | None:
        try:
            return next(self._consumer)
        except ConnectionClosed as exc:
            self._link.lost(exc)
            raise

    def ack(self, message: MessageProxy) -> None:
        """Acknowledge ``message``."""
        self._consumer.ack(message)

    def nack(self, message: MessageProxy) -> None:
        """Reject ``message`` (to its dead-letter queue)."""
        self._consumer.nack(message)

    def requeue(self, messages: Any) -> None:
        """Return ``messages`` to their queue."""
        self._consumer.requeue(messages)

    def close(self) -> None:
        """Close the consumer's connection."""
        self._consumer.close()


class _WorkerStops(Middleware):
    """Tells the broker's consumer threads waiting for their turn to reconnect that the worker stops."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """A worker starts (before its consumer threads): waiting for a turn is worth it again."""
        self.stopping.clear()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Stop waiting: the consumer threads are about to be stopped."""
        self.stopping.set()


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
    link: ServerLink | None = None,
) -> dramatiq.Broker:
    """Build the broker with the given middleware stack and make it Dramatiq's global broker.

    Nothing connects here: pika opens connections on first use. ``link``: the process's link to RabbitMQ.
    """
    stack = [*base_middleware(), *middleware]
    broker: dramatiq.Broker
    if embedded:
        broker = StubBroker(middleware=stack)
        broker.emit_after("process_boot")
    else:
        broker = HubRabbitmqBroker(url=amqp_url, delivery_limit=delivery_limit, middleware=stack, link=link)
    dramatiq.set_broker(broker)
    return broker
