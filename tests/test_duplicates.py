"""Topic consumers drop second copies by the event's (source, id): the windows of ``hub.duplicates`` (the
Redis one on the real server), a consumer of a real topic exchange that the fan-out publishes an event to
twice, and the copy itself, from a fan-out worker killed between its confirmed publish and its done mark."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pika
import pytest
import redis

import actors.fanout
from actors.fanout.actor import FanOut
from hub.actor import unit_context
from hub.cli.scenario import acme_engagement, project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.duplicates import DuplicateWindow, EventKey, MemoryWindow, RedisWindow, handle_once, key_of
from hub.events import CloudEvent
from hub.registry import SchemaRegistry
from hub.runtime import Runtime
from hub.topics import Delivery, RabbitTopicBus, rabbit_subscription, skipping_duplicates
from tests.conftest import start_crash_worker
from tests.support.rabbit import AMQP_URL
from tests.support.signals import done

KEY = EventKey("erp-sim://acme-psa/prod", "evt-1")


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis()
    yield connection
    connection.close()


@pytest.fixture(params=["redis", "memory"])
def window(request: pytest.FixtureRequest, client: redis.Redis, prefix: str) -> DuplicateWindow:
    """Either window: the Redis one on the real server (under this test's prefix) or the in-memory one."""
    return RedisWindow(client, prefix=prefix) if request.param == "redis" else MemoryWindow()


# -- the contract both windows keep ---------------------------------------------------------------

def test_a_copy_of_an_event_handled_within_the_window_is_a_duplicate(window: DuplicateWindow) -> None:
    assert not window.seen(KEY)
    assert window.remember(KEY)
    assert window.seen(EventKey(KEY.source, KEY.id))


def test_the_same_id_from_another_source_is_another_event(window: DuplicateWindow) -> None:
    window.remember(KEY)
    assert not window.seen(EventKey("dms://sharepoint/workspaces", KEY.id))
    assert not window.seen(EventKey(KEY.source, "evt-2"))


def test_remembering_an_event_twice_tells_that_another_copy_got_there_first(window: DuplicateWindow) -> None:
    assert window.remember(KEY)
    assert not window.remember(KEY)


def test_a_key_cannot_be_forged_by_moving_text_between_source_and_id(window: DuplicateWindow) -> None:
    window.remember(EventKey("erp", "a:b"))
    assert not window.seen(EventKey("erp:a", "b"))


def test_an_event_is_handled_once_and_its_copy_skipped(window: DuplicateWindow) -> None:
    handled: list[str] = []
    assert handle_once(window, KEY, lambda: handled.append("first"))
    assert not handle_once(window, KEY, lambda: handled.append("copy"))
    assert handled == ["first"]


def test_an_event_whose_handler_failed_is_handled_again_when_it_comes_back(window: DuplicateWindow) -> None:
    def fail() -> None:
        raise RuntimeError("warehouse unavailable")

    with pytest.raises(RuntimeError):
        handle_once(window, KEY, fail)
    assert not window.seen(KEY)  # remembered only after the work: the redelivery is not lost
    handled: list[str] = []
    assert handle_once(window, KEY, lambda: handled.append("redelivered"))
    assert handled == ["redelivered"]


# -- the bounds -----------------------------------------------------------------------------------

def test_an_event_older_than_the_memory_window_is_admitted_again() -> None:
    clock = Clock()
    window = MemoryWindow(max_age_s=60, clock=clock)
    window.remember(KEY)
    clock.now += 59.9
    assert window.seen(KEY)
    clock.now += 0.1
    assert not window.seen(KEY)
    assert window.remember(KEY)


def test_a_copy_seen_again_does_not_make_its_key_younger() -> None:
    clock = Clock()
    window = MemoryWindow(max_age_s=60, clock=clock)
    window.remember(KEY)
    clock.now += 30
    assert not window.remember(KEY)
    clock.now += 30
    assert not window.seen(KEY)


def test_a_full_memory_window_forgets_its_oldest_event_first() -> None:
    window = MemoryWindow(max_events=2)
    first, second, third = (EventKey("erp", f"evt-{n}") for n in (1, 2, 3))
    for key in (first, second, third):
        window.remember(key)
    assert not window.seen(first)
    assert window.seen(second) and window.seen(third)
    assert window.remember(first)  # admitted again once out of the window


def test_a_memory_window_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="max_events"):
        MemoryWindow(max_events=0)
    with pytest.raises(ValueError, match="max_age_s"):
        MemoryWindow(max_age_s=0)


@pytest.mark.integration
def test_the_redis_window_keeps_an_event_for_its_ttl_and_admits_it_again_after(client: redis.Redis,
                                                                               prefix: str) -> None:
    window = RedisWindow(client, prefix=prefix, ttl_s=600)
    window.remember(KEY)
    assert 590 <= client.ttl(window.redis_key(KEY)) <= 600
    client.expire(window.redis_key(KEY), 0)  # what the TTL does at its end, without waiting for it
    assert not window.seen(KEY)
    assert window.remember(KEY)


@pytest.mark.integration
def test_the_instances_of_one_consumer_share_a_redis_window_and_other_consumers_do_not(
        client: redis.Redis, prefix: str) -> None:
    handled_by_one = RedisWindow(client, prefix=f"{prefix}:analytics")
    assert handle_once(handled_by_one, KEY, lambda: None)
    assert RedisWindow(client, prefix=f"{prefix}:analytics").seen(KEY)
    assert not RedisWindow(client, prefix=f"{prefix}:alerts").seen(KEY)


