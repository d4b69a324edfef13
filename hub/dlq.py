"""Dead letters: list an actor queue's ``.XQ`` with each failure reason, and replay them.

Listing peeks (messages are fetched unacknowledged and return to the queue when the channel
closes). Replay re-enqueues the original message, same message id and same event id, so the
idempotency claims still hold; the dead letter is acked only after the broker confirmed the replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq import Message
from dramatiq.common import q_name, xq_name

from hub.endpoints import amqp_parameters
from hub.store import DeadLetterReasons

# Options that belong to a failed run, not to the message: the count of attempts and of lock, circuit and
# prerequisite waits among them, the wait for a lock in progress, the start of the circuit and prerequisite
# waits, the last error, the dead-letter reason.
_RUN_OPTIONS = ("retries", "traceback", "requeue_timestamp", "hub_dead", "eta", "hub_outcome",
                "hub_lock_waits", "hub_lock_wait", "hub_circuit_waits", "hub_circuit_wait_since",
                "hub_prerequisite_waits", "hub_prerequisite_wait_since")


def replay_options(options: dict[str, Any]) -> dict[str, Any]:
    """A dead letter's options for its replay: a run of its own, with its whole retry budget and every wait's."""
    return {k: v for k, v in options.items() if k not in _RUN_OPTIONS}


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message with why it died."""

    queue: str
    message_id: str
    actor: str
    event_id: str | None
    event_type: str | None
    death_reason: str  # RabbitMQ's: rejected (failed or permanent) or delivery_limit (poison)
    deaths: int
    reason: dict[str, Any] | None  # the hub's recorded reason (error, attempts), when known

    def describe(self) -> str:
        """One line for the CLI."""
        why = self.reason.get("why") if self.reason else None
        error = self.reason.get("error") if self.reason else None
        if self.death_reason == "delivery_limit":
            why = why or "poison: delivery limit reached (the message kept killing its worker)"
        parts = [self.message_id, self.actor, self.event_type or "-", self.event_id or "-",
                 self.death_reason, why or "-", error or ""]
        return "  ".join(p for p in parts if p)


def _death(properties: Any) -> tuple[str, int]:
    headers = properties.headers or {}
    reason = headers.get("x-first-death-reason")
    deaths = sum(int(d.get("count", 1)) for d in headers.get("x-death", []) or [])
    if isinstance(reason, bytes):
        reason = reason.decode()
    return str(reason or "unknown"), deaths


@contextmanager
def _channel(url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(amqp_parameters(url))  # one URL, or a cluster's nodes in turn
    try:
        channel = connection.channel()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def _fetch_all(channel: Any, queue: str) -> list[tuple[Any, Any, Message[Any]]]:
    try:
        channel.queue_declare(queue=queue, durable=True, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:  # never declared: no worker or ingress of this prefix has run yet
            return []
        raise
    items: list[tuple[Any, Any, Message[Any]]] = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            return items
        items.append((method, properties, Message.decode(body)))


def list_dead_letters(url: str, queue_name: str, reasons: DeadLetterReasons | None) -> list[DeadLetter]:
    """Peek at the dead letters of ``queue_name`` (an actor's canonical queue)."""
    queue = xq_name(q_name(queue_name))
    with _channel(url) as channel:
        items = _fetch_all(channel, queue)
        result = []
        for _method, properties, message in items:
            reason_name, deaths = _death(properties)
            event = message.options.get("hub_event") or {}
            result.append(DeadLetter(
                queue=queue,
                message_id=message.message_id,
                actor=message.actor_name,
                event_id=event.get("id"),
                event_type=event.get("type"),
                death_reason=reason_name,
                deaths=deaths,
                reason=reasons.get(message.message_id) if reasons else None,
            ))
        return result  # closing the channel returns every peeked message to the queue


def replay_dead_letters(
    url: str,
    broker: dramatiq.Broker,
    queue_name: str,
    *,
    message_ids: set[str] | None,
    reasons: DeadLetterReasons | None,
) -> list[str]:
    """Re-enqueue dead letters (all, or those in ``message_ids``); returns the replayed ids."""
    queue = xq_name(q_name(queue_name))
    replayed = []
    with _channel(url) as channel:
        for method, _properties, message in _fetch_all(channel, queue):
            if message_ids is not None and message.message_id not in message_ids:
                continue
            options = replay_options(message.options)
            fresh: Message[Any] = Message(queue_name=q_name(message.queue_name), actor_name=message.actor_name,
                            args=message.args, kwargs=message.kwargs, options=options,
                            message_id=message.message_id, message_timestamp=message.message_timestamp)
            broker.enqueue(fresh)  # confirmed before the dead letter is acked
            channel.basic_ack(method.delivery_tag)
            replayed.append(message.message_id)
            if reasons is not None:
                reasons.forget(message.message_id)
    return replayed
