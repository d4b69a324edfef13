"""Gauges a scrape reads from the servers, for ``/metrics`` (:func:`observability.metrics.exposition`): the depth of
every actor queue, its delay queue and its dead letters, from RabbitMQ. Every process would read the same
figures, so they are read once per scrape by the process that serves ``/metrics``, not added up."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pika
import pika.exceptions
from dramatiq.common import dq_name, q_name, xq_name
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from hub.endpoints import amqp_parameters
from observability.metrics import QUEUE_MESSAGES

#: The queues of one actor, by the ``state`` label of their messages.
_STATES = (("ready", q_name), ("delayed", dq_name), ("dead", xq_name))


class QueueDepths:
    """``hub_queue_messages{actor, state}``: messages ready, delayed (retries waiting) and dead-lettered per actor.

    One connection per scrape; a queue no process declared yet counts 0."""

    def __init__(self, amqp_url: str, queues: Mapping[str, str]) -> None:
        self.amqp_url = amqp_url
        self.queues = dict(queues)  # actor name -> its queue name

    def collect(self) -> Iterator[Metric]:
        """Read each queue's depth (passive declares)."""
        family = GaugeMetricFamily(QUEUE_MESSAGES, "Messages in an actor's queues: ready, delayed (retries waiting) "
                                   "and dead (dead-lettered or parked).", labels=["actor", "state"])
        connection = pika.BlockingConnection(amqp_parameters(self.amqp_url))
        try:
            for actor, queue in sorted(self.queues.items()):
                for state, name_of in _STATES:
                    family.add_metric([actor, state], float(_depth(connection, name_of(queue))))
        finally:
            if connection.is_open:
                connection.close()
        yield family


def _depth(connection: pika.BlockingConnection, queue: str) -> int:
    channel = connection.channel()
    try:
        declared = channel.queue_declare(queue=queue, durable=True, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:  # never declared: nothing in it
            return 0
        raise
    count = int(declared.method.message_count)
    if channel.is_open:
        channel.close()
    return count
