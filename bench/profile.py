"""Profile the end-to-end fan-out flow through the HTTP ingress: ``python -m bench.profile [--events N]``.

Past 400 lines on purpose: the profiler harness and the attribution of its samples to components belong
together.

Three processes, as in production: the ingress and one worker (``bench/hubproc.py``: what ``hub serve``
and ``hub worker`` run, on the fan-out flow's routing table, with a profiler inside each) and this process,
which posts N signed single-event requests (8 concurrent, like ``bench.suite``) and waits until a subscriber bound to
``hub.events`` received the fan-out's publish of each. Profiling covers only that phase (after a warm-up):

- the ingress: its event loop's thread (pyinstrument, 1 ms, async mode off): every request's handling and
  the AMQP and Redis client work; the loop waiting for I/O shows as ``select`` (idle);
- the worker: each worker thread while it processes a message (every middleware hook and the actor),
  merged into one tree; wall-clock samples, so waits on Redis and RabbitMQ replies count. The consumer
  threads (pika I/O) are not in it.

Writes ``profile/profile.html`` (both trees), ``profile/profile.txt`` (both trees, a breakdown by hub
component, and the flat self time per function) and ``profile/profile.json`` (the breakdown), and prints
the breakdown and the top three costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import redis
from dramatiq.middleware import Middleware
from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session

from bench import loadgen
from bench.common import (
    REDIS_URL,
    ROOT,
    BenchError,
    cleanup,
    cpu_of,
    exit_on_sigterm,
    flag_key,
    new_prefix,
    server_pids,
    write_report,
)
from bench.procs import (
    Proc,
    hub_env,
    new_webhook_secret,
    spawn,
    start_ingress,
    stop_all,
    wait_consumers,
    write_sources_file,
)

#: Where the profile goes (git-ignored).
PROFILE_DIR = ROOT / "profile"
#: Events posted before profiling starts (connections, queue declarations, caches).
WARMUP_EVENTS = 300
#: Concurrent single-event requests.
CONCURRENCY = 8


class MessageProfiler(Middleware):
    """Profiles each worker thread while it processes a message (outermost middleware: all hooks included)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.enabled = False
        self._local = threading.local()
        self._lock = threading.Lock()
        self._profilers: list[Profiler] = []

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Start (or resume) this thread's profiler."""
        if not self.enabled:
            return
        profiler: Profiler | None = getattr(self._local, "profiler", None)
        if profiler is None:
            profiler = Profiler(interval=self.interval, async_mode="disabled")
            self._local.profiler = profiler
            with self._lock:
                self._profilers.append(profiler)
        if not profiler.is_running:
            profiler.start()

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        """Pause this thread's profiler (its sessions accumulate)."""
        self._pause()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Pause this thread's profiler after a skipped message."""
        self._pause()

    def _pause(self) -> None:
        profiler: Profiler | None = getattr(self._local, "profiler", None)
        if profiler is not None and profiler.is_running:
            profiler.stop()

    def session(self, label: str) -> Session | None:
        """Every worker thread's samples merged into one tree named ``label``."""
        with self._lock:
            sessions = [p.last_session for p in self._profilers if p.last_session is not None]
        merged: Session | None = None
        for session in sessions:
            merged = session if merged is None else Session.combine(merged, session)
        return None if merged is None else relabel(merged, label)


def relabel(session: Session, label: str) -> Session:
    """The session with its root (thread) frame renamed to ``label``, so that threads merge into one tree."""
    root = f"{label}\x00<thread>\x000"
    return Session(
        frame_records=[([root, *stack[1:]], t) for stack, t in session.frame_records],
        start_time=session.start_time,
        duration=session.duration,
        min_interval=session.min_interval,
        max_interval=session.max_interval,
        sample_count=session.sample_count,
        start_call_stack=[root, *session.start_call_stack[1:]],
        target_description=label,
        cpu_time=session.cpu_time,
        sys_path=session.sys_path,
        sys_prefixes=session.sys_prefixes,
    )


# -- where the time goes, by hub component -----------------------------------------------------------
#: (component, predicate on (qualified function name, file)) for the ingress's event-loop thread. A sample
#: goes to the innermost frame of its stack that matches a rule; the order only breaks ties in one frame.
Rule = tuple[str, Callable[[str, str], bool]]


