"""Baselines of raw confirmed persistent publishing, no Dramatiq, no middleware.

- :func:`measure_raw_publish`: pika, one channel, one publish at a time (each confirmed before the
  next), on a classic and on a quorum queue (the hub's actor queues are quorum queues), with a body the
  size of one dispatched hub message, so that the dispatch figures can be read against it;
- :class:`AsyncRawPublisher`: aio-pika, one channel, N publishes awaiting their confirm at once (what
  the HTTP ingress does with N concurrent publishes), baseline (a) of ``bench.suite``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aio_pika
import pika
import pika.exceptions

from bench.common import AMQP_URL, Stats, stopwatch

#: The longest one publish may wait for its confirm before the run fails.
PUBLISH_TIMEOUT_S = 30.0


def publish_rate(channel: Any, queue: str, body: bytes, count: int) -> float:
    """Publish ``count`` persistent messages, each confirmed before the next; returns msgs/s."""
    properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    with stopwatch() as elapsed:
        for _ in range(count):
            channel.basic_publish("", queue, body, properties, mandatory=True)
    return count / elapsed()


def measure_raw_publish(prefix: str, *, body: bytes, count: int, repeats: int,
                        amqp_url: str = AMQP_URL) -> dict[str, Any]:
    """Raw publish rates (msgs/s, median/min/max of ``repeats``) to ``<prefix>.raw_classic`` and ``.raw_quorum``."""
    parameters = pika.URLParameters(amqp_url)
    parameters.blocked_connection_timeout = PUBLISH_TIMEOUT_S  # a resource alarm fails the run, not hangs it
    connection = pika.BlockingConnection(parameters)
    results: dict[str, Any] = {"count": count, "repeats": repeats, "body_bytes": len(body)}
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for kind, arguments in (("classic", {}), ("quorum", {"x-queue-type": "quorum"})):
            queue = f"{prefix}.raw_{kind}"
            channel.queue_declare(queue, durable=True, arguments=arguments)
            publish_rate(channel, queue, body, min(100, count))  # warm-up
            rates = []
            for _ in range(repeats):
                channel.queue_purge(queue)
                rates.append(publish_rate(channel, queue, body, count))
            channel.queue_purge(queue)
            stats = Stats.of(rates)
            results[kind] = {"msgs_per_s": stats.as_dict(1), "ms_per_msg": round(1000 / stats.median, 3)}
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()
    return results


class AsyncRawPublisher:
    """Raw confirmed persistent publishing with aio-pika on one channel, N publishes awaiting their confirm.

    What the ingress does without the ingress: the same client library, one confirming channel, a body
    the size of the ingress's messages, to a queue declared exactly like an actor queue (quorum, delivery
    limit, dead-letter arguments: ``hub.broker.queue_declarations``), ``mandatory`` set.
    """

    def __init__(self, amqp_url: str = AMQP_URL) -> None:
        self._url = amqp_url
        self._connection: Any = None
        self._channel: Any = None

    async def __aenter__(self) -> AsyncRawPublisher:
        self._connection = await aio_pika.connect(self._url, timeout=30)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def declare_like_actor_queue(self, queue: str, *, delivery_limit: int = 5) -> None:
        """Declare ``queue`` (with ``.DQ`` and ``.XQ``) as the hub declares an actor queue."""
        from hub.broker import queue_declarations

        for declaration in queue_declarations(queue, delivery_limit=delivery_limit):
            await self._channel.declare_queue(declaration.queue, durable=declaration.durable,
                                              arguments=declaration.arguments)

    async def purge(self, queue: str) -> None:
        """Empty ``queue``."""
        declared = await self._channel.declare_queue(queue, passive=True)
        await declared.purge()

    async def publish(self, queue: str, body: bytes, *, count: int, in_flight: int,
                      max_duration_s: float) -> tuple[int, float, float]:
        """Publish up to ``count`` messages with ``in_flight`` publishes awaiting their confirm at any time.

        Stops issuing after ``max_duration_s``. Returns (messages confirmed, seconds, monotonic start).
        """
        exchange = self._channel.default_exchange
        remaining = iter(range(count))
        done = 0
        start = time.monotonic()
        deadline = start + max_duration_s

        async def lane() -> None:
            nonlocal done
            for i in remaining:
                if time.monotonic() > deadline:
                    return
                message = aio_pika.Message(body, content_type="application/json",
                                           delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(i))
                await exchange.publish(message, routing_key=queue, mandatory=True, timeout=PUBLISH_TIMEOUT_S)
                done += 1

        await asyncio.gather(*(lane() for _ in range(in_flight)))
        return done, time.monotonic() - start, start
