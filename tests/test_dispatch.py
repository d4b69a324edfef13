"""Confirmed enqueue on the real RabbitMQ: a refused confirm is sent again, after a pause, before the
event counts as not published (a quorum queue electing its leader nacks for a moment)."""

from __future__ import annotations

from typing import Any

import dramatiq
import pika.exceptions
import pytest
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from hub.broker import HubRabbitmqBroker, base_middleware
from hub.cli.scenario import project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.errors import BrokerUnavailable
from hub.registry import SchemaRegistry
from tests.support.rabbit import AMQP_URL, queue_depth

pytestmark = pytest.mark.integration


class _Nacking(RabbitmqBroker):
    """The RabbitMQ broker's publish path, with RabbitMQ refusing the first ``refusals`` publishes."""

    refusals = 0
    attempts = 0

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        type(self).attempts += 1
        if type(self).attempts <= type(self).refusals:
            raise dramatiq.errors.ConnectionClosed(pika.exceptions.NackError([]))
        result: Message[Any] = super().enqueue(message, delay=delay)
        return result


class NackingHubBroker(HubRabbitmqBroker, _Nacking):
    """The hub's broker on top of a publish path RabbitMQ refuses for a while (HubRabbitmqBroker.enqueue's
    ``super()`` is the refusing one)."""


def _dispatch(prefix: str, refusals: int) -> list[Message[Any]]:
    registry = SchemaRegistry.load()
    NackingHubBroker.refusals, NackingHubBroker.attempts = refusals, 0
    broker = NackingHubBroker(url=AMQP_URL, delivery_limit=5, middleware=base_middleware())
    dramatiq.actor(lambda event_body: None, broker=broker, actor_name="fanout", queue_name=f"{prefix}.fanout")
    dispatcher = Dispatcher(broker, RoutingTable({"*": ("fanout",)}), queues={"fanout": f"{prefix}.fanout"},
                            known_types=set(registry.event_types))
    try:
        return dispatcher.dispatch(project_created(registry))
    finally:
        broker.close()


def test_a_nacked_enqueue_is_sent_again_and_the_event_is_published_once(prefix: str) -> None:
    sent = _dispatch(prefix, refusals=2)
    assert len(sent) == 1 and NackingHubBroker.attempts == 3
    assert queue_depth(f"{prefix}.fanout") == 1


def test_an_enqueue_nacked_every_time_is_reported_as_not_published(prefix: str) -> None:
    with pytest.raises(BrokerUnavailable, match=rf"enqueue to {prefix}\.fanout not confirmed"):
        _dispatch(prefix, refusals=10)
    assert NackingHubBroker.attempts == 3 and queue_depth(f"{prefix}.fanout") == 0
