"""The faults, one function per scenario. Each starts the load, breaks something while events flow, and says
when the fault is over (recovery is timed from there); :meth:`chaos.harness.Run.finish` does the counting.

Outages last :data:`OUTAGE_S`: long enough for every client of the server to notice (the ingress answers
503, the workers' consumers and stores reconnect with backoff), short enough to keep a scenario short.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pika

from chaos.harness import Run, Scenario
from simulators.kit.faults import FaultPlan

#: How long a stopped or killed server stays down.
OUTAGE_S = 5.0
#: How long every call to the simulated systems takes longer than the connectors wait (their read timeout is 5 s).
SLOW_S = 3.0


def _point(run: Run, fraction: float) -> int:
    return max(1, int(run.options.events * fraction))


def worker_kill(run: Run) -> None:
    """SIGKILL a worker chosen at random at random moments under load (one per 500 events, at least 3); a new
    one is started at once, as a supervisor would."""
    run.load()
    events = run.options.events
    kills = max(3, events // 500)
    for point in sorted(run.rng.sample(range(events // 10, events * 9 // 10), kills)):
        run.wait_accepted(point)
        time.sleep(run.rng.uniform(0.0, 0.5))
        run.hub.kill_worker(run.rng)
        run.hub.start_workers(1)
    run.fault_over()


def _outage(run: Run, down: Callable[[], None], up: Callable[[], None]) -> None:
    """Once 30% of the events are accepted, take a server ``down`` for :data:`OUTAGE_S`, then bring it ``up``."""
    run.load()
    run.wait_accepted(_point(run, 0.3))
    down()
    time.sleep(OUTAGE_S)
    up()
    run.fault_over()


def broker_stop(run: Run) -> None:
    """Stop RabbitMQ gracefully under load, start it again after the outage."""
    _outage(run, run.servers.rabbit.stop, run.servers.rabbit.start)


def broker_kill(run: Run) -> None:
    """SIGKILL RabbitMQ under load, start it again after the outage (it recovers its queues from disk)."""
    _outage(run, run.servers.rabbit.kill, run.servers.rabbit.start)


def redis_stop(run: Run) -> None:
    """Stop Redis gracefully under load (it saves its data), start it again with that data."""
    _outage(run, run.servers.redis.stop, run.servers.redis.start)


def redis_empty(run: Run) -> None:
    """SIGKILL Redis under load and start it empty: every lease, done mark, lock and flight record is gone."""
    _outage(run, run.servers.redis.kill, lambda: run.servers.redis.start(empty=True))


def postgres_restart(run: Run) -> None:
    """Restart PostgreSQL under load twice: a fast shutdown (sessions ended), then an immediate one (no
    checkpoint: recovered from the WAL), each down for the outage."""
    run.load()
    for fraction, mode in ((0.25, "fast"), (0.5, "immediate")):
        run.wait_accepted(_point(run, fraction))
        run.servers.postgres.stop(mode=mode)
        time.sleep(OUTAGE_S)
        run.servers.postgres.start()
    run.fault_over()


def downstream(run: Run) -> None:
    """SharePoint and the ERP misbehave under load: 2% of calls answer 500, 2% answer 429 with Retry-After, 0.2%
    are ghosts (the write is applied, the answer never comes: the connector times out); then for a while every
    call is slower than the connectors wait (each times out, and is applied late)."""
    run.load()
    run.wait_accepted(_point(run, 0.2))
    unreliable = FaultPlan(error_rate=0.02, throttle_rate=0.02, ghost_rate=0.002, retry_after_s=1, ghost_hold_s=10.0,
                           seed=7)
    run.sandbox.set_graph_faults(unreliable)
    run.sandbox.set_erp_faults(unreliable)
    run.wait_accepted(_point(run, 0.6))
    slow = FaultPlan(latency_s=5.5)
    run.sandbox.set_graph_faults(slow)
    run.sandbox.set_erp_faults(slow)
    time.sleep(SLOW_S)
    run.sandbox.set_graph_faults(FaultPlan())
    run.sandbox.set_erp_faults(FaultPlan())
    run.fault_over()


def poison(run: Run) -> None:
    """Poison messages among the load, put straight on the actors' queues as a broken publisher would: bytes
    that are no JSON, JSON that is no message, and messages whose event cannot be decoded (one in 100 events,
    at least 6). Each must be parked in its queue's dead letters, and nothing else."""
    run.load()
    count = max(6, run.options.events // 100)
    actors = ("provisioning", "master_data", "fanout")
    for i in range(count):
        run.wait_accepted(_point(run, 0.1 + 0.8 * i / count))
        queue = f"{run.hub.prefix}.{actors[i % len(actors)]}"
        _publish_raw(run.servers.rabbit.url, queue, _poison_body(i % 3, actors[i % len(actors)], queue))
    run.expected_dead = count
    run.fault_over()


def _poison_body(kind: int, actor: str, queue: str) -> bytes:
    if kind == 0:
        return b"\x00\xffnot json at all"
    if kind == 1:
        return json.dumps({"hello": "not a message"}).encode()
    message = {"queue_name": queue, "actor_name": actor, "args": [{"not": "an event"}], "kwargs": {},
               "options": {}, "message_id": str(uuid.uuid4()), "message_timestamp": int(time.time() * 1000)}
    return json.dumps(message).encode()


def _publish_raw(url: str, queue: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        connection.close()


#: Every scenario by name, in the order they run.
SCENARIOS: dict[str, Scenario] = {
    "worker-kill": worker_kill,
    "broker-stop": broker_stop,
    "broker-kill": broker_kill,
    "redis-stop": redis_stop,
    "redis-empty": redis_empty,
    "postgres-restart": postgres_restart,
    "downstream": downstream,
    "poison": poison,
}
