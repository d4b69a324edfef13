"""Profile the end-to-end fan-out flow with pyinstrument: ``python -m bench.profile [--events N]``.

The hub as ``hub.cli.build_app`` wires it (real RabbitMQ and Redis, every middleware, the routing
table sending every event to the ``fanout`` actor) dispatches N events from this thread while an
in-process worker (8 threads) runs the fan-out actor, which publishes each event, confirmed, to the
``hub.events`` topic exchange. The run ends when a subscriber bound to the exchange has received all
N (recognised by their side-effect message ids, so other traffic on the shared exchange is ignored).

pyinstrument samples one thread per profiler, so two profiles are taken and merged:

- the publisher: this thread while it dispatches (what an ingress request waits for);
- the worker threads: one profiler per thread, running only while a message is processed (every
  middleware hook and the actor), merged into one tree. Consumer threads (pika I/O, decoding) and the
  idle waiting of worker threads are not in it.

Writes ``profile/profile.html`` (both trees) and ``profile/profile.txt`` (both trees and a flat
list of self time), and prints the top of the text profile.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session

from bench.common import ROOT, STALL_S, BenchError, cleanup, new_prefix
from bench.harness import EVENT_TYPE, bench_settings, make_events
from hub.cli import build_app
from hub.idempotency import side_effect_key
from hub.runtime import Runtime
from hub.topics import rabbit_subscription
from hub.workers import running_worker
from observability.logging import configure_logging

#: Where the profile goes (git-ignored).
PROFILE_DIR = ROOT / "profile"
#: Events dispatched before profiling starts (connections, queue declarations, caches).
WARMUP_EVENTS = 20
#: Lines of the text profile printed at the end.
PRINT_LINES = 70


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


def _dispatch_and_wait(runtime: Runtime, receive: Any, count: int, *, tag: str,
                       profiler: Profiler | None = None) -> tuple[float, float]:
    """Dispatch ``count`` fresh events; wait until the subscriber got each. Returns (publish s, end-to-end s)."""
    dispatcher = runtime.dispatcher
    if dispatcher is None:
        raise BenchError("the app has no dispatcher")
    events = make_events(runtime.registry, count, tag=tag)
    expected = {side_effect_key(event.get_id(), "fanout", "publish") for event in events}
    if profiler is not None:
        profiler.start()
    start = time.perf_counter()
    for event in events:
        dispatcher.dispatch(event)
    publish_s = time.perf_counter() - start
    if profiler is not None:
        profiler.stop()
    last_progress = time.monotonic()
    deadline = last_progress + max(120.0, count * 0.05)
    while expected:
        delivery = receive(1.0)
        now = time.monotonic()
        if delivery is not None and delivery.message_id in expected:
            expected.discard(delivery.message_id)
            last_progress = now
        elif now - last_progress > STALL_S:
            raise BenchError(f"fan-out made no progress for {STALL_S:.0f} s: {len(expected)}/{count} missing")
        if now > deadline:
            raise BenchError(f"fan-out not done in time: {len(expected)}/{count} missing")
    return publish_s, time.perf_counter() - start


def run_profile(*, events: int, threads: int, out_dir: Path = PROFILE_DIR) -> Path:
    """Profile the flow, write the HTML and text profiles, print the top; returns the text profile's path."""
    prefix = new_prefix()
    settings = bench_settings(prefix)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    print(f"profile: prefix {prefix}, {events} events, in-process worker with {threads} threads", flush=True)
    runtime: Runtime | None = None
    try:
        runtime = build_app(settings, embedded=False)
        message_profiler = MessageProfiler()
        runtime.broker.add_middleware(message_profiler, before=type(runtime.broker.middleware[0]))
        publisher = Profiler(interval=0.001, async_mode="disabled")
        with rabbit_subscription(settings.amqp_url, EVENT_TYPE) as receive, \
                running_worker(runtime, threads=threads):
            _dispatch_and_wait(runtime, receive, WARMUP_EVENTS, tag="pw")
            message_profiler.enabled = True
            publish_s, e2e_s = _dispatch_and_wait(runtime, receive, events, tag="pr", profiler=publisher)
            message_profiler.enabled = False
    finally:
        if runtime is not None:
            runtime.close()
        cleanup(prefix)

    pub_session = publisher.last_session
    worker_session = message_profiler.session(f"worker threads ({threads}), while processing a message")
    if pub_session is None or worker_session is None:
        raise BenchError("no profile recorded")
    pub_session = relabel(pub_session, "publisher (main thread), dispatching")
    header = (f"Fan-out flow: {events} events dispatched to 'fanout' (hub.cli.build_app, real RabbitMQ and "
              f"Redis), in-process worker with {threads} threads.\n"
              f"publisher: {publish_s:.2f} s ({1000 * publish_s / events:.3f} ms per event); end to end "
              f"{e2e_s:.2f} s ({events / e2e_s:.0f} events/s); worker threads busy {worker_session.duration:.2f} s "
              f"in all ({1000 * worker_session.duration / events:.3f} ms per message, wall time summed over "
              f"threads).\nThe profiles are wall-clock samples: time waiting on RabbitMQ confirms and Redis replies "
              f"counts; under contention for the GIL it shows in whatever frame holds the thread.\n")

    def tree(session: Session) -> str:
        return ConsoleRenderer(unicode=False, color=False, time="seconds").render(session)

    def flat(session: Session) -> str:
        return ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="self").render(session)

    text = "\n".join([
        header,
        "=" * 100, "PUBLISHER (main thread, while dispatching)", "=" * 100, tree(pub_session),
        "=" * 100, "WORKER THREADS (while processing a message, all threads merged)", "=" * 100,
        tree(worker_session),
        "=" * 100, "WORKER THREADS, flat: self time per function", "=" * 100,
        "\n".join(flat(worker_session).splitlines()[:60]),
        "=" * 100, "PUBLISHER, flat: self time per function", "=" * 100,
        "\n".join(flat(pub_session).splitlines()[:40]),
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / "profile.txt"
    html_path = out_dir / "profile.html"
    text_path.write_text(text + "\n")
    html_path.write_text(HTMLRenderer().render(Session.combine(pub_session, worker_session)))
    print()
    print("\n".join(text.splitlines()[:PRINT_LINES]))
    print(f"...\nprofile: {html_path.relative_to(ROOT)}, {text_path.relative_to(ROOT)}")
    return text_path


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Profile the end-to-end fan-out flow with pyinstrument.")
    parser.add_argument("--events", type=int, default=1000, help="events to dispatch (default 1000)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    try:
        run_profile(events=args.events, threads=args.threads)
    except BenchError as exc:
        sys.exit(f"profile failed: {exc}")


if __name__ == "__main__":
    main()