def _fn(*names: str) -> Callable[[str, str], bool]:
    return lambda qualname, file: qualname in names


def _file(*parts: str) -> Callable[[str, str], bool]:
    return lambda qualname, file: any(p in file for p in parts)


INGRESS_RULES: list[Rule] = [
    ("request handler, other (body read, response)", _fn("publish_events", "read_body", "_accept")),
    ("authentication: HMAC signature", _fn("verify", "authenticate")),
    ("CloudEvents binding, schema validation, Avro encoding", _fn("read_events")),
    ("admission: replay guard, quota, claims (Redis, one Lua script)", _fn("Admission.admit")),
    ("accepted-outcome store: settle or release (Redis, one script), a held claim retried",
     _fn("OutcomeStore.claim", "OutcomeStore.settle", "OutcomeStore.release")),
    ("confirmed publish (aio-pika)", _fn("AsyncEventPublisher.publish", "AsyncEventPublisher._confirmed")),
    ("tracing (spans, context)", _fn("publish_span", "_server_span", "inject_message_context")),
]
#: Where a sample goes when no rule above matches its stack (innermost match again).
INGRESS_FALLBACK: list[Rule] = [
    ("idle: event loop waiting for I/O", _fn("select", "epoll.poll", "KqueueSelector.select", "EpollSelector.select")),
    ("HTTP server (uvicorn, httptools)", _file("uvicorn/", "h11/", "httptools/", "uvloop/")),
    ("web framework (Starlette, FastAPI, anyio)", _file("starlette/", "fastapi/", "anyio/")),
    ("AMQP client I/O outside a publish (aiormq, pamqp: frames, confirms)", _file("aiormq/", "pamqp/", "aio_pika/")),
    ("Redis client I/O outside a hub call (redis.asyncio)", _file("redis/")),
    ("logging", _file("structlog/", "logging/")),
]

WORKER_RULES: list[Rule] = [
    ("fan-out actor, other", _fn("fanout")),
    ("fan-out: event decode and schema validation", _fn("from_message_body", "validate_event")),
    ("fan-out: confirmed topic publish (pika)", _fn("RabbitTopicBus.publish")),
    ("fan-out: matter verdict (PostgreSQL, one statement)", _fn("SqlMatterWalls.learn", "SqlMatterWalls.walled")),
    ("tracing (spans, context)", _fn("publish_span")),
    ("tracing middleware", lambda q, f: q.startswith("TracingMiddleware.")),
    ("log context middleware", lambda q, f: q.startswith("LogContextMiddleware.")),
    ("flight record middleware (Redis)", lambda q, f: q.startswith("FlightRecorderMiddleware.")),
    ("retries middleware", lambda q, f: q.startswith("HubRetries.")),
    ("idempotency claims and done marks (Redis)", lambda q, f: q.startswith("IdempotencyMiddleware.")),
    ("closing writes: done mark and hops in one pipeline (Redis)", lambda q, f: q.startswith("ClosingWrites.")),
    ("profiler overhead", lambda q, f: q.startswith("MessageProfiler.")),
]
WORKER_FALLBACK: list[Rule] = [("Dramatiq: message handling, acks", _file("dramatiq/"))]

#: Components summed into the groups the top three costs are named by (others stay on their own).
GROUPS: dict[str, str] = {
    "HTTP server (uvicorn, httptools)": "HTTP stack (uvicorn/httptools, Starlette/FastAPI, handler)",
    "web framework (Starlette, FastAPI, anyio)": "HTTP stack (uvicorn/httptools, Starlette/FastAPI, handler)",
    "request handler, other (body read, response)": "HTTP stack (uvicorn/httptools, Starlette/FastAPI, handler)",
    "admission: replay guard, quota, claims (Redis, one Lua script)":
        "Redis round trips (admission script, settle script)",
    "accepted-outcome store: settle or release (Redis, one script), a held claim retried":
        "Redis round trips (admission script, settle script)",
    "Redis client I/O outside a hub call (redis.asyncio)": "Redis round trips (admission script, settle script)",
    "AMQP client I/O outside a publish (aiormq, pamqp: frames, confirms)":
        "confirmed publish and its confirm frames (aio-pika, aiormq)",
    "confirmed publish (aio-pika)": "confirmed publish and its confirm frames (aio-pika, aiormq)",
    "idempotency claims and done marks (Redis)": "Redis round trips (idempotency claim and done mark, flight record)",
    "flight record middleware (Redis)": "Redis round trips (idempotency claim and done mark, flight record)",
    "closing writes: done mark and hops in one pipeline (Redis)":
        "Redis round trips (idempotency claim and done mark, flight record)",
    "tracing middleware": "tracing (spans, context)",
}


