"""The ingress's async publisher on the real RabbitMQ: the hub's own messages, shared confirms, and every
way a publish can fail (outage, nack, unroutable, resource alarm) ending in BrokerUnavailable, not a hang.

Past 400 lines on purpose: every way a publish can end, on the private broker they share.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pika
import pytest
from dramatiq import Message
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chaos.servers import PrivateRabbit
from hub.broker import HubRabbitmqBroker, QueueDeclaration, queue_declarations
from hub.cli.scenario import project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.errors import BrokerUnavailable, ConfigurationError
from hub.events import CloudEvent
from hub.ingress.publisher import AsyncEventPublisher
from hub.registry import SchemaRegistry
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import AMQP_URL, clear_policy, memory_alarm, queue_depth, set_policy, wait_until

pytestmark = pytest.mark.integration

EVENT_TYPE = "erp.project.created.v1"
ROUTES = RoutingTable({EVENT_TYPE: ("fanout",)})
T = TypeVar("T")


def _queue(app: Runtime) -> str:
    return str(app.broker.get_actor("fanout").queue_name)


def _publisher(app: Runtime, *, url: str | None = None, **options: Any) -> AsyncEventPublisher:
    return AsyncEventPublisher(
        amqp_url=url or app.settings.amqp_url,
        routes=ROUTES,
        queues={actor: app.broker.get_actor(actor).queue_name for actor in ROUTES.actors()},
        delivery_limit=app.settings.delivery_limit,
        tracer_provider=app.tracer_provider,
        **options,
    )


async def _eventually(attempt: Callable[[], Awaitable[T]], timeout: float = 20.0) -> T:
    """Retry ``attempt`` while it raises BrokerUnavailable (the client re-sending after a 503)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await attempt()
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return predicate()


def _take_all(queue: str) -> list[tuple[pika.spec.BasicProperties, bytes]]:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        taken: list[tuple[pika.spec.BasicProperties, bytes]] = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))
    finally:
        connection.close()


# -- the messages ----------------------------------------------------------------------------------


def test_queue_declarations_are_the_hub_brokers_own() -> None:
    declared = queue_declarations("p.fanout", delivery_limit=7)
    broker = HubRabbitmqBroker(url=AMQP_URL, delivery_limit=7, middleware=[])  # connects on first use only
    broker_arguments = broker._build_queue_arguments("p.fanout")
    assert declared == [
        QueueDeclaration("p.fanout", True, broker_arguments),
        QueueDeclaration("p.fanout.DQ", True, {
            "x-queue-type": "quorum", "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "p.fanout.XQ",
        }),
        QueueDeclaration("p.fanout.XQ", True, {}),
    ]
    assert broker_arguments["x-delivery-limit"] == 7


def test_the_message_is_the_one_the_dispatcher_enqueues(app: Runtime) -> None:
    assert app.dispatcher is not None
    queue = _queue(app)
    event = project_created(app.registry)
    # The hub's broker declares the queues first; the publisher's start() declares them again, which
    # RabbitMQ refuses (PRECONDITION_FAILED) if any argument drifted from HubRabbitmqBroker's.
    dispatcher = Dispatcher(app.broker, ROUTES, queues={actor: app.broker.get_actor(actor).queue_name
                                                        for actor in ROUTES.actors()},
                            known_types=set(app.registry.event_types))
    [dispatched] = dispatcher.dispatch(event)

    async def scenario() -> list[str]:
        publisher = _publisher(app)
        await publisher.start()
        try:
            return await publisher.publish(event)
        finally:
            await publisher.close()

    [published_id] = asyncio.run(scenario())
    assert wait_until(lambda: queue_depth(queue) == 2)
    (theirs_props, theirs_body), (ours_props, ours_body) = _take_all(queue)
    theirs, ours = Message.decode(theirs_body), Message.decode(ours_body)
    assert theirs.message_id == dispatched.message_id and ours.message_id == published_id
    assert ours.queue_name == theirs.queue_name == queue
    assert ours.actor_name == theirs.actor_name == "fanout"
    assert ours.args == theirs.args and ours.kwargs == theirs.kwargs == {}
    carrier = ours.options.pop("trace_context")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", carrier["traceparent"])
    theirs.options.pop("trace_context", None)  # the dispatcher ran outside any span here
    assert ours.options == theirs.options
    assert ours.options["hub_event"]["id"] == event.get_id()
    assert ours_props.delivery_mode == theirs_props.delivery_mode == 2
    assert ours_props.content_type == "application/json"
    assert ours_props.message_id == published_id


