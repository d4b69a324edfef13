"""Running Dramatiq workers in this process, for ``hub worker``, the demo and the tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq

from hub.epoch import RedisEpoch
from hub.errors import BrokerUnavailable, HubError
from hub.exposition import worker_metrics
from hub.outbox import OutboxRelay, SqlOutbox
from hub.probes import Server, servers_of, wait_for_servers
from hub.runtime import Runtime
from hub.scheduler import Scheduler
from observability.logging import get_logger

log = get_logger(__name__)

#: Seconds between heartbeats (and server probes) of a running worker.
HEARTBEAT_S = 10.0
#: Seconds between rounds of a worker's chores (outbox relay, Redis epoch).
CHORES_S = 5.0


@contextmanager
def running_worker(runtime: Runtime, *, threads: int = 4) -> Iterator[dramatiq.Worker]:
    """Consume every actor queue of the runtime's broker, and relay what the outbox holds overdue, while
    the block runs."""
    worker = dramatiq.Worker(runtime.broker, worker_threads=threads, worker_timeout=100)
    chores = Chores([OutboxRelay(SqlOutbox(runtime.db), runtime.dispatcher).run_once,
                     RedisEpoch(runtime.redis, runtime.db, prefix=runtime.queue_prefix).check])
    worker.start()
    chores.start()
    try:
        yield worker
    finally:
        chores.stop()
        worker.stop(timeout=10_000)


class Chores:
    """What a worker process does besides consuming, every ``every_s`` in a daemon thread: relay the outbox's
    overdue events, check that Redis kept its data. An outage pauses them with one line, and one when
    they resume."""

    def __init__(self, chores: list[Callable[[], object]], *, every_s: float = CHORES_S) -> None:
        self.chores, self.every_s = chores, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hub-chores", daemon=True)
        self._failing = False

    def start(self) -> None:
        """Start the thread; the first round runs at once."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it finishes its round)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> None:
        """One round of every chore."""
        try:
            for chore in self.chores:
                chore()
        except HubError as exc:  # the database, Redis or the broker is away: next round
            if not self._failing:
                log.warning("worker chores paused (outbox relay, Redis epoch)", reason=str(exc))
            self._failing = True
        else:
            if self._failing:
                log.warning("worker chores resumed")
            self._failing = False

    def _loop(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self.every_s):
                return


def run_worker(runtime: Runtime, *, threads: int, stop: threading.Event, heartbeat_file: Path | None = None,
               serve_metrics: bool = True) -> None:
    """Wait for RabbitMQ, Redis and the database (a real-mode worker never falls back to memory), bring the
    database's tables up to date, consume until ``stop`` is set (running the runtime's checks at start once the
    consumers run, see :func:`start_checks`), then shut down cleanly. ``heartbeat_file`` is touched while every
    server answers (a container healthcheck reads its age).

    Raises :class:`~hub.errors.CredentialsRefused` once a server refused the credentials a few times in a
    row (at start or later): the worker stops rather than retry forever.
    """
    for link in runtime.links:
        link.on_refused(stop.set)
    metrics = worker_metrics(runtime) if serve_metrics else None
    scheduler = Scheduler(runtime.jobs, runtime.redis, prefix=runtime.queue_prefix) \
        if runtime.settings.scheduler == "on" else None
    try:
        _consume(runtime, threads=threads, stop=stop, heartbeat_file=heartbeat_file, scheduler=scheduler)
    finally:
        if scheduler is not None:
            scheduler.stop()
        if metrics is not None:
            metrics.stop()
        runtime.close()
    refused = next((link.refused for link in runtime.links if link.refused is not None), None)
    if refused is not None:
        raise refused


def _consume(runtime: Runtime, *, threads: int, stop: threading.Event, heartbeat_file: Path | None,
             scheduler: Scheduler | None = None) -> None:
    if not runtime.embedded:
        if not wait_for_servers(servers_of(runtime.links), stop=stop):
            return
        log.info("RabbitMQ, Redis and the database answer; starting the consumers")
        runtime.upgrade_database()
        try:
            runtime.topics.declare()  # consumers can bind to the exchange before its first event
        except BrokerUnavailable as exc:  # gone again since the probe: the first publish declares it
            log.warning("the topic exchange is not declared yet", reason=str(exc))
    with running_worker(runtime, threads=threads):
        start_checks(runtime)
        if scheduler is not None:
            scheduler.start()
        if heartbeat_file is None or runtime.embedded:
            stop.wait()
        else:
            _beat(servers_of(runtime.links), heartbeat_file, stop)


def start_checks(runtime: Runtime) -> threading.Thread:
    """Run the runtime's checks at worker start (``Runtime.at_worker_start``) in a daemon thread, so a system
    that is slow to answer delays no consumer; a check that fails is logged, and the worker goes on."""
    def run() -> None:
        for check in runtime.at_worker_start:
            try:
                check(runtime.dispatcher, runtime.registry)
            except Exception as exc:  # a check at start never stops the worker
                log.warning("a check at worker start failed", check=type(check).__name__, reason=str(exc))

    thread = threading.Thread(target=run, name="hub-worker-start", daemon=True)
    thread.start()
    return thread


def _beat(servers: list[Server], path: Path, stop: threading.Event) -> None:
    while True:
        if all([server.check() is None for server in servers]):
            path.touch()
        if stop.wait(HEARTBEAT_S):
            path.unlink(missing_ok=True)
            return
