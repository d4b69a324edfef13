"""On a cluster: three RabbitMQ nodes, Redis behind three sentinels and a PostgreSQL of its own (chaos.cluster),
the ingress and two workers under load, and a node leading the busiest queues, then the Redis primary, killed: no
accepted event is lost. Boots its own clusters (``make test-cluster``); the default run leaves it out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import sqlalchemy

from chaos.cluster import Cluster, down, main, queue_leaders, running_nodes, up
from chaos.cluster_scenarios import run_scenario
from hub.broker import queue_declarations
from hub.endpoints import amqp_parameters

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


def test_run_boots_a_cluster_of_its_own_reports_each_scenario_and_takes_it_down(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # First in the module: it runs before the module's cluster is up.
    assert main(["run", "--scenario", "redis-primary", "--events", "100", "--rate", "15"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| redis-primary | 100 |")]
    assert len(rows) == 2, out  # the scenario's own row, then the table's
    lost = rows[-1].split("|")[5].strip()
    assert lost == "0", out
    logs = next(line for line in out.splitlines() if "logs in " in line).rsplit("logs in ", 1)[1]
    assert not Path(logs).exists()  # the cluster's directory, with the run's, is gone


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """The private cluster, up for this module's tests and down afterwards."""
    state = tmp_path_factory.mktemp("cluster") / "state.json"
    running = up(state)
    try:
        yield running, state
    finally:
        down(running, state)


def test_the_cluster_has_a_postgresql_of_its_own(cluster: tuple[Cluster, Path]) -> None:
    running, _ = cluster
    url = running.env()["HUB_DATABASE_URL"]
    assert f"127.0.0.1:{running.postgres_port}/" in url
    assert running.postgres_port != 5432
    engine = sqlalchemy.create_engine(url.rsplit("/", 1)[0] + "/postgres")
    try:
        with engine.connect() as connection:
            directory = connection.execute(sqlalchemy.text("SHOW data_directory")).scalar_one()
    finally:
        engine.dispose()
    assert str(directory).startswith(running.directory)


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
