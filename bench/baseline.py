"""Baseline: raw confirmed persistent publishes with pika on one channel, no Dramatiq, no middleware.

Measured on a classic and on a quorum queue (the hub's actor queues are quorum queues), with a body
the size of one dispatched hub message, so that the dispatch figures can be read against it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pika
import pika.exceptions

from bench.common import AMQP_URL, Stats, stopwatch


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
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
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
