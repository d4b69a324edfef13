"""What analytics consumers find on RabbitMQ, and its one declaration: the topic exchange, its history
stream, each consumer's queue and dead-letter queue.

- ``<prefix>.events``: the topic exchange (routing key = event type), durable.
- ``<prefix>.events.history``: a stream (``x-queue-type: stream``) bound to it with ``#``, so every event
  published there is kept, by age and size (``HUB_EVENTS_MAX_AGE``, ``HUB_EVENTS_MAX_BYTES``), for reading
  again from an offset or a point in time.
- ``<prefix>.consumer.<name>``: a consumer's quorum queue, bound with the consumer's keys, dead-lettering
  to ``<prefix>.consumer.<name>.dlq`` after ``HUB_DELIVERY_LIMIT`` deliveries; nothing of it expires.

Declarations are idempotent: RabbitMQ accepts the same declaration again and refuses one with other
arguments (``PRECONDITION_FAILED``), which :func:`declare_events` reports as a configuration error naming
what differs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pika.exceptions

from hub.errors import ConfigurationError

__all__ = [
    "CONSUMER_NAME", "ConsumerQueue", "StreamRetention", "consumer_queue", "declare_consumer", "declare_events",
    "exchange_name", "history_stream", "stream_of",
]

#: A consumer's name: lower-case letters, digits, ``-`` and ``_`` (it becomes part of queue names).
CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: A binding key: dot-separated words of the type alphabet, or ``*`` and ``#``.
_BINDING_KEY = re.compile(r"^(?:[a-z0-9_]+|\*|#)(?:\.(?:[a-z0-9_]+|\*|#))*$")


def exchange_name(prefix: str) -> str:
    """The topic exchange of a hub whose queues and keys start with ``prefix``: ``hub.events`` for the
    default prefix. Two hubs on one broker (tenants, test runs) keep their topics apart."""
    return f"{prefix}.events"


def history_stream(prefix: str) -> str:
    """The stream keeping every event of :func:`exchange_name` for replay."""
    return stream_of(exchange_name(prefix))


def stream_of(exchange: str) -> str:
    """The history stream of the topic exchange ``exchange``."""
    return f"{exchange}.history"


@dataclass(frozen=True)
class StreamRetention:
    """How much history the stream keeps: the older of the two limits wins."""

    max_age: str
    max_bytes: int

    def arguments(self) -> dict[str, Any]:
        """The stream's ``queue.declare`` arguments."""
        return {"x-queue-type": "stream", "x-max-age": self.max_age, "x-max-length-bytes": self.max_bytes}


@dataclass(frozen=True)
class ConsumerQueue:
    """One analytics consumer's queue on the topic exchange, with its dead-letter queue."""

    prefix: str
    name: str
    bindings: Sequence[str] = field(default_factory=tuple)
    #: The exchange its keys bind on: the topic exchange, or the restricted one of walled matters.
    exchange: str = ""

    @property
    def queue(self) -> str:
        """The queue the consumer reads (and the only one its RabbitMQ user may read)."""
        return f"{self.prefix}.consumer.{self.name}"

    @property
    def dead_letters(self) -> str:
        """Where a message the consumer rejects, or that exceeds the delivery limit, goes."""
        return f"{self.queue}.dlq"

    def arguments(self, *, delivery_limit: int) -> dict[str, Any]:
        """The queue's ``queue.declare`` arguments."""
        return {"x-queue-type": "quorum", "x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dead_letters,
                "x-delivery-limit": delivery_limit}


def consumer_queue(prefix: str, name: str, bindings: Sequence[str], *, exchange: str | None = None) -> ConsumerQueue:
    """A consumer's queue on ``exchange`` (default: the topic exchange), its name and binding keys checked
    (ConfigurationError naming the bad one)."""
    if not CONSUMER_NAME.match(name):
        raise ConfigurationError(f"consumer name {name!r} must be 1-63 lower-case letters, digits, '-' or '_', "
                                 "starting with a letter")
    for key in bindings:
        if not _BINDING_KEY.match(key):
            raise ConfigurationError(f"binding key {key!r} is not dot-separated words, '*' or '#'")
    return ConsumerQueue(prefix, name, tuple(bindings), exchange or exchange_name(prefix))


def declare_events(channel: Any, *, exchange: str, retention: StreamRetention) -> None:
    """Declare the topic exchange and its history stream, bound with ``#`` (``channel``: a pika channel)."""
    stream = stream_of(exchange)
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    _declare(channel, stream, retention.arguments(), what="the history stream's retention "
             "(HUB_EVENTS_MAX_AGE, HUB_EVENTS_MAX_BYTES)")
    channel.queue_bind(stream, exchange, routing_key="#")


def declare_consumer(channel: Any, consumer: ConsumerQueue, *, delivery_limit: int) -> None:
    """Declare a consumer's dead-letter queue, its queue and its bindings (after the exchange)."""
    exchange = consumer.exchange or exchange_name(consumer.prefix)
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    _declare(channel, consumer.dead_letters, {"x-queue-type": "quorum"}, what="the dead-letter queue")
    _declare(channel, consumer.queue, consumer.arguments(delivery_limit=delivery_limit),
             what="its arguments (HUB_DELIVERY_LIMIT)")
    for key in consumer.bindings:
        channel.queue_bind(consumer.queue, exchange, routing_key=key)


def _declare(channel: Any, queue: str, arguments: dict[str, Any], *, what: str) -> None:
    try:
        channel.queue_declare(queue, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        raise ConfigurationError(f"queue {queue} exists with other arguments than {what} ask for: "
                                 f"{exc.reply_text}; change them with a RabbitMQ policy, or delete the queue") from None