def test_start_fails_when_a_queue_exists_with_other_arguments(app: Runtime) -> None:
    broker = app.broker
    assert isinstance(broker, HubRabbitmqBroker)
    broker.declare_queue(_queue(app), ensure=True)  # declared by the hub's broker

    async def scenario() -> None:
        publisher = AsyncEventPublisher(amqp_url=app.settings.amqp_url, routes=ROUTES,
                                        queues={"fanout": _queue(app)},
                                        delivery_limit=app.settings.delivery_limit + 1)
        with pytest.raises(ConfigurationError, match="x-delivery-limit"):
            await publisher.start()
        assert not publisher.ready

    asyncio.run(scenario())


def test_a_routed_actor_needs_a_queue() -> None:
    with pytest.raises(ConfigurationError, match="fanout"):
        AsyncEventPublisher(amqp_url=AMQP_URL, routes=ROUTES, queues={}, delivery_limit=2)


def test_publishing_before_start_or_after_close_is_refused() -> None:
    event = project_created(SchemaRegistry.load())

    async def scenario() -> None:
        publisher = AsyncEventPublisher(amqp_url=AMQP_URL, routes=ROUTES, queues={"fanout": "unused"},
                                        delivery_limit=2)
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await publisher.publish(event)
        await publisher.close()
        assert not publisher.ready

    asyncio.run(scenario())


# -- end to end and throughput ---------------------------------------------------------------------


