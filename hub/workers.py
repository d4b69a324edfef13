"""Running Dramatiq workers in this process, for ``hub worker``, the demo and the tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq

from hub.runtime import Runtime


@contextmanager
def running_worker(runtime: Runtime, *, threads: int = 4) -> Iterator[dramatiq.Worker]:
    """Consume every actor queue of the runtime's broker while the block runs."""
    worker = dramatiq.Worker(runtime.broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)


def run_worker(runtime: Runtime, *, threads: int, stop: threading.Event) -> None:
    """Consume until ``stop`` is set, then shut down cleanly."""
    with running_worker(runtime, threads=threads):
        stop.wait()
    runtime.close()
