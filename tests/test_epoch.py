"""A Redis that lost its data is noticed: the workers compare its epoch with the database's, say so once,
and the ingress's /readyz reports it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from structlog.testing import capture_logs

from hub.db import Database
from hub.epoch import RedisEpoch, epoch_key, loss_key
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.support.ingress import load, serving, write_sources
from tests.support.rabbit import wait_until


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis()
    yield connection
    connection.close()


def test_the_first_check_sets_the_epoch_and_later_ones_find_it(client: redis.Redis, database: Database,
                                                               prefix: str) -> None:
    epoch = RedisEpoch(client, database, prefix=prefix)
    assert epoch.check() == "new"
    assert client.get(epoch_key(prefix)) is not None
    assert epoch.check() == "ok" and client.get(loss_key(prefix)) is None


def test_a_redis_that_lost_its_data_is_said_once_and_noted_for_the_ingress(client: redis.Redis, database: Database,
                                                                          prefix: str) -> None:
    epoch = RedisEpoch(client, database, prefix=prefix)
    epoch.check()
    client.delete(epoch_key(prefix))  # what a restart with nothing persisted (or FLUSHALL) leaves of it
    with capture_logs() as logs:
        assert epoch.check() == "lost"
        assert epoch.check() == "ok"  # a new epoch is set: said once
    [line] = [entry for entry in logs if entry["log_level"] == "error"]
    assert "Redis lost its data" in line["event"]
    assert client.get(loss_key(prefix)) is not None and 0 < int(client.ttl(loss_key(prefix))) <= 86_400


def test_workers_finding_the_same_loss_together_report_it_once(client: redis.Redis, prefix: str,
                                                               database: Database) -> None:
    RedisEpoch(client, database, prefix=prefix).check()
    client.delete(epoch_key(prefix))
    verdicts: list[str] = []
    start = threading.Barrier(4)

    def check() -> None:
        start.wait()
        verdicts.append(RedisEpoch(redis.Redis(), database, prefix=prefix).check())

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(verdicts) == ["lost", "ok", "ok", "ok"]


def test_another_epoch_in_redis_is_reported_as_foreign(client: redis.Redis, database: Database, prefix: str) -> None:
    epoch = RedisEpoch(client, database, prefix=prefix)
    epoch.check()
    client.set(epoch_key(prefix), "someone-else")
    assert epoch.check() == "foreign"
    assert epoch.check() == "ok"


def test_readyz_says_when_a_worker_found_that_redis_lost_its_data(app: Runtime, tmp_path: Path) -> None:
    path, _ = write_sources(tmp_path)
    prefix = app.queue_prefix
    with serving(app, load(path)) as url, running_worker(app, threads=1):
        assert wait_until(lambda: app.redis.get(epoch_key(prefix)) is not None, timeout=30)  # the worker's chores
        assert httpx.get(f"{url}/readyz").json()["redis_data"] == "ok"
        app.redis.delete(epoch_key(prefix))
        assert "no epoch" in httpx.get(f"{url}/readyz").json()["redis_data"]
        assert wait_until(lambda: httpx.get(f"{url}/readyz").json()["redis_data"].startswith("lost at "),
                          timeout=30)