def test_a_published_event_is_processed_by_the_hubs_worker(
    app: Runtime, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    event = project_created(app.registry)

    async def scenario() -> list[str]:
        publisher = _publisher(app)
        await publisher.start()
        try:
            assert publisher.ready
            with provider.get_tracer("test").start_as_current_span("POST /v1/events"):
                return await publisher.publish(event)
        finally:
            await publisher.close()

    with app.subscription(EVENT_TYPE) as receive:
        [message_id] = asyncio.run(scenario())
        with running_worker(app, threads=2):
            delivery = receive(15.0)
            assert wait_until(lambda: any(h.outcome == "ok" for h in app.flight.hops(event.get_id())))
    assert delivery is not None
    assert delivery.event().get_id() == event.get_id()
    [hop] = [h for h in app.flight.hops(event.get_id()) if h.outcome == "ok"]
    assert hop.actor == "fanout" and hop.message_id == message_id
    # One trace: the worker's CONSUMER span is a child of the publisher's PRODUCER span.
    provider.force_flush()
    finished = exporter.get_finished_spans()
    [publish] = [s for s in finished if s.name == f"publish {_queue(app)}"]
    [process] = [s for s in finished if s.name == "process fanout"]
    assert publish.kind == SpanKind.PRODUCER
    assert publish.attributes is not None and publish.attributes["messaging.message.id"] == message_id
    assert process.parent is not None and publish.context is not None
    assert process.parent.span_id == publish.context.span_id


def test_concurrent_publishes_share_the_channels_confirms(app: Runtime) -> None:
    events = [project_created(app.registry) for _ in range(200)]

    async def scenario() -> tuple[list[list[str]], int]:
        publisher = _publisher(app)
        await publisher.start()
        try:
            results = await asyncio.gather(*(publisher.publish(event) for event in events))
        finally:
            await publisher.close()
        return results, publisher.in_flight_max

    results, in_flight_max = asyncio.run(scenario())
    assert all(len(ids) == 1 for ids in results)
    assert len({ids[0] for ids in results}) == 200
    assert in_flight_max > 1  # confirms awaited together, not one round trip at a time
    assert wait_until(lambda: queue_depth(_queue(app)) == 200)


# -- failures --------------------------------------------------------------------------------------


def test_an_outage_fails_fast_and_publishing_resumes_when_the_broker_is_back(app: Runtime) -> None:
    proxy = TcpProxy(("127.0.0.1", 5672))
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
    confirm_timeout_s = 2.0

    async def scenario() -> None:
        publisher = _publisher(app, url=url, confirm_timeout_s=confirm_timeout_s)
        await publisher.start()
        try:
            await publisher.publish(project_created(app.registry))
            proxy.cut()
            for _ in range(3):
                # Each fails by its confirm timeout or the lost connection: never waits for a reconnect.
                with pytest.raises(BrokerUnavailable, match=r"^(confirm timeout|connection lost|not connected)"):
                    await publisher.publish(project_created(app.registry))
            assert await _until(lambda: not publisher.ready)
            # Refused before publishing: nothing is written while the connection is down.
            reconnecting = r"not connected to RabbitMQ \(reconnecting in the background\)"
            with pytest.raises(BrokerUnavailable, match=reconnecting):
                await publisher.publish(project_created(app.registry))
            proxy.restore()
            ids = await _eventually(lambda: publisher.publish(project_created(app.registry)))
            assert len(ids) == 1
            assert publisher.ready
        finally:
            await publisher.close()

    try:
        asyncio.run(scenario())
    finally:
        proxy.close()


def test_start_without_a_broker_raises_or_waits_in_the_background(app: Runtime) -> None:
    proxy = TcpProxy(("127.0.0.1", 5672))
    proxy.cut()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"

    async def scenario() -> None:
        strict = _publisher(app, url=url, confirm_timeout_s=2.0)
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await strict.start()
        patient = _publisher(app, url=url, confirm_timeout_s=2.0)
        await patient.start(require_connection=False)
        try:
            assert not patient.ready
            with pytest.raises(BrokerUnavailable, match="not connected"):
                await patient.publish(project_created(app.registry))
            proxy.restore()
            assert await _until(lambda: patient.ready, timeout=20.0)
            assert len(await patient.publish(project_created(app.registry))) == 1
        finally:
            await patient.close()

    try:
        asyncio.run(scenario())
    finally:
        proxy.close()


def test_a_nack_is_broker_unavailable(app: Runtime, prefix: str) -> None:
    queue = _queue(app)
    policy = f"{prefix}-full"

    async def scenario() -> None:
        publisher = _publisher(app)
        await publisher.start()
        try:
            # A quorum queue rejects only once it is over its limit: one message first.
            await publisher.publish(project_created(app.registry))
            await asyncio.to_thread(set_policy, policy, f"^{re.escape(queue)}$",
                                    json.dumps({"max-length": 0, "overflow": "reject-publish"}))
            deadline = time.monotonic() + 20
            while True:  # until the policy is in force
                try:
                    await publisher.publish(project_created(app.registry))
                except BrokerUnavailable as exc:
                    assert "nacked" in str(exc)
                    break
                assert time.monotonic() < deadline, "the queue never rejected a publish"
                await asyncio.sleep(0.1)
            assert publisher.ready  # a nack leaves the channel open
        finally:
            await publisher.close()

    try:
        asyncio.run(scenario())
    finally:
        clear_policy(policy)


def test_an_unroutable_message_is_an_error_and_its_queue_is_declared_again(app: Runtime) -> None:
    queue = _queue(app)

    async def scenario() -> None:
        publisher = _publisher(app)
        await publisher.start()
        try:
            await asyncio.to_thread(_delete_queue, queue)
            with pytest.raises(BrokerUnavailable, match="returned unroutable"):
                await publisher.publish(project_created(app.registry))
            assert len(await _eventually(lambda: publisher.publish(project_created(app.registry)))) == 1
        finally:
            await publisher.close()

    asyncio.run(scenario())
    assert wait_until(lambda: queue_depth(queue) == 1)


def _delete_queue(name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_delete(name)
    finally:
        connection.close()


# -- a real resource alarm, on a private RabbitMQ node (the ``private_rabbit`` fixture) ---------------

def test_a_blocked_broker_fails_publishes_instead_of_hanging(private_rabbit: PrivateRabbit, prefix: str) -> None:
    registry = SchemaRegistry.load()
    confirm_timeout_s = 15.0

    def event() -> CloudEvent:
        return project_created(registry)

    async def scenario() -> None:
        publisher = AsyncEventPublisher(amqp_url=private_rabbit.url, routes=ROUTES,
                                        queues={"fanout": f"{prefix}.fanout"}, delivery_limit=2,
                                        confirm_timeout_s=confirm_timeout_s, blocked_timeout_s=0.5)
        await publisher.start()
        try:
            await publisher.publish(event())
            await asyncio.to_thread(private_rabbit.ctl, "set_vm_memory_high_watermark", "0.0000001")
            try:
                assert await asyncio.to_thread(wait_until, lambda: memory_alarm(private_rabbit))
                # RabbitMQ sends connection.blocked once the connection publishes: this publish is the one
                # that meets the alarm; it fails by blocked_timeout_s, not by the confirm timeout.
                with pytest.raises(BrokerUnavailable, match=r"broker blocked \(resource alarm\) for over 0.5 s"):
                    await publisher.publish(event())
                assert not publisher.ready
                # While blocked, refused before publishing: nothing waits on the alarm.
                refused = r"broker blocked \(resource alarm\): event .* not published"
                with pytest.raises(BrokerUnavailable, match=refused):
                    await publisher.publish(event())
            finally:
                await asyncio.to_thread(private_rabbit.ctl, "set_vm_memory_high_watermark", "0.4")
            assert not await asyncio.to_thread(memory_alarm, private_rabbit)
            assert len(await _eventually(lambda: publisher.publish(event()))) == 1
            assert publisher.ready
        finally:
            await publisher.close()

    asyncio.run(scenario())
