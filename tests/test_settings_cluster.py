"""A cluster in the settings: HUB_AMQP_URL naming several nodes, tried in turn by every RabbitMQ client, and
HUB_REDIS_URL reaching the primary through Sentinel; a bad URL is named by its place, a password never shown."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pika
import pytest
import redis
import redis.asyncio
from structlog.testing import capture_logs

from hub.broker import HubRabbitmqBroker
from hub.cli.scenario import project_created
from hub.cli.servers import mode
from hub.connectivity import ServerLink
from hub.endpoints import SentinelAddress, amqp_parameters
from hub.errors import ConfigurationError
from hub.ingress.publisher import AsyncEventPublisher
from hub.probes import probe_rabbitmq, probe_redis
from hub.registry import SchemaRegistry
from hub.runtime import Runtime, servers_reachable
from hub.settings import load_settings
from hub.store import connect_async_redis, connect_redis
from hub.topics import RabbitTopicBus, rabbit_subscription
from tests.support.rabbit import AMQP_URL

THREE = ("amqp://hub:s3cret-pw@rabbit-1:5672/%2F,amqp://hub:s3cret-pw@rabbit-2:5673/%2F,"
         "amqp://hub:s3cret-pw@rabbit-3:5674/%2F")
SENTINELS = "redis+sentinel://:r3dis-pw@10.0.0.1:26379,10.0.0.2,[::1]:26381/hub/2"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HUB_* variable of the machine running the tests leaks in."""
    import os

    for name in [k for k in os.environ if k.upper().startswith("HUB_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens (a node that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port


# -- parsing ---------------------------------------------------------------------------------------------


def test_one_amqp_url_is_read_as_before() -> None:
    settings = load_settings(amqp_url="amqp://guest:guest@127.0.0.1:5672/%2F")
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert settings.amqp_urls == ("amqp://guest:guest@127.0.0.1:5672/%2F",)


def test_several_amqp_urls_are_the_nodes_in_the_order_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_AMQP_URL", THREE.replace(",", " , "))
    settings = load_settings()
    assert settings.amqp_urls == tuple(THREE.split(","))
    assert [(p.host, p.port) for p in amqp_parameters(settings.amqp_url)] == [
        ("rabbit-1", 5672), ("rabbit-2", 5673), ("rabbit-3", 5674)]


@pytest.mark.parametrize(("value", "problem"), [
    ("amqp://hub:s3cret-pw@rabbit-1:5672/%2F,http://hub:s3cret-pw@rabbit-2/", "URL 2 of 2 must start with amqp://"),
    ("amqp://hub:s3cret-pw@rabbit-1:5672/%2F,,amqp://hub:s3cret-pw@rabbit-3/", "URL 2 of 3 is empty"),
    ("amqp://hub:s3cret-pw@rabbit-1:5672/%2F,", "URL 2 of 2 is empty"),
    ("amqp://hub:s3cret-pw@rabbit-1:port/%2F", "the URL has an invalid port"),
    ("amqp://hub:s3cret-pw@/%2F,amqp://hub:s3cret-pw@rabbit-2/%2F", "URL 1 of 2 has no host"),
])
def test_a_bad_amqp_url_is_named_by_its_place_never_by_its_text(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("HUB_AMQP_URL", value)
    with pytest.raises(ConfigurationError, match="HUB_AMQP_URL") as caught:
        load_settings()
    assert problem in str(caught.value)
    assert "s3cret-pw" not in str(caught.value) and "rabbit-" not in str(caught.value)


def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_the_password() -> None:
    settings = load_settings(redis_url=SENTINELS)
    assert SentinelAddress.parse(settings.redis_url) == SentinelAddress(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26381)), service="hub", db=2,
        username=None, password="r3dis-pw")
    assert SentinelAddress.parse("redis+sentinel://u%40x:p%2Cw@s1:1/my%20primary") == SentinelAddress(
        sentinels=(("s1", 1),), service="my primary", db=0, username="u@x", password="p,w")


@pytest.mark.parametrize(("value", "problem"), [
    ("redis+sentinel://:r3dis-pw@10.0.0.1:26379", "names no service"),
    ("redis+sentinel://:r3dis-pw@10.0.0.1:26379,10.0.0.2:port/hub", "sentinel 2 of 2 has an invalid port"),
    ("redis+sentinel://:r3dis-pw@10.0.0.1:26379,/hub", "sentinel 2 of 2 has no host"),
    ("redis+sentinel://:r3dis-pw@10.0.0.1/hub/zero", "a database that is not a number"),
    ("sentinel://:r3dis-pw@10.0.0.1/hub", "must start with redis://, rediss://, unix:// or redis+sentinel://"),
])
def test_a_bad_sentinel_url_says_what_is_wrong_without_its_password(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("HUB_REDIS_URL", value)
    with pytest.raises(ConfigurationError, match="HUB_REDIS_URL") as caught:
        load_settings()
    assert problem in str(caught.value)
    assert "r3dis-pw" not in str(caught.value)


def test_every_password_of_a_list_is_masked_where_the_url_is_shown() -> None:
    settings = load_settings(amqp_url=THREE, redis_url=SENTINELS)
    rabbit = ServerLink("RabbitMQ", settings.amqp_url, setting="HUB_AMQP_URL")
    assert rabbit.where == ("amqp://***@rabbit-1:5672/%2F,amqp://***@rabbit-2:5673/%2F,"
                            "amqp://***@rabbit-3:5674/%2F")
    assert ServerLink("Redis", settings.redis_url).where == \
        "redis+sentinel://***@10.0.0.1:26379,10.0.0.2,[::1]:26381/hub/2"
    with capture_logs() as logs:
        rabbit.failed(pika.exceptions.AMQPConnectionError("Connection refused"))
    assert "s3cret-pw" not in repr(logs) and "rabbit-3:5674" in logs[0]["event"]


def test_a_process_names_each_node_and_the_sentinels_in_its_first_line() -> None:
    clustered = SimpleNamespace(embedded=False, settings=load_settings(amqp_url=THREE, redis_url=SENTINELS))
    line = mode(clustered)
    assert line.startswith("RabbitMQ amqp://***@rabbit-1:5672/%2F,amqp://***@rabbit-2:5673/%2F,")
    assert "Redis redis+sentinel://***@10.0.0.1:26379,10.0.0.2,[::1]:26381/hub/2" in line
    assert "s3cret-pw" not in line and "r3dis-pw" not in line


# -- the clients try each node in turn ---------------------------------------------------------------------


def test_the_broker_gives_pika_every_node_and_keeps_one_url_as_it_was() -> None:
    one = HubRabbitmqBroker(url=AMQP_URL, delivery_limit=2, middleware=[])
    three = HubRabbitmqBroker(url=THREE, delivery_limit=2, middleware=[])  # connects on first use only
    assert isinstance(one.parameters, pika.URLParameters) and one.parameters.port == 5672
    assert [p.host for p in three.parameters] == ["rabbit-1", "rabbit-2", "rabbit-3"]


def test_a_node_that_is_down_is_passed_over_by_the_probe_the_topic_bus_and_the_subscription(dead_port: int) -> None:
    urls = f"amqp://guest:guest@127.0.0.1:{dead_port}/%2F,{AMQP_URL}"
    assert probe_rabbitmq(f"amqp://guest:guest@127.0.0.1:{dead_port}/%2F", timeout_s=1) is not None
    assert probe_rabbitmq(urls, timeout_s=1) is None
    assert servers_reachable(load_settings(amqp_url=urls))[0]
    event = project_created(SchemaRegistry.load())
    bus = RabbitTopicBus(urls)
    try:
        with rabbit_subscription(urls, event.get_type()) as receive:
            bus.publish(event, message_id="m-1")
            delivery = receive(10.0)
    finally:
        bus.close()
    assert delivery is not None and delivery.event().get_id() == event.get_id()
    assert not bus.link.down


def test_the_ingress_publisher_connects_to_the_first_node_that_answers(app: Runtime, dead_port: int) -> None:
    urls = f"amqp://guest:guest@127.0.0.1:{dead_port}/%2F,{AMQP_URL}"
    queues = {"fanout": app.broker.get_actor("fanout").queue_name}
    from hub.dispatch import RoutingTable

    async def scenario() -> list[str]:
        publisher = AsyncEventPublisher(amqp_url=urls, routes=RoutingTable({"erp.project.created.v1": ("fanout",)}),
                                        queues=queues, delivery_limit=app.settings.delivery_limit)
        with capture_logs() as logs:
            await publisher.start()
        try:
            assert any("connected to RabbitMQ at amqp://***@127.0.0.1:5672/" in line["event"] for line in logs)
            return await publisher.publish(project_created(app.registry))
        finally:
            await publisher.close()

    assert len(asyncio.run(scenario())) == 1


def test_an_ingress_publisher_given_a_bad_url_says_so_without_it() -> None:
    from hub.dispatch import RoutingTable

    with pytest.raises(ConfigurationError, match="URL 2 of 2 must start with amqp://") as caught:
        AsyncEventPublisher(amqp_url=f"{AMQP_URL},http://x:s3cret-pw@h/", routes=RoutingTable({}), queues={},
                            delivery_limit=2)
    assert "s3cret-pw" not in str(caught.value)


# -- Redis through Sentinel ---------------------------------------------------------------------------------


def test_a_sentinel_url_builds_clients_that_ask_the_sentinels_for_the_primary() -> None:
    client = connect_redis(SENTINELS, embedded=False)
    try:
        pool = client.connection_pool
        assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
        assert pool.service_name == "hub"
        assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "r3dis-pw"
        assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                for s in pool.sentinel_manager.sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26379),
                                                              ("::1", 26381)]
    finally:
        client.close()

    async def asynchronous() -> None:
        client = connect_async_redis(SENTINELS, embedded=False)
        try:
            assert isinstance(client.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool)
            assert client.connection_pool.service_name == "hub"
        finally:
            await client.aclose()

    asyncio.run(asynchronous())


def test_sentinels_that_do_not_answer_are_an_error_of_the_probe_not_a_hang(dead_port: int) -> None:
    error = probe_redis(f"redis+sentinel://127.0.0.1:{dead_port}/hub", timeout_s=1)
    assert isinstance(error, redis.ConnectionError)
    assert not servers_reachable(load_settings(redis_url=f"redis+sentinel://127.0.0.1:{dead_port}/hub"))[1]
