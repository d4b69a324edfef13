"""The hub's ingress (and, for ``make profile``, a worker) as the benchmark runs them: ``python -m bench.hubproc``.

``ingress [--profile-out FILE]`` runs exactly what ``hub serve`` runs (settings from ``HUB_*``, sources
from ``HUB_SOURCES_FILE``, ``hub.cli.compose.build_app`` + ``build_ingress``, uvicorn in the main thread, no
access log) with one difference: the routing table is the hub's own (derived from ``actors.SPECS``) cut down to
the actors of the measured flow (``$BENCH_FLOW``, a name of :data:`bench.flows.FLOWS`; the fan-out by default),
so that the benchmark measures each flow alone (and ``all``, the hub's own routing of the load's type) whatever
else the hub routes there; with ``$BENCH_SETTLE_AT_ONCE=1`` each request settles before its response instead of
with the next request's round trip (``python -m bench.settles``). The workers still run every actor and route what
they emit as the hub does. With ``--profile-out`` it adds ``POST /_bench/profile/start`` and
``/_bench/profile/stop``: a pyinstrument profiler of the event loop's thread (every request's handling and the AMQP
and Redis client work; waits show as the loop's ``select``), saved to FILE on stop.

``worker --profile-out FILE`` runs what ``hub worker`` runs (routing does not matter to a worker: it
consumes every actor queue) plus :class:`bench.profile.MessageProfiler` as the outermost middleware,
enabled while the Redis key ``<prefix>:bench:profile`` exists; on SIGTERM the merged worker-thread
session is saved to FILE. The benchmark itself runs ``python -m hub worker``.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from bench.common import flag_key
from bench.flows import FANOUT, FLOW_ENV, FLOWS
from hub.runtime import Runtime
from hub.settings import environ, load_settings
from observability.logging import configure_logging

#: Set to ``1``: the ingress settles each request before its response (a round trip of its own).
SETTLE_AT_ONCE = "BENCH_SETTLE_AT_ONCE"
#: How often the profiled worker looks at the profiling flag.
FLAG_POLL_S = 0.02


def flow_actors() -> tuple[str, ...]:
    """The actors of the flow ``$BENCH_FLOW`` names (the fan-out when unset)."""
    name = os.environ.get(FLOW_ENV) or FANOUT.name
    if name not in FLOWS:
        raise SystemExit(f"{FLOW_ENV}={name!r}: not a flow of the benchmark ({', '.join(FLOWS)})")
    return FLOWS[name].actors


def flow_runtime() -> Runtime:
    """``hub.cli.compose.build_app`` from the ``HUB_*`` settings, its routing table restricted to the measured flow."""
    from hub.cli.compose import build_app

    settings = load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return build_app(settings, embedded=False, only=flow_actors())


def run_ingress(profile_out: Path | None, interval: float) -> None:
    """``hub serve`` on the flow's routing table, with the profiling routes when ``profile_out`` is given."""
    from hub.cli.compose import build_ingress, sources_from_settings
    from hub.ingress.server import run_server

    runtime = flow_runtime()
    app = build_ingress(runtime, sources=sources_from_settings(runtime.settings, environ()),
                        settle_at_once=os.environ.get(SETTLE_AT_ONCE) == "1")
    if profile_out is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=interval, async_mode="disabled")

        async def start() -> dict[str, bool]:
            if not profiler.is_running:
                profiler.start()  # in the event loop's thread: that thread is profiled
            return {"profiling": True}

        async def stop() -> dict[str, bool]:
            if profiler.is_running:
                profiler.stop()
            if profiler.last_session is not None:
                profiler.last_session.save(profile_out)
            return {"profiling": False}

        app.add_api_route("/_bench/profile/start", start, methods=["POST"])
        app.add_api_route("/_bench/profile/stop", stop, methods=["POST"])
    host, _, port = runtime.settings.http_bind.rpartition(":")
    run_server(app, host=host.strip("[]"), port=int(port))


def run_worker(profile_out: Path, threads: int, interval: float) -> None:
    """``hub worker`` with the message profiler."""
    from bench.profile import MessageProfiler
    from hub.workers import running_worker

    runtime = flow_runtime()
    profiler = MessageProfiler(interval=interval)
    runtime.broker.add_middleware(profiler, before=type(runtime.broker.middleware[0]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    key = flag_key(runtime.queue_prefix)
    try:
        with running_worker(runtime, threads=threads):
            while not stop.wait(FLAG_POLL_S):
                profiler.enabled = bool(runtime.redis.exists(key))
        session = profiler.session(f"worker threads ({threads}), while processing a message")
        if session is not None:
            session.save(profile_out)
    finally:
        runtime.close()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("ingress", "worker"))
    parser.add_argument("--profile-out", type=Path, help="profile, and save the pyinstrument session here")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (worker only)")
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval in seconds")
    args = parser.parse_args(argv)
    if args.role == "ingress":
        run_ingress(args.profile_out, args.interval)
    elif args.profile_out is None:
        parser.error("the worker role is for profiling: give --profile-out (the benchmark runs `hub worker`)")
    else:
        run_worker(args.profile_out, args.threads, args.interval)


if __name__ == "__main__":
    main()
