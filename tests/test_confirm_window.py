"""The fan-out's topic publishes: every thread of a worker process on one confirming channel, with many publishes
awaiting their confirms at once, and each way a publish can fail ending in BrokerUnavailable, not a hang."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pika
import pytest

from chaos.servers import PrivateRabbit
from hub.cli.scenario import project_created
from hub.connectivity import Backoff, ServerLink
from hub.errors import BrokerUnavailable
from hub.registry import SchemaRegistry
from hub.topics import RabbitTopicBus, rabbit_subscription
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import AMQP_URL, memory_alarm, wait_until

pytestmark = pytest.mark.integration

THREADS = 8
PER_THREAD = 25


@pytest.fixture
def exchange() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:8]}.events"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().exchange_delete(name)
    finally:
        connection.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    tcp = TcpProxy(("127.0.0.1", 5672))
    yield tcp
    tcp.close()


def _via(proxy: TcpProxy) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"


def _quick_link(url: str) -> ServerLink:
    return ServerLink("RabbitMQ", url, backoff=Backoff(first_s=0.05, max_s=0.1))


def _published_eventually(bus: RabbitTopicBus, registry: SchemaRegistry, message_id: str) -> bool:
    """Publish until RabbitMQ confirms (each failed try waits for the link's next attempt)."""
    def attempt() -> bool:
        try:
            bus.publish(project_created(registry), message_id=message_id)
        except BrokerUnavailable:
            return False
        return True
    return wait_until(attempt, timeout=30)


def test_the_threads_of_a_process_publish_on_one_connection_with_many_confirms_awaited_at_once(
        exchange: str, proxy: TcpProxy) -> None:
    registry = SchemaRegistry.load()
    bus = RabbitTopicBus(_via(proxy), exchange=exchange)
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def publish(thread: int) -> None:
        start.wait()
        for n in range(PER_THREAD):
            try:
                bus.publish(project_created(registry), message_id=f"{thread}-{n}")
            except BaseException as exc:  # reported below
                failures.append(exc)

    try:
        with rabbit_subscription(AMQP_URL, "#", exchange=exchange) as receive:
            threads = [threading.Thread(target=publish, args=(k,)) for k in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            received = set()
            while len(received) < THREADS * PER_THREAD and (delivery := receive(10.0)) is not None:
                received.add(delivery.message_id)
    finally:
        bus.close()
    assert failures == []
    assert received == {f"{k}-{n}" for k in range(THREADS) for n in range(PER_THREAD)}
    # One connection to declare the exchange, one to publish on: not one per thread.
    assert proxy.accepted == 2
    assert bus.window.in_flight_max > 1


def test_a_message_the_broker_refuses_is_nacked_and_the_channel_goes_on(exchange: str) -> None:
    registry = SchemaRegistry.load()
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange)
    full = f"{exchange}.full"
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        bus.declare()
        channel = connection.channel()
        channel.queue_declare(full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        channel.queue_bind(full, exchange, routing_key="#")
        with pytest.raises(BrokerUnavailable, match="nacked: the broker refused the topic publish"):
            bus.publish(project_created(registry), message_id="refused")
        channel.queue_delete(full)
        bus.publish(project_created(registry), message_id="taken")
    finally:
        bus.close()
        connection.close()


def test_a_confirm_that_does_not_come_fails_the_publish_after_the_confirm_timeout(
        exchange: str, proxy: TcpProxy) -> None:
    registry = SchemaRegistry.load()
    bus = RabbitTopicBus(_via(proxy), exchange=exchange, confirm_timeout_s=0.5)
    try:
        bus.publish(project_created(registry), message_id="before")
        proxy.pause()
        with pytest.raises(BrokerUnavailable, match=r"confirm timeout: topic publish not confirmed within 0.5 s"):
            bus.publish(project_created(registry), message_id="stalled")
        proxy.resume()
        bus.publish(project_created(registry), message_id="after")
    finally:
        bus.close()


def test_publishes_awaiting_their_confirm_fail_when_the_connection_is_lost_and_later_ones_reconnect(
        exchange: str, proxy: TcpProxy) -> None:
    registry = SchemaRegistry.load()
    url = _via(proxy)
    link = _quick_link(url)
    bus = RabbitTopicBus(url, exchange=exchange, link=link)
    outcome: list[BaseException | None] = []
    try:
        bus.publish(project_created(registry), message_id="before")
        proxy.pause()

        def publish() -> None:
            try:
                bus.publish(project_created(registry), message_id="under-way")
            except BrokerUnavailable as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        waiting = threading.Thread(target=publish)
        waiting.start()
        assert wait_until(lambda: bus.window.in_flight == 1)
        proxy.cut()
        waiting.join(10)
        assert not waiting.is_alive()
        assert len(outcome) == 1 and outcome[0] is not None
        assert "topic publish not confirmed: connection lost" in str(outcome[0])
        assert wait_until(lambda: link.down)
        # While RabbitMQ does not answer, a publish fails at once when no attempt is due, else tries and fails.
        with pytest.raises(BrokerUnavailable, match=r"topic publish not (attempted|confirmed)"):
            bus.publish(project_created(registry), message_id="during")
        proxy.resume()
        proxy.restore()
        assert _published_eventually(bus, registry, "after")
        assert not link.down
    finally:
        bus.close()


def test_a_deleted_exchange_is_declared_again_by_the_publish_after_the_one_it_failed(exchange: str) -> None:
    registry = SchemaRegistry.load()
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        bus.publish(project_created(registry), message_id="first")
        connection.channel().exchange_delete(exchange)
        with pytest.raises(BrokerUnavailable, match="topic publish not confirmed: channel closed"):
            bus.publish(project_created(registry), message_id="lost")
        assert not bus.link.down  # RabbitMQ answers: no outage to report
        with rabbit_subscription(AMQP_URL, "#", exchange=exchange) as receive:
            bus.publish(project_created(registry), message_id="again")
            delivery = receive(10.0)
        assert delivery is not None and delivery.message_id == "again"
    finally:
        bus.close()
        connection.close()


def test_a_closed_bus_fails_publishes_at_once(exchange: str) -> None:
    registry = SchemaRegistry.load()
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange)
    bus.publish(project_created(registry), message_id="open")
    bus.close()
    with pytest.raises(BrokerUnavailable, match="topic publish not attempted: the publisher is closed"):
        bus.publish(project_created(registry), message_id="closed")


def test_a_blocked_broker_refuses_topic_publishes_at_once_and_they_flow_again_once_unblocked(
        private_rabbit: PrivateRabbit) -> None:
    registry = SchemaRegistry.load()
    bus = RabbitTopicBus(private_rabbit.url, exchange="hub.events", confirm_timeout_s=15.0)
    try:
        bus.publish(project_created(registry), message_id="before")
        private_rabbit.ctl("set_vm_memory_high_watermark", "0.0000001")
        try:
            assert wait_until(lambda: memory_alarm(private_rabbit))
            # RabbitMQ tells a connection it is blocked once it publishes: this one meets the alarm, and fails once
            # the block lasted the blocked timeout, long before the confirm timeout.
            with pytest.raises(BrokerUnavailable, match=r"broker blocked \(resource alarm\) for over 2 s: topic "
                                                        "publish not confirmed"):
                bus.publish(project_created(registry), message_id="meets the alarm")
            assert bus.window.blocked
            with pytest.raises(BrokerUnavailable, match=r"broker blocked \(resource alarm\): topic publish not "
                                                        "attempted"):
                bus.publish(project_created(registry), message_id="refused")
        finally:
            private_rabbit.ctl("set_vm_memory_high_watermark", "0.4")
        assert not memory_alarm(private_rabbit)
        assert _published_eventually(bus, registry, "after")
    finally:
        bus.close()