# -- the key ----------------------------------------------------------------------------------------

def test_the_key_is_read_from_the_ce_headers_as_any_amqp_client_gives_them() -> None:
    assert key_of({"ce-source": "erp", "ce-id": "evt-1", "ce-type": "a.b.c.v1"}) == EventKey("erp", "evt-1")
    assert key_of({"ce-source": b"erp", "ce-id": b"evt-1"}) == EventKey("erp", "evt-1")


def test_a_message_without_ce_source_or_ce_id_has_no_key() -> None:
    with pytest.raises(ValueError, match="ce-id"):
        key_of({"ce-source": "erp"})
    with pytest.raises(ValueError, match="ce-source"):
        key_of({"ce-id": "evt-1"})


# -- a topic exchange on the real RabbitMQ --------------------------------------------------------

@pytest.fixture
def exchange() -> Iterator[str]:
    """A topic exchange of this test alone, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.events"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    connection.channel().exchange_delete(name)
    connection.close()


def _fan_out_twice_then(registry: SchemaRegistry, bus: RabbitTopicBus, sentinel: CloudEvent) -> CloudEvent:
    """The fan-out publishing one event twice (its re-run after a crash before the done mark), then a
    sentinel event on the same channel: once the sentinel is received, both copies were."""
    event = project_created(registry)
    context = unit_context(actors.fanout.SPEC, registry, event, acme_engagement())
    FanOut(bus).handle(context)
    FanOut(bus).handle(context)
    bus.publish(sentinel, message_id="sentinel")
    return event


@pytest.mark.integration
def test_a_consumer_with_a_window_handles_an_event_the_fan_out_published_twice_once(
        registry: SchemaRegistry, exchange: str, window: DuplicateWindow) -> None:
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange)
    sentinel = project_created(registry)
    received: list[Delivery] = []
    handled: list[str] = []
    try:
        with rabbit_subscription(AMQP_URL, "erp.project.#", exchange=exchange) as receive:
            event = _fan_out_twice_then(registry, bus, sentinel)
            while (delivery := receive(10.0)) is not None:
                received.append(delivery)
                handle_once(window, delivery.key(), lambda d=delivery: handled.append(d.event().get_id()))
                if delivery.key().id == sentinel.get_id():
                    break
    finally:
        bus.close()
    first, copy = received[:2]
    assert copy.message_id == first.message_id and copy.headers["ce-id"] == first.headers["ce-id"] == event.get_id()
    assert copy.key() == first.key() == EventKey(event.get_source(), event.get_id())
    assert handled == [event.get_id(), sentinel.get_id()]


@pytest.mark.integration
def test_a_subscription_skipping_duplicates_hands_over_an_event_published_twice_once(
        registry: SchemaRegistry, exchange: str) -> None:
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange)
    sentinel = project_created(registry)
    skipped: list[Delivery] = []
    handed_over: list[str] = []
    try:
        with rabbit_subscription(AMQP_URL, "erp.project.#", exchange=exchange) as receive:
            receive_once = skipping_duplicates(receive, MemoryWindow(), on_duplicate=skipped.append)
            event = _fan_out_twice_then(registry, bus, sentinel)
            while (delivery := receive_once(10.0)) is not None:
                handed_over.append(delivery.key().id)
                if delivery.key().id == sentinel.get_id():
                    break
    finally:
        bus.close()
    assert handed_over == [event.get_id(), sentinel.get_id()]
    assert [delivery.key().id for delivery in skipped] == [event.get_id()]


@pytest.mark.integration
def test_a_fan_out_worker_killed_between_its_confirmed_publish_and_its_done_mark_publishes_the_same_copy_again(
        app: Runtime, prefix: str) -> None:
    fanout = actors.fanout.SPEC.name
    dispatcher = Dispatcher(app.broker, RoutingTable({"erp.project.created.v1": (fanout,)}),
                            queues={fanout: app.broker.get_actor(fanout).queue_name},
                            known_types=set(app.registry.event_types))
    event = project_created(app.registry)
    app.redis.set(f"{prefix}:crash:fanout_before_done", "1")
    copies: list[Delivery] = []
    with app.subscription(event.get_type()) as receive:
        first = start_crash_worker(prefix)
        try:
            dispatcher.dispatch(event)
            assert first.wait(timeout=60) == -9, "the worker should have died after its publish"
        finally:
            if first.poll() is None:
                first.kill()
        assert not done(app.redis, prefix, fanout, event.get_source(), event.get_id())
        second = start_crash_worker(prefix)
        try:
            while len(copies) < 2 and (delivery := receive(60.0)) is not None:
                if delivery.key() == (event.get_source(), event.get_id()):  # hub.events is shared by the tests
                    copies.append(delivery)
        finally:
            second.terminate()
            second.wait(timeout=30)
    assert len(copies) == 2, "the redelivered message publishes the event again"
    first_copy, second_copy = copies
    assert second_copy.message_id == first_copy.message_id
    assert (second_copy.headers, second_copy.body) == (first_copy.headers, first_copy.body)
    window = MemoryWindow()
    handled = [handle_once(window, copy.key(), lambda: None) for copy in copies]
    assert handled == [True, False]
