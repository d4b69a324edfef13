"""The canonical topic exchange ``hub.events``: confirmed publishing in the CloudEvents binary binding.

Routing key = event ``type``; headers ``ce-*``; content type ``application/avro``; body Avro;
persistent; ``message_id`` is the fan-out's side-effect key, the same on every copy of an event.

Delivery is at-least-once: a copy carries the same ``source`` and ``id``. :func:`skipping_duplicates`
drops copies for a subscriber that receives with ``receive(timeout_s)`` (:mod:`hub.duplicates` holds the
windows, for consumers of any client).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pika
import pika.exceptions

from hub.confirms import CONFIRM_TIMEOUT_S, ConfirmWindow
from hub.connectivity import ServerLink
from hub.duplicates import DuplicateWindow, EventKey, key_of
from hub.endpoints import amqp_parameters
from hub.events import CloudEvent, from_amqp, to_amqp
from hub.topology import StreamRetention, declare_events, exchange_name
from observability.metrics import PUBLISH_DURATION

__all__ = ["EXCHANGE", "Delivery", "MemoryTopicBus", "RabbitTopicBus", "Receive", "TopicBus", "exchange_name",
           "rabbit_subscription", "skipping_duplicates", "topic_matches"]


#: Name of the topic exchange analytics and downstream consumers bind to, with the default prefix.
EXCHANGE = exchange_name("hub")


@dataclass(frozen=True)
class Delivery:
    """One message as a topic subscriber receives it."""

    routing_key: str
    headers: dict[str, Any]
    content_type: str | None
    message_id: str | None
    body: bytes

    def event(self) -> CloudEvent:
        """Decode the CloudEvent (data stays Avro bytes)."""
        return from_amqp(self.headers, self.content_type, self.body)

    def key(self) -> EventKey:
        """The event's (``source``, ``id``): the same on every copy of it."""
        return key_of(self.headers)


#: A subscriber's ``receive(timeout_s)``: the next delivery, or None when none came in time.
Receive = Callable[[float], Delivery | None]


class TopicBus(Protocol):
    """Where canonical events are fanned out."""

    exchange: str

    def declare(self) -> None:
        """Declare the exchange (and what goes with it) now, before the first publish."""
        ...

    def publish(self, event: CloudEvent, *, message_id: str) -> None:
        """Publish one event, returning only once the broker confirmed it."""
        ...


class RabbitTopicBus:
    """:class:`TopicBus` on a RabbitMQ topic exchange: every thread of the process publishes on one confirming
    channel (:class:`hub.confirms.ConfirmWindow`), connected through the process's link to RabbitMQ (``link``; by
    default one of its own): while RabbitMQ does not answer, a publish with no reconnect attempt due fails at once.
    ``url`` may name several nodes (comma-separated), tried in turn. Every (re)connection declares the exchange,
    and with ``retention`` its history stream (:mod:`hub.topology`)."""

    def __init__(self, url: str, *, exchange: str = EXCHANGE, link: ServerLink | None = None,
                 retention: StreamRetention | None = None, confirm_timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
        self.url = url
        self.exchange = exchange
        self.retention = retention
        self.link = link or ServerLink("RabbitMQ", url)
        self.window = ConfirmWindow(url, link=self.link, declare=self._declare, what="topic publish",
                                    confirm_timeout_s=confirm_timeout_s)

    def _declare(self, channel: Any) -> None:
        if self.retention is None:
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        else:
            declare_events(channel, exchange=self.exchange, retention=self.retention)

    def declare(self) -> None:
        """Connect and declare the exchange and its history stream now (BrokerUnavailable when RabbitMQ does not
        answer)."""
        self.window.open()

    def publish(self, event: CloudEvent, *, message_id: str) -> None:
        """Publish one event, returning only once the broker confirmed it."""
        message = to_amqp(event)
        properties = pika.BasicProperties(
            headers=message.headers,
            content_type=message.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
        )
        started = time.perf_counter()
        self.window.publish(self.exchange, event.get_type(), message.body, properties)
        PUBLISH_DURATION.labels("topic").observe(time.perf_counter() - started)

    def close(self) -> None:
        """Close the connection this bus opened."""
        self.window.close()


class MemoryTopicBus:
    """:class:`TopicBus` in process, for the embedded mode: subscribers are callbacks."""

    def __init__(self, *, exchange: str = EXCHANGE) -> None:
        self.exchange = exchange
        self._subscribers: list[tuple[str, Callable[[Delivery], None]]] = []

    def declare(self) -> None:
        """Nothing to declare in process."""

    def subscribe(self, binding_key: str, callback: Callable[[Delivery], None]) -> None:
        """Call ``callback`` for each event whose type matches the AMQP topic ``binding_key``."""
        self._subscribers.append((binding_key, callback))

    def publish(self, event: CloudEvent, *, message_id: str) -> None:
        """Deliver to every matching subscriber, as RabbitMQ would route it."""
        message = to_amqp(event)
        delivery = Delivery(event.get_type(), dict(message.headers), message.content_type, message_id,
                            message.body)
        for binding_key, callback in list(self._subscribers):
            if topic_matches(binding_key, event.get_type()):
                callback(delivery)


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""
    pattern, words = binding_key.split("."), routing_key.split(".")

    def match(p: int, w: int) -> bool:
        if p == len(pattern):
            return w == len(words)
        if pattern[p] == "#":
            return any(match(p + 1, k) for k in range(w, len(words) + 1))
        return w < len(words) and pattern[p] in ("*", words[w]) and match(p + 1, w + 1)

    return match(0, 0)


@contextmanager
def rabbit_subscription(url: str, binding_key: str, *, exchange: str = EXCHANGE) -> Iterator[Receive]:
    """Bind a private queue to the exchange and yield a ``receive(timeout_s)`` function (``url``: one AMQP URL
    or several, comma-separated, tried in turn)."""
    connection = pika.BlockingConnection(amqp_parameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue, exchange, routing_key=binding_key)

        def receive(timeout_s: float) -> Delivery | None:
            for method, properties, body in channel.consume(queue, inactivity_timeout=timeout_s):
                if method is None:
                    return None
                channel.basic_ack(method.delivery_tag)
                return Delivery(method.routing_key, dict(properties.headers or {}), properties.content_type,
                                properties.message_id, bytes(body))
            return None

        yield receive
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()


def skipping_duplicates(receive: Receive, window: DuplicateWindow, *,
                        on_duplicate: Callable[[Delivery], None] | None = None) -> Receive:
    """``receive`` handing over each event once: a copy whose key is in ``window`` is dropped (and shown to
    ``on_duplicate``). A key is remembered as its delivery is handed over, since ``receive`` has acknowledged
    it by then (a consumer acknowledging after its work uses :func:`hub.duplicates.handle_once` instead)."""

    def receive_once(timeout_s: float) -> Delivery | None:
        deadline = time.monotonic() + timeout_s
        while (delivery := receive(max(deadline - time.monotonic(), 0.0))) is not None:
            if window.remember(delivery.key()):
                return delivery
            if on_duplicate is not None:
                on_duplicate(delivery)
        return None

    return receive_once
