"""The dispatcher's confirmed enqueue: a refused confirm is sent again before the event counts as lost."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError

from hub.demo import project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.errors import BrokerUnavailable
from hub.registry import SchemaRegistry


class NackingBroker(StubBroker):
    """Dramatiq's in-memory broker, refusing the first ``refusals`` enqueues as RabbitMQ's nack would."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.attempts = 0

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise BrokerConnectionError("0 message(s) NACKed")
        result: Message[Any] = super().enqueue(message, delay=delay)
        return result


def _dispatcher(broker: StubBroker, registry: SchemaRegistry) -> Dispatcher:
    dramatiq.actor(lambda event_body: None, broker=broker, actor_name="fanout", queue_name="t.fanout")
    return Dispatcher(broker, RoutingTable({"*": ("fanout",)}), known_types=set(registry.event_types))


def test_a_nacked_enqueue_is_sent_again_and_the_event_is_published_once() -> None:
    registry = SchemaRegistry.load()
    broker = NackingBroker(refusals=2)
    sent = _dispatcher(broker, registry).dispatch(project_created(registry))
    assert len(sent) == 1 and broker.attempts == 3
    assert broker.queues["t.fanout"].qsize() == 1


def test_an_enqueue_nacked_every_time_is_reported_as_not_published() -> None:
    registry = SchemaRegistry.load()
    broker = NackingBroker(refusals=10)
    with pytest.raises(BrokerUnavailable, match=r"enqueue to t\.fanout not confirmed"):
        _dispatcher(broker, registry).dispatch(project_created(registry))
    assert broker.attempts == 3 and broker.queues["t.fanout"].qsize() == 0
