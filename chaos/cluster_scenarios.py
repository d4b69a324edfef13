"""Failover under load on the private cluster of :mod:`chaos.cluster`: ``python -m chaos.cluster scenario
rabbit-leader|redis-primary [--events N] [--rate R]`` on a cluster that is up, ``python -m chaos.cluster run``
on one of its own.

The benchmark's flow runs against the cluster: the ingress (``bench.hubproc ingress``: ``hub serve`` routing
the ERP's project-created event to the fan-out) and two ``hub worker`` processes, given every node's URL in
``HUB_AMQP_URL``, the sentinels in ``HUB_REDIS_URL`` and the cluster's own PostgreSQL in ``HUB_DATABASE_URL``.
N signed events are posted at a steady rate through the HTTP edge (:mod:`bench.loadgen`), one request each,
never re-sent. Once a third of them has come out on
``hub.events``, one server dies:

- ``rabbit-leader``: ``kill -9`` of the node leading the busiest of the run's quorum queues (the most
  messages; the fan-out's queue, which the load goes to, when none holds any); restarted after the run;
- ``redis-primary``: SIGKILL of the Redis primary; the sentinels promote the replica. The old primary is
  started again after the run, and the sentinels make it a replica.

A durable quorum queue bound to ``hub.events`` (so it outlives any one node) counts what comes out: the
fan-out's copy of each event carries the message id ``side_effect_key(event id, "fanout", "publish")``.

- **accepted**: requests answered 202; **refused**: any other answer (the sender knows, and would re-send);
- **lost**: accepted events whose fan-out copy never came out (waiting until none is missing, or none has
  come for :data:`STALL_S`);
- **duplicated**: fan-out copies published again for an event already out (a new publish with the same
  message id, not a redelivery to this counter after its own reconnect);
- **resume**: seconds from the kill to the first completion (fan-out copy out) of an event sent after it.

A scenario passes when none is lost and work resumed after the kill (an event sent after it came out);
``python -m chaos.cluster`` exits non-zero otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pika
import pika.exceptions
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.connection import make_url

from bench.loadgen import EVENT_TYPE, RawHttpClient, Request, RequestFactory, fanout_message_id, open_loop
from bench.procs import Proc, new_webhook_secret, start_hub_workers, start_ingress, stop_all, write_sources_file
from chaos.cluster import (
    Cluster,
    await_node,
    await_sentinels,
    kill_node,
    kill_pid,
    primary_port,
    queue_leaders,
    start_node,
    start_redis,
)
from hub.db import connect_database, drop_schema
from hub.endpoints import amqp_parameters
from hub.store import connect_redis
from hub.topics import exchange_name

#: Waiting for the last copies ends when none has come out for this long: what is missing then is lost.
STALL_S = 90.0
#: The hub's settings for the run: retries soon after an outage (the defaults wait up to 15 min).
HUB_SETTINGS = {"HUB_MIN_BACKOFF_MS": "200", "HUB_MAX_BACKOFF_MS": "5000"}


@dataclass
class ScenarioResult:
    """What one scenario measured."""

    scenario: str
    sent: int
    accepted: int
    refused: int
    lost: int
    duplicated: int
    resume_s: float | None
    killed: str
    #: Refusals by status (or error), for the report.
    refusals: dict[str, int] = field(default_factory=dict)

    HEADER = ("| scenario | events sent | accepted (202) | refused | lost | duplicated | resume after the kill "
              "| killed |\n|---|--:|--:|--:|--:|--:|--:|---|")

    @property
    def passed(self) -> bool:
        """The targets: nothing accepted lost, and work resumed after the kill."""
        return self.lost == 0 and self.resume_s is not None

    def row(self) -> str:
        """The result as a Markdown table row."""
        resume = "never" if self.resume_s is None else f"{self.resume_s:.1f} s"
        return (f"| {self.scenario} | {self.sent} | {self.accepted} | {self.refused} | {self.lost} "
                f"| {self.duplicated} | {resume} | {self.killed} |")


class Arrivals:
    """Counts the fan-out copies coming out on ``hub.events``, from a quorum queue bound to it, reconnecting to
    the next node when the one it consumes from dies."""

    def __init__(self, urls: str, queue: str, *, exchange: str) -> None:
        self._urls = [p.strip() for p in urls.split(",")]
        self.queue, self.exchange = queue, exchange
        self.first: dict[str, float] = {}  # message id -> monotonic time of its first copy
        self.duplicated = 0
        self.changed = asyncio.Event()

    def declare(self) -> None:
        """Declare the queue and bind it to the exchange, before anything is published."""
        connection = pika.BlockingConnection(amqp_parameters(",".join(self._urls)))
        try:
            channel = connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(self.queue, self.exchange, routing_key=EVENT_TYPE)
        finally:
            connection.close()

    async def run(self) -> None:
        """Consume until cancelled, moving to the next node when a connection ends."""
        turn = 0
        while True:
            url = self._urls[turn % len(self._urls)]
            turn += 1
            with contextlib.suppress(aio_pika.exceptions.AMQPException, OSError, TimeoutError):
                await self._consume(url)
            await asyncio.sleep(0.2)

    async def _consume(self, url: str) -> None:
        connection = aio_pika.Connection(make_url(url))
        ended = asyncio.Event()
        try:
            await connection.connect(timeout=5)
            connection.close_callbacks.add(lambda *_: ended.set())
            channel = await connection.channel()
            channel.close_callbacks.add(lambda *_: ended.set())
            await channel.set_qos(prefetch_count=500)
            queue = await channel.declare_queue(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
            await queue.consume(self._on_message)
            await ended.wait()
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        key = message.message_id or ""
        if key in self.first:
            self.duplicated += not message.redelivered  # a redelivery is this counter's own reconnect
        else:
            self.first[key] = time.monotonic()
            self.changed.set()
        await message.ack()

    async def wait_for(self, count: int) -> None:
        """Until at least ``count`` distinct copies came out."""
        while len(self.first) < count:
            self.changed.clear()
            await self.changed.wait()

    async def settle(self, expected: set[str], *, stall_s: float = STALL_S) -> None:
        """Until every ``expected`` message id came out, or none has come for ``stall_s``."""
        while not expected <= self.first.keys():
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=stall_s)
            except TimeoutError:
                return


# -- the failures ----------------------------------------------------------------------------------------


def kill_busiest_leader(cluster: Cluster, prefix: str) -> tuple[str, float, Callable[[], None]]:
    """``kill -9`` the node leading the busiest of the run's quorum queues: (what, when, how to restore it)."""
    queues = queue_leaders(cluster, f"{prefix}.")
    name, leader, messages = max(queues, key=lambda q: (q[2], q[0] == f"{prefix}.fanout"))
    node = cluster.node(leader)
    led = sum(1 for q in queues if q[1] == leader)
    killed_at = time.monotonic()
    kill_node(node)
    what = f"{leader}, leading {name} ({messages} messages) and {led - 1} other of the run's {len(queues)} queues"

    def restore() -> None:
        start_node(cluster, node)
        await_node(cluster, node)

    return what, killed_at, restore


