"""Replay: copying a slice of the history stream (:func:`hub.topology.history_stream`) into one consumer's
queue, so a consumer backfills without the others seeing anything again.

A stream has no end a reader is told of over AMQP 0-9-1 (it waits for the next message), so a replay first
appends an *end mark* to the stream, a message without ``ce-`` headers that only the replay looks for, and
reads from ``since`` up to it: what was published before the replay started is copied, nothing after. Readers of
the stream skip messages without a ``ce-type`` header, as they skip any event type they do not take.

Each event is published to the default exchange with the consumer's queue as routing key (so only that queue
gets it), with its headers, body and ``message_id`` as they were (a consumer's deduplication on
(``ce-source``, ``ce-id``) sees a copy it already has as one), and confirmed before the next is read.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pika
import pika.exceptions

from hub.endpoints import amqp_parameters
from hub.errors import ConfigurationError
from hub.topology import history_stream

__all__ = ["END_MARK", "Replayed", "replay"]

#: Header of the replay's end mark in the stream.
END_MARK = "x-hub-replay-end"
#: Messages the stream hands over before an acknowledgement is needed (streams require a prefetch).
PREFETCH = 200


@dataclass
class Replayed:
    """What a replay read from the stream and copied into the queue."""

    read: int = 0
    copied: int = 0


def replay(url: str, *, prefix: str, since: datetime, to_queue: str, types: Collection[str] = (),
           on_copy: Callable[[str], None] | None = None) -> Replayed:
    """Copy every event that reached the exchange since ``since`` (of ``types``, or every type) into the
    existing queue ``to_queue``; ``on_copy`` is told each type copied. Raises ConfigurationError when the queue
    or the stream does not exist."""
    stream = history_stream(prefix)
    connection = pika.BlockingConnection(amqp_parameters(url))
    try:
        for queue in (to_queue, stream):
            _must_exist(connection, queue)
        writer = connection.channel()
        writer.confirm_delivery()
        mark = uuid.uuid4().hex
        writer.basic_publish("", stream, b"", pika.BasicProperties(headers={END_MARK: mark}, delivery_mode=2))
        reader = connection.channel()
        reader.basic_qos(prefetch_count=PREFETCH)
        result = Replayed()
        wanted = set(types)
        for method, properties, body in reader.consume(stream, arguments={"x-stream-offset": since}):
            headers = dict(properties.headers or {})
            if headers.get(END_MARK) == mark:
                reader.basic_ack(method.delivery_tag)
                break
            event_type = _text(headers.get("ce-type"))
            if event_type is not None:
                result.read += 1
                if not wanted or event_type in wanted:
                    _copy(writer, to_queue, headers, properties, body)
                    result.copied += 1
                    if on_copy is not None:
                        on_copy(event_type)
            reader.basic_ack(method.delivery_tag)
        return result
    finally:
        # Closing cancels the reader, and pika rejects what it holds prefetched (events published since the
        # mark), which a stream answers by closing the connection: expected, every copy is confirmed by then.
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()


def _copy(channel: Any, queue: str, headers: dict[str, Any], properties: Any, body: bytes) -> None:
    headers.pop("x-stream-offset", None)
    channel.basic_publish("", queue, body, pika.BasicProperties(
        headers=headers, content_type=properties.content_type, message_id=properties.message_id,
        delivery_mode=pika.DeliveryMode.Persistent), mandatory=True)


def _must_exist(connection: Any, queue: str) -> None:
    channel = connection.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        raise ConfigurationError(f"queue {queue} does not exist (hub consumers add declares a consumer's queue; "
                                 "hub worker declares the history stream)") from None
    with contextlib.suppress(pika.exceptions.AMQPError):
        channel.close()


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None
