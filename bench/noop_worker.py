"""Baseline (b): a bare Dramatiq worker running a no-op actor: ``python -m bench.noop_worker --prefix P``.

No hub middleware, no Redis per message, no side effect: the broker is the hub's (same quorum queue
declaration, same delivery limit, confirmed publishing) with only Dramatiq's own middleware that the hub
keeps (``hub.broker.base_middleware``), and the actor ignores its argument. What the hub does on top of
that (tracing, log context, flight record, retries, idempotency claims, the fan-out's confirmed topic
publish) is what the end-to-end ratio to this baseline shows.

The process counts processed messages in memory and writes, every 10 ms, the count and the monotonic
time of the last one to the Redis hash ``<prefix>:bench:noop:<pid>`` (no Redis call per message).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Any

import dramatiq
import redis

from bench.common import AMQP_URL, REDIS_URL
from hub.broker import HubRabbitmqBroker, base_middleware

#: The no-op actor's name.
ACTOR = "bench_noop"
#: How often the counters are written to Redis.
REPORT_INTERVAL_S = 0.01


def queue_name(prefix: str) -> str:
    """The no-op actor's queue."""
    return f"{prefix}.{ACTOR}"


def stats_key(prefix: str, pid: int) -> str:
    """Hash of one worker process's counters: ``count`` and ``last`` (``time.monotonic()`` of the last message)."""
    return f"{prefix}:bench:noop:{pid}"


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.last = 0.0

    def hit(self) -> None:
        now = time.monotonic()
        with self.lock:
            self.count += 1
            self.last = now

    def snapshot(self) -> dict[str | bytes, float]:
        with self.lock:
            return {"count": self.count, "last": self.last}


def build(prefix: str, counter: _Counter) -> dramatiq.Broker:
    """The bare broker with the no-op actor declared on it."""
    broker = HubRabbitmqBroker(url=AMQP_URL, delivery_limit=5, middleware=base_middleware())

    def bench_noop(event_body: dict[str, Any]) -> None:
        """Do nothing but count."""
        counter.hit()

    dramatiq.actor(broker=broker, actor_name=ACTOR, queue_name=queue_name(prefix))(bench_noop)
    return broker


def main(argv: list[str] | None = None) -> None:
    """Consume the no-op queue until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    counter = _Counter()
    broker = build(args.prefix, counter)
    client: redis.Redis[bytes] = redis.Redis.from_url(REDIS_URL)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    key = stats_key(args.prefix, os.getpid())
    # as hub.workers.running_worker, on the bare broker
    worker = dramatiq.Worker(broker, worker_threads=args.threads, worker_timeout=100)
    try:
        worker.start()
        try:
            client.hset(key, mapping=counter.snapshot())
            client.expire(key, 3600)
            while not stop.wait(REPORT_INTERVAL_S):
                client.hset(key, mapping=counter.snapshot())
        finally:
            worker.stop(timeout=10_000)
        client.hset(key, mapping=counter.snapshot())
    finally:
        broker.close()
        client.close()


if __name__ == "__main__":
    main()
