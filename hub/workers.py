"""Running Dramatiq workers in this process, for ``hub worker``, the demo and the tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq

from hub.outbox import OutboxRelay, SqlOutbox
from hub.probes import ServerWatch, servers_of, wait_for_servers
from hub.runtime import Runtime
from observability.logging import get_logger

log = get_logger(__name__)

#: Seconds between heartbeats (and server probes) of a running worker.
HEARTBEAT_S = 10.0


@contextmanager
def running_worker(runtime: Runtime, *, threads: int = 4) -> Iterator[dramatiq.Worker]:
    """Consume every actor queue of the runtime's broker, and relay what the outbox holds overdue, while
    the block runs."""
    worker = dramatiq.Worker(runtime.broker, worker_threads=threads, worker_timeout=100)
    relay = OutboxRelay(SqlOutbox(runtime.db), runtime.dispatcher)
    worker.start()
    relay.start()
    try:
        yield worker
    finally:
        relay.stop()
        worker.stop(timeout=10_000)


def run_worker(runtime: Runtime, *, threads: int, stop: threading.Event, heartbeat_file: Path | None = None) -> None:
    """Wait for RabbitMQ, Redis and the database (a real-mode worker never falls back to memory), bring the
    database's tables up to date, consume until ``stop`` is set, then shut down cleanly. ``heartbeat_file``
    is touched while every server answers (a container healthcheck reads its age)."""
    try:
        if not runtime.embedded:
            if not wait_for_servers(servers_of(runtime.settings), stop=stop):
                return
            log.info("RabbitMQ, Redis and the database answer; starting the consumers")
            runtime.upgrade_database()
        with running_worker(runtime, threads=threads):
            if heartbeat_file is None or runtime.embedded:
                stop.wait()
            else:
                _beat(ServerWatch(servers_of(runtime.settings)), heartbeat_file, stop)
    finally:
        runtime.close()


def _beat(watch: ServerWatch, path: Path, stop: threading.Event) -> None:
    while True:
        if not watch.check():
            path.touch()
        if stop.wait(HEARTBEAT_S):
            path.unlink(missing_ok=True)
            return
