"""On a cluster: three RabbitMQ nodes and Redis behind three sentinels (chaos.cluster), the ingress and two
workers under load, and a node leading the busiest queues, then the Redis primary, killed: no accepted event is
lost. Boots its own cluster (``make test-cluster``); the default run leaves it out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from chaos.cluster import Cluster, down, queue_leaders, running_nodes, up
from chaos.cluster_scenarios import run_scenario
from hub.broker import queue_declarations
from hub.endpoints import amqp_parameters

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """The private cluster, up for this module's tests and down afterwards."""
    state = tmp_path_factory.mktemp("cluster") / "state.json"
    running = up(state)
    try:
        yield running, state
    finally:
        down(running, state)


def test_the_hubs_quorum_queues_are_led_from_every_node(cluster: tuple[Cluster, Path]) -> None:
    running, _ = cluster
    assert len(running_nodes(running)) == 3
    connection = pika.BlockingConnection(amqp_parameters(running.amqp_url))  # every declaration on the first node
    try:
        channel = connection.channel()
        for actor in ("a", "b", "c", "d", "e", "f"):
            for declaration in queue_declarations(f"spread.{actor}", delivery_limit=5):
                channel.queue_declare(declaration.queue, durable=True, arguments=declaration.arguments)
        leaders = Counter(leader for _, leader, _ in queue_leaders(running, "spread."))
        for actor in ("a", "b", "c", "d", "e", "f"):
            for declaration in queue_declarations(f"spread.{actor}", delivery_limit=5):
                channel.queue_delete(declaration.queue)
    finally:
        connection.close()
    assert sum(leaders.values()) == 12
    assert len(leaders) == 3, leaders


def test_a_node_leading_the_busiest_queues_killed_under_load_loses_no_accepted_event(
    cluster: tuple[Cluster, Path],
) -> None:
    running, state = cluster
    result = run_scenario("rabbit-leader", running, state=state, events=150, rate=15)
    assert result.accepted > 0
    assert result.lost == 0, result.row()
    assert result.resume_s is not None, f"nothing sent after the kill completed: {result.row()}"
    assert len(running_nodes(running)) == 3  # the killed node is back


def test_the_redis_primary_killed_under_load_loses_no_accepted_event(cluster: tuple[Cluster, Path]) -> None:
    running, state = cluster
    result = run_scenario("redis-primary", running, state=state, events=150, rate=15)
    assert result.accepted > 0
    assert result.lost == 0, result.row()
    assert result.resume_s is not None, f"nothing sent after the kill completed: {result.row()}"