def grouped(parts: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The breakdown summed by :data:`GROUPS`, largest first."""
    totals: dict[str, float] = {}
    for name, seconds in parts:
        group = GROUPS.get(name, name)
        totals[group] = totals.get(group, 0.0) + seconds
    return sorted(totals.items(), key=lambda item: -item[1])


def _qualname(identifier: str) -> tuple[str, str]:
    head, *attrs = identifier.split("\x01")
    function, _, rest = head.partition("\x00")
    file = rest.partition("\x00")[0]
    cls = next((a[1:] for a in attrs if a.startswith("c")), None)
    return (f"{cls}.{function}" if cls else function), file


def breakdown(session: Session, rules: Sequence[Rule], fallback: Sequence[Rule], *, other: str
              ) -> list[tuple[str, float]]:
    """Seconds per component: each sample goes to the innermost frame of its stack matching a hub ``rules``
    entry (so a Redis call made by the quota check counts for the quota), else to the innermost frame
    matching a ``fallback`` entry (libraries working on their own account), else to ``other``."""
    cache: dict[str, tuple[str | None, str | None]] = {}

    def component(identifier: str) -> tuple[str | None, str | None]:
        if identifier not in cache:
            qualname, file = _qualname(identifier)
            cache[identifier] = (next((name for name, match in rules if match(qualname, file)), None),
                                 next((name for name, match in fallback if match(qualname, file)), None))
        return cache[identifier]

    totals: dict[str, float] = {}
    for stack, seconds in session.frame_records:
        hub: str | None = None
        library: str | None = None
        for identifier in stack:
            found, lib = component(identifier)
            hub = found or hub
            library = lib or library
        name = hub or library or other
        totals[name] = totals.get(name, 0.0) + seconds
    return sorted(totals.items(), key=lambda item: -item[1])


def _breakdown_text(title: str, parts: list[tuple[str, float]], events: int) -> str:
    total = sum(s for _, s in parts) or 1.0
    rows = [f"{title}", f"{'component':60} {'s':>8} {'share':>7} {'ms/event':>9}"]
    rows += [f"{name:60} {s:8.3f} {100 * s / total:6.1f}% {1000 * s / events:9.3f}" for name, s in parts]
    return "\n".join(rows)


# -- the run ------------------------------------------------------------------------------------------
async def _post_and_wait(url: str, factory: loadgen.RequestFactory, sub: loadgen.Subscriber, events: int,
                         *, what: str) -> tuple[float, float]:
    """Post ``events`` single-event requests (8 concurrent); wait for every fan-out. Returns (start, end)."""
    client = loadgen.RawHttpClient(url, CONCURRENCY)
    try:
        requests = factory.requests(events, 1, client)
        ids = [r.event_ids[0] for r in requests]
        await client.warm()
        sub.expect(ids)
        result = await loadgen.closed_loop(client, requests, concurrency=CONCURRENCY, max_duration_s=300)
    finally:
        await client.aclose()
    if result.failures:
        raise BenchError(f"{what}: the ingress refused requests: {result.failures}")
    last = await sub.wait_all(ids, what=what)
    sub.forget(ids)
    return result.start, last


async def _profiled_phase(prefix: str, url: str, secret: str, events: int, pids: dict[str, list[int]]
                          ) -> dict[str, Any]:
    factory = loadgen.RequestFactory(secret, tag="PROF")
    client: redis.Redis[bytes] = redis.Redis.from_url(REDIS_URL)

    try:
        async with loadgen.Subscriber(prefix) as sub, httpx.AsyncClient(base_url=url, timeout=30) as http:
            await _post_and_wait(url, factory, sub, WARMUP_EVENTS, what="warm-up")
            (await http.post("/_bench/profile/start")).raise_for_status()
            client.set(flag_key(prefix), 1, ex=3600)
            await asyncio.sleep(0.1)  # the worker looks at the flag every 20 ms
            cpu0 = {name: cpu_of(p) for name, p in pids.items()}
            start, end = await _post_and_wait(url, factory, sub, events, what="profiled phase")
            cpu1 = {name: cpu_of(p) for name, p in pids.items()}
            client.delete(flag_key(prefix))
            (await http.post("/_bench/profile/stop")).raise_for_status()
    finally:
        client.close()
    cpu = {name: None if cpu0[name] is None or cpu1[name] is None else
           round(1000 * (cpu1[name] - cpu0[name]) / events, 3) for name in pids}  # type: ignore[operator]
    return {"seconds": end - start, "events_per_s": events / (end - start), "cpu_ms_per_event": cpu}


def run_profile(*, events: int, threads: int, interval: float = 0.001, out_dir: Path = PROFILE_DIR) -> Path:
    """Profile the flow, write the HTML, text and JSON profiles, print the breakdown; returns the text's path."""
    prefix = new_prefix()
    work_dir = Path(tempfile.mkdtemp(prefix=f"hub-profile-{prefix}-"))
    ingress_out, worker_out = work_dir / "ingress.pyisession", work_dir / "worker.pyisession"
    print(f"profile: prefix {prefix}, {events} single-event requests ({CONCURRENCY} concurrent) through the "
          f"ingress, one worker process with {threads} threads", flush=True)
    procs: list[Proc] = []
    try:
        import actors
        from hub.dispatch import RoutingTable

        ROUTES = RoutingTable.of(actors.SPECS).as_dict()
        loadgen.check_routes(ROUTES)
        secret = new_webhook_secret()
        sources = write_sources_file(work_dir)
        ingress = start_ingress(prefix, work_dir, secret=secret, sources_file=sources, command=[
            sys.executable, "-m", "bench.hubproc", "ingress", "--profile-out", str(ingress_out),
            "--interval", str(interval)])
        procs.append(ingress.proc)
        worker = spawn("worker", [sys.executable, "-m", "bench.hubproc", "worker", "--profile-out", str(worker_out),
                                  "--threads", str(threads), "--interval", str(interval)], hub_env(prefix), work_dir)
        procs.append(worker)
        wait_consumers([worker], f"{prefix}.fanout", 1)
        servers = server_pids()
        pids = {"ingress": [ingress.proc.pid], "worker": [worker.pid], "rabbitmq": servers["rabbitmq"],
                "redis": servers["redis"]}
        measured = asyncio.run(_profiled_phase(prefix, ingress.url, secret, events, pids))
        stop_all(procs)  # the worker saves its session on SIGTERM
        procs = []
        if not ingress_out.exists() or not worker_out.exists():
            raise BenchError("a profiled process saved no session")
        ingress_session = relabel(Session.load(ingress_out), "ingress (event loop thread)")
        worker_session = Session.load(worker_out)
    finally:
        stop_all(procs)
        cleanup(prefix)
        shutil.rmtree(work_dir, ignore_errors=True)
    return write_profile(ingress_session, worker_session, measured, events=events, threads=threads, out_dir=out_dir)


def write_profile(ingress: Session, worker: Session, measured: dict[str, Any], *, events: int, threads: int,
                  out_dir: Path) -> Path:
    """Render both sessions and the breakdowns; print the breakdowns and the top three costs."""
    ingress_parts = breakdown(ingress, INGRESS_RULES, INGRESS_FALLBACK, other="ingress, other (asyncio, libraries)")
    worker_parts = breakdown(worker, WORKER_RULES, WORKER_FALLBACK, other="worker, other")
    busy_ingress = [(n, s) for n, s in grouped(ingress_parts) if not n.startswith("idle")]
    worker_groups = grouped(worker_parts)
    cpu = measured["cpu_ms_per_event"]
    header = (f"Fan-out flow through the HTTP ingress: {events} single-event requests ({CONCURRENCY} concurrent, "
              f"signed) to a `hub serve` process; one `hub worker` process with {threads} threads; real RabbitMQ "
              "and Redis.\n"
              f"{measured['events_per_s']:.0f} events/s end to end while profiled (profilers slow both processes); "
              "CPU ms/event: " + ", ".join(f"{k} {v}" for k, v in cpu.items()) + ".\n"
              f"Ingress: samples of its event-loop thread ({ingress.duration:.2f} s). Worker: samples of its worker "
              f"threads while processing a message, wall time summed over threads ({worker.duration:.2f} s; "
              f"{1000 * worker.duration / events:.2f} ms per message): waits on Redis and RabbitMQ replies count.\n")

    def tree(session: Session) -> str:
        return ConsoleRenderer(unicode=False, color=False, time="seconds").render(session)

    def flat(session: Session) -> str:
        return ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="self").render(session)

    busy_total = sum(s for _, s in busy_ingress) or 1.0
    worker_total = sum(s for _, s in worker_groups) or 1.0
    top3 = {
        "ingress_cpu": [{"component": n, "share": round(s / busy_total, 3),
                         "cpu_ms_per_event": round(s / busy_total * (cpu.get("ingress") or 0.0), 3)}
                        for n, s in busy_ingress[:3]],
        "worker_wall": [{"component": n, "share": round(s / worker_total, 3),
                         "wall_ms_per_message": round(1000 * s / events, 3)} for n, s in worker_groups[:3]],
    }
    summary = "\n".join([
        _breakdown_text(f"INGRESS, by component ({ingress.duration:.2f} s sampled; ms/event = wall time of the loop "
                        "thread per event)", ingress_parts, events),
        "",
        _breakdown_text("WORKER, by component (wall time of worker threads while processing, per event)",
                        worker_parts, events),
        "",
        "TOP THREE COSTS, by group (profilers inflate call-heavy code such as the HTTP stack; read shares, not ms)",
        "  ingress (its loop thread is busy on CPU, idle excluded; share x the ingress's CPU ms per event):",
        *(f"    {i + 1}. {t['component']}: {100 * t['share']:.0f}%, ~{t['cpu_ms_per_event']:.2f} ms CPU per event"
          for i, t in enumerate(top3["ingress_cpu"])),
        "  worker (wall time per message of the worker threads, waits on Redis and RabbitMQ included):",
        *(f"    {i + 1}. {t['component']}: {100 * t['share']:.0f}%, {t['wall_ms_per_message']:.2f} ms per message"
          for i, t in enumerate(top3["worker_wall"])),
    ])
    text = "\n".join([
        header, summary, "",
        "=" * 100, "INGRESS (event loop thread)", "=" * 100, tree(ingress),
        "=" * 100, "WORKER THREADS (while processing a message, all threads merged)", "=" * 100, tree(worker),
        "=" * 100, "INGRESS, flat: self time per function", "=" * 100, "\n".join(flat(ingress).splitlines()[:50]),
        "=" * 100, "WORKER THREADS, flat: self time per function", "=" * 100,
        "\n".join(flat(worker).splitlines()[:50]),
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / "profile.txt"
    text_path.write_text(text + "\n")
    (out_dir / "profile.html").write_text(HTMLRenderer().render(Session.combine(ingress, worker)))
    data = {"events": events, "threads": threads, **measured,
            "ingress_breakdown_s": dict(ingress_parts), "worker_breakdown_s": dict(worker_parts),
            "ingress_groups_s": dict(grouped(ingress_parts)), "worker_groups_s": dict(worker_groups), "top3": top3}
    (out_dir / "profile.json").write_text(json.dumps(data, indent=2) + "\n")
    write_report("profile", data)
    print()
    print(header)
    print(summary)
    print(f"\nprofile: {(out_dir / 'profile.html').relative_to(ROOT)}, {text_path.relative_to(ROOT)}, "
          f"{(out_dir / 'profile.json').relative_to(ROOT)}")
    return text_path


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Profile the end-to-end fan-out flow through the ingress.")
    parser.add_argument("--events", type=int, default=2000, help="events to post while profiling (default 2000)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval, s (default 0.001)")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    exit_on_sigterm()
    try:
        run_profile(events=args.events, threads=args.threads, interval=args.interval)
    except BenchError as exc:
        sys.exit(f"profile failed: {exc}")


if __name__ == "__main__":
    main()
