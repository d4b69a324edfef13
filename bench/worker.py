"""A hub worker process for the dispatch benchmark: ``python -m bench.worker --prefix P --subscribers K``.

It builds the full app (``hub.cli.compose.build_app``, every hub middleware), declares the benchmark actors,
consumes until SIGTERM, and reports its counters to Redis every 50 ms so the publisher can read how
many messages this process enqueued (the router design's second hop).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from bench.harness import EnqueueCounter, bench_settings, declare_all, ready_key, stats_key
from hub.cli.compose import build_app
from hub.workers import running_worker
from observability.logging import configure_logging

#: How often the counters are written to Redis.
REPORT_INTERVAL_S = 0.05


def main(argv: list[str] | None = None) -> None:
    """Run one worker until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    settings = bench_settings(args.prefix)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    runtime = build_app(settings, embedded=False)
    counter = EnqueueCounter()
    runtime.broker.add_middleware(counter)
    declare_all(runtime, args.subscribers)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    pid = os.getpid()
    stats = stats_key(args.prefix, pid)
    try:
        with running_worker(runtime, threads=args.threads):
            runtime.redis.hset(stats, mapping=counter.snapshot())
            runtime.redis.set(ready_key(args.prefix, pid), 1, ex=3600)
            while not stop.wait(REPORT_INTERVAL_S):
                runtime.redis.hset(stats, mapping=counter.snapshot())
        runtime.redis.hset(stats, mapping=counter.snapshot())
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