def kill_redis_primary(cluster: Cluster, _prefix: str) -> tuple[str, float, Callable[[], None]]:
    """SIGKILL the Redis primary; the sentinels promote the replica: (what, when, how to restore it)."""
    port = primary_port(cluster)
    if port is None:
        raise RuntimeError("no sentinel names a primary")
    killed_at = time.monotonic()
    kill_pid(cluster.pids[str(port)])

    def restore() -> None:
        start_redis(cluster, port)  # the sentinels make it a replica of the new primary
        await_sentinels(cluster)

    return f"Redis primary 127.0.0.1:{port}", killed_at, restore


# -- a run -----------------------------------------------------------------------------------------------


def run_scenario(name: str, cluster: Cluster, *, state: Path | None, events: int, rate: float) -> ScenarioResult:
    """Run one scenario on ``cluster`` (saving its new process ids to ``state``), print its row and return it."""
    prefix = f"c{uuid.uuid4().hex[:10]}"
    work_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=cluster.directory))
    arrivals = Arrivals(cluster.amqp_url, f"chaos.{prefix}.arrivals", exchange=exchange_name(prefix))
    arrivals.declare()
    secret = new_webhook_secret()
    env = {**cluster.env(), **HUB_SETTINGS}
    procs: list[Proc] = []
    restores: list[Callable[[], None]] = []
    try:
        ingress = start_ingress(prefix, work_dir, secret=secret, sources_file=write_sources_file(work_dir),
                                extra_env=env)
        procs.append(ingress.proc)
        procs += start_hub_workers(prefix, work_dir, 2, threads=4, extra_env=env, amqp_url=cluster.amqp_url)
        print(f"{name}: {events} events at {rate:g}/s; ingress {ingress.url}, 2 workers; logs in {work_dir}",
              flush=True)
        result = asyncio.run(_load(name, cluster, prefix, ingress.url, secret, arrivals, events, rate, restores))
        for proc in procs:
            if not proc.alive():
                print(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
    finally:
        stop_all(procs)
        for restore in restores:  # the killed server runs again, whatever happened
            restore()
        if state is not None:
            cluster.save(state)
        _clean(cluster, prefix, arrivals.queue)
    print(ScenarioResult.HEADER)
    print(result.row())
    if result.refusals:
        print("refused: " + ", ".join(f"{k} x{v}" for k, v in sorted(result.refusals.items())))
    return result


async def _load(name: str, cluster: Cluster, prefix: str, url: str, secret: str, arrivals: Arrivals, events: int,
                rate: float, restores: list[Callable[[], None]]) -> ScenarioResult:
    client = RawHttpClient(url, 16)
    factory = RequestFactory(secret, tag=prefix)
    requests: list[Request] = []

    def signed_when_sent() -> Iterator[Request]:
        # Signed as it goes out: a signature made at the start is refused (401) once the run outlasts the five
        # minutes a Standard Webhooks timestamp is accepted for (10,000 events at 20/s take 500 s).
        for _ in range(events):
            requests.append(factory.request(1, client))
            yield requests[-1]

    counting = asyncio.create_task(arrivals.run())

    async def fail_a_third_of_the_way() -> tuple[str, float]:
        await arrivals.wait_for(max(events // 3, 1))
        kill = kill_busiest_leader if name == "rabbit-leader" else kill_redis_primary
        killed, killed_at, restore = await asyncio.to_thread(kill, cluster, prefix)
        restores.append(restore)
        return killed, killed_at

    failing = asyncio.create_task(fail_a_third_of_the_way())
    try:
        load = await open_loop(client, signed_when_sent(), rate=rate, max_duration_s=3 * events / rate + 60)
        try:
            killed, killed_at = await asyncio.wait_for(asyncio.shield(failing), timeout=STALL_S)
        except TimeoutError:
            raise RuntimeError(f"a third of the events never came out ({len(arrivals.first)}): nothing was killed; "
                               "see the processes' logs") from None
        accepted = {fanout_message_id(event_id): outcome.sent
                    for request, outcome in zip(requests, load.outcomes, strict=False) if outcome.status == 202
                    for event_id in request.event_ids}
        await arrivals.settle(set(accepted))
    finally:
        counting.cancel()
        failing.cancel()
        await asyncio.gather(counting, failing, return_exceptions=True)
        await client.aclose()
    after = [arrivals.first[key] - killed_at for key, sent in accepted.items()
             if sent >= killed_at and key in arrivals.first]
    result = ScenarioResult(
        scenario=name, sent=len(load.outcomes), accepted=len(accepted), refused=len(load.outcomes) - len(accepted),
        lost=sum(1 for key in accepted if key not in arrivals.first), duplicated=arrivals.duplicated,
        resume_s=min(after) if after else None, killed=killed, refusals=load.failures)
    return result


def _clean(cluster: Cluster, prefix: str, arrivals_queue: str) -> None:
    """Remove the run's queues, Redis keys and tables (what cannot be removed is said, not raised)."""
    try:
        quorum = [q[0] for q in queue_leaders(cluster, f"{prefix}.")]
        names = [*quorum, *(f"{q}.XQ" for q in quorum if not q.endswith(".DQ")), arrivals_queue]
        connection = pika.BlockingConnection(amqp_parameters(cluster.amqp_url))
        try:
            channel = connection.channel()
            for queue in names:
                with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                    channel.queue_delete(queue)
        finally:
            connection.close()
        client = connect_redis(cluster.redis_url, embedded=False)
        try:
            keys = list(client.scan_iter(f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
        database = connect_database(cluster.database_url, prefix=prefix, embedded=False)
        try:
            drop_schema(database)
        finally:
            database.close()
    except Exception as exc:  # the run's figures matter more than its leftovers on a private cluster
        print(f"cleanup of {prefix}: {type(exc).__name__}: {exc}")
