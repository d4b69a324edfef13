"""Direct dispatch against a router actor, on the real RabbitMQ: ``python -m bench.dispatch``.

Past 400 lines on purpose: one experiment, both designs and their report side by side.

- **direct**: the publisher enqueues each event, confirmed, to each of K subscriber actors (K
  publishes per event; what ``hub.dispatch.Dispatcher`` does today).
- **router**: the publisher enqueues each event once to a ``bench_router`` actor, which enqueues it
  to the K subscribers from the worker (K + 1 publishes per event, one more broker hop).

The publisher is this process (one thread, the full hub middleware stack from
``hub.cli.compose.build_app``); the actors run in separate worker processes (``bench/worker.py``, 8 threads
each), so publisher and worker do not share a GIL. Per design and K it reports, as median (min-max)
of the repetitions: what the publisher waits per event, events/s end to end (until every subscriber
message is processed), broker publishes per event, and CPU per event of the hub processes and of the
RabbitMQ and Redis servers (those two are shared with anything else running on the machine). A raw
pika baseline (confirmed persistent publishes on one channel) runs in the same session.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq import Message

from bench.baseline import measure_raw_publish
from bench.common import (
    ROOT,
    BenchError,
    Stats,
    cleanup,
    exit_on_sigterm,
    format_table,
    new_prefix,
    now_iso,
    percentile,
    process_cpu_s,
    server_pids,
    wait_for_count,
    write_report,
)
from bench.harness import (
    EVENT_TYPE,
    bench_settings,
    declare_all,
    direct_dispatcher,
    done_key,
    make_events,
    read_worker_stats,
    ready_key,
    router_dispatcher,
    subscriber_names,
)
from hub.cli.compose import build_app
from hub.dispatch import Dispatcher
from hub.events import event_summary, to_message_body
from hub.runtime import Runtime
from observability.logging import configure_logging

DESIGNS = ("direct", "router")
#: Events per warm-up phase (queue declarations, connections, caches), not measured.
WARMUP_EVENTS = 50
#: Wait after a phase so every worker has reported its counters (they report every 50 ms).
REPORT_SETTLE_S = 0.2
#: How long a worker may take to start consuming.
WORKER_START_S = 90.0


# -- worker processes -----------------------------------------------------------------------------
class WorkerPool:
    """Worker subprocesses (``python -m bench.worker``) consuming the run's queues."""

    def __init__(self, prefix: str, subscribers: int, *, processes: int, threads: int) -> None:
        self.prefix = prefix
        self.subscribers = subscribers
        self.processes = processes
        self.threads = threads
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        """Pids of the worker processes."""
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        """Whether every worker process still runs."""
        return all(p.poll() is None for p in self.procs)

    def start(self, client: redis.Redis[bytes]) -> None:
        """Start the processes and wait until each consumes."""
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HUB_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "bench.worker", "--prefix", self.prefix,
                   "--subscribers", str(self.subscribers), "--threads", str(self.threads)]
        self.procs = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(self.processes)]
        deadline = time.monotonic() + WORKER_START_S
        for proc in self.procs:
            while not client.exists(ready_key(self.prefix, proc.pid)):
                if proc.poll() is not None:
                    raise BenchError(f"worker process {proc.pid} exited with {proc.returncode} at start")
                if time.monotonic() > deadline:
                    raise BenchError(f"worker process {proc.pid} not consuming after {WORKER_START_S:.0f} s")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM every process; kill any still running after 30 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"worker {proc.pid} did not stop in 30 s; killing it", file=sys.stderr)
                proc.kill()
                proc.wait(timeout=10)
        self.procs = []


# -- one measured phase -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One design, one K, one repetition."""

    design: str
    subscribers: int
    events: int
    publish_s: float
    end_to_end_s: float
    latencies_s: tuple[float, ...]
    publisher_publishes: int
    worker_publishes: int
    worker_failures: int
    cpu_s: dict[str, float | None]

    def metrics(self) -> dict[str, float | None]:
        """Per-event figures of this phase."""
        n = self.events
        cpu = self.cpu_s

        def per_event_ms(value: float | None) -> float | None:
            return None if value is None else 1000 * value / n

        hub = None if cpu["workers"] is None else (cpu["publisher"] or 0.0) + cpu["workers"]
        return {
            "publisher_ms_per_event": 1000 * self.publish_s / n,
            "publisher_p99_ms": 1000 * percentile(self.latencies_s, 0.99),
            "events_per_s": n / self.end_to_end_s,
            "end_to_end_ms_per_event": 1000 * self.end_to_end_s / n,
            "publishes_per_event": (self.publisher_publishes + self.worker_publishes) / n,
            "publisher_cpu_ms_per_event": per_event_ms(cpu["publisher"]),
            "worker_cpu_ms_per_event": per_event_ms(cpu["workers"]),
            "hub_cpu_ms_per_event": per_event_ms(hub),
            "rabbitmq_cpu_ms_per_event": per_event_ms(cpu["rabbitmq"]),
            "redis_cpu_ms_per_event": per_event_ms(cpu["redis"]),
        }


def _cpu_of(pids: list[int]) -> float | None:
    values = [process_cpu_s(pid) for pid in pids]
    if not pids or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


class DispatchBench:
    """The publisher side: one runtime, one Redis client, the dispatchers of both designs."""

    def __init__(self, runtime: Runtime, pool: WorkerPool, subscribers: int) -> None:
        self.runtime = runtime
        self.pool = pool
        self.subscribers = subscribers
        self.client = runtime.redis
        self.prefix = runtime.queue_prefix
        self.dispatchers: dict[str, Dispatcher] = {
            "direct": direct_dispatcher(runtime, subscribers),
            "router": router_dispatcher(runtime),
        }
        self.server_pids = server_pids()

    def _done(self) -> int:
        return int(self.client.get(done_key(self.prefix)) or 0)

    def run(self, design: str, count: int, *, tag: str) -> Phase:
        """Dispatch ``count`` fresh events with ``design`` and wait until every subscriber processed them."""
        events = make_events(self.runtime.registry, count, tag=tag)
        dispatcher = self.dispatchers[design]
        target = count * self.subscribers
        self.client.set(done_key(self.prefix), 0)
        before = read_worker_stats(self.client, self.prefix, self.pool.pids)
        servers0 = {name: _cpu_of(pids) for name, pids in self.server_pids.items()}
        workers0 = _cpu_of(self.pool.pids)
        latencies: list[float] = []
        published = 0
        cpu0 = time.process_time()
        start = time.perf_counter()
        for event in events:
            t = time.perf_counter()
            published += len(dispatcher.dispatch(event))
            latencies.append(time.perf_counter() - t)
        publish_s = time.perf_counter() - start
        publisher_cpu = time.process_time() - cpu0
        wait_for_count(self._done, target, what=f"{design} K={self.subscribers}", interval_s=0.005,
                       deadline_s=max(120.0, target * 0.05), alive=self.pool.alive)
        end_to_end_s = time.perf_counter() - start
        workers1 = _cpu_of(self.pool.pids)
        servers1 = {name: _cpu_of(pids) for name, pids in self.server_pids.items()}
        time.sleep(REPORT_SETTLE_S)
        after = read_worker_stats(self.client, self.prefix, self.pool.pids)
        cpu: dict[str, float | None] = {"publisher": publisher_cpu}
        cpu["workers"] = None if workers0 is None or workers1 is None else workers1 - workers0
        for name in self.server_pids:
            a, b = servers0[name], servers1[name]
            cpu[name] = None if a is None or b is None else b - a
        return Phase(design, self.subscribers, count, publish_s, end_to_end_s, tuple(latencies), published,
                     after["published"] - before["published"], after["failed"] - before["failed"], cpu)


# -- the whole run --------------------------------------------------------------------------------------
def _summaries(phases: list[Phase]) -> dict[str, Stats | None]:
    metrics = [phase.metrics() for phase in phases]
    summary: dict[str, Stats | None] = {}
    for name in metrics[0]:
        values = [m[name] for m in metrics]
        summary[name] = None if any(v is None for v in values) else Stats.of([v for v in values if v is not None])
    return summary


def _ratio(router: Stats | None, direct: Stats | None) -> float | None:
    if router is None or direct is None or direct.median == 0:
        return None
    return router.median / direct.median


def sample_body(runtime: Runtime) -> bytes:
    """The encoded body of one dispatched hub message, for the raw baseline."""
    event = make_events(runtime.registry, 1, tag="raw")[0]
    name = subscriber_names(1)[0]
    message: Message[Any] = Message(queue_name=runtime.broker.get_actor(name).queue_name, actor_name=name,
                                    args=(to_message_body(event),), kwargs={},
                                    options={"hub_event": event_summary(event)})
    return message.encode()


def run_dispatch(
    *,
    events: int,
    subscribers: Sequence[int],
    repeats: int,
    threads: int = 8,
    processes: int = 1,
    raw_count: int = 2000,
) -> dict[str, Any]:
    """Run the raw baseline and both designs for each K; returns the report (also written to disk)."""
    if events < 1 or repeats < 1 or not subscribers or min(subscribers) < 1:
        raise ValueError("events, repeats and every subscriber count must be at least 1")
    prefix = new_prefix()
    settings = bench_settings(prefix)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    print(f"dispatch benchmark: prefix {prefix}, {events} events x K={list(subscribers)} x {repeats} repeats, "
          f"{processes} worker process(es) x {threads} threads", flush=True)
    started = time.perf_counter()
    runtime: Runtime | None = None
    phases: dict[tuple[int, str], list[Phase]] = {}
    raw: dict[str, Any] = {}
    try:
        runtime = build_app(settings, embedded=False)
        declare_all(runtime, max(subscribers))
        raw = measure_raw_publish(prefix, body=sample_body(runtime), count=raw_count, repeats=repeats)
        print(f"  raw publish: classic {raw['classic']['msgs_per_s']['median']:.0f} msgs/s, "
              f"quorum {raw['quorum']['msgs_per_s']['median']:.0f} msgs/s", flush=True)
        for k in subscribers:
            pool = WorkerPool(prefix, k, processes=processes, threads=threads)
            try:
                pool.start(runtime.redis)
                bench = DispatchBench(runtime, pool, k)
                for design in DESIGNS:
                    bench.run(design, WARMUP_EVENTS, tag=f"w{design[0]}{k}")
                for rep in range(repeats):
                    # alternate the order so that drift on a noisy machine hits both designs alike
                    for design in DESIGNS if rep % 2 == 0 else DESIGNS[::-1]:
                        phase = bench.run(design, events, tag=f"{design[0]}{k}r{rep}")
                        phases.setdefault((k, design), []).append(phase)
                        m = phase.metrics()
                        print(f"  K={k} {design:6} rep {rep + 1}/{repeats}: "
                              f"publisher {m['publisher_ms_per_event']:.3f} ms/event, "
                              f"{m['events_per_s']:.0f} events/s end to end, "
                              f"{m['publishes_per_event']:.2f} publishes/event"
                              + (f", {phase.worker_failures} FAILURES" if phase.worker_failures else ""),
                              flush=True)
            finally:
                pool.stop()
    finally:
        if runtime is not None:
            runtime.close()
        cleanup(prefix)
    report = build_report(phases, raw, events=events, subscribers=subscribers, repeats=repeats,
                          threads=threads, processes=processes, prefix=prefix,
                          duration_s=time.perf_counter() - started)
    path = write_report("dispatch", report)
    print()
    print(report["table"])
    print()
    print(report["raw_table"])
    print()
    print(report["conclusion"])
    print(f"\nreport: {path.relative_to(ROOT)}")
    return report


def build_report(
    phases: dict[tuple[int, str], list[Phase]],
    raw: dict[str, Any],
    *,
    events: int,
    subscribers: Sequence[int],
    repeats: int,
    threads: int,
    processes: int,
    prefix: str,
    duration_s: float,
) -> dict[str, Any]:
    """The JSON report: parameters, raw baseline, per-K results, ratios, tables and the conclusion."""
    results = []
    rows: list[list[object]] = []

    def cell(stats: Stats | None, digits: int) -> str:
        return "n/a" if stats is None else stats.show(digits)

    def rcell(value: float | None) -> str:
        return "n/a" if value is None else f"x{value:.2f}"

    for k in subscribers:
        summary = {design: _summaries(phases[(k, design)]) for design in DESIGNS}
        ratios = {name: _ratio(summary["router"][name], summary["direct"][name]) for name in summary["direct"]}
        failures = {design: sum(p.worker_failures for p in phases[(k, design)]) for design in DESIGNS}
        results.append({
            "subscribers": k,
            **{design: {name: (None if s is None else s.as_dict()) for name, s in summary[design].items()}
               for design in DESIGNS},
            "ratio_router_over_direct": {n: (None if r is None else round(r, 3)) for n, r in ratios.items()},
            "worker_failures": failures,
        })
        for design in DESIGNS:
            s = summary[design]
            rows.append([f"K={k} {design}", cell(s["publisher_ms_per_event"], 3), cell(s["publisher_p99_ms"], 2),
                         cell(s["events_per_s"], 0), cell(s["publishes_per_event"], 2),
                         cell(s["hub_cpu_ms_per_event"], 2), cell(s["rabbitmq_cpu_ms_per_event"], 2),
                         cell(s["redis_cpu_ms_per_event"], 2)])
        rows.append([f"K={k} router/direct", rcell(ratios["publisher_ms_per_event"]),
                     rcell(ratios["publisher_p99_ms"]), rcell(ratios["events_per_s"]),
                     rcell(ratios["publishes_per_event"]), rcell(ratios["hub_cpu_ms_per_event"]),
                     rcell(ratios["rabbitmq_cpu_ms_per_event"]), rcell(ratios["redis_cpu_ms_per_event"])])
    table = format_table(
        ["design", "publisher ms/event", "publisher p99 ms", "events/s e2e", "publishes/event",
         "hub CPU ms/event", "rabbitmq CPU ms/event", "redis CPU ms/event"],
        rows,
    )
    raw_rows = [[f"raw pika, {kind} queue", f"{raw[kind]['msgs_per_s']['median']:.0f} "
                 f"({raw[kind]['msgs_per_s']['min']:.0f}-{raw[kind]['msgs_per_s']['max']:.0f})",
                 f"{raw[kind]['ms_per_msg']:.3f}"] for kind in ("classic", "quorum")]
    raw_table = format_table([f"baseline ({raw['count']} x {raw['body_bytes']} B, confirmed, persistent)",
                              "msgs/s", "ms/msg"], raw_rows)
    conclusion = write_conclusion(results, raw, events=events, repeats=repeats)
    return {
        "name": "dispatch",
        "date": now_iso(),
        "params": {"events": events, "subscribers": list(subscribers), "repeats": repeats,
                   "worker_processes": processes, "worker_threads": threads, "warmup_events": WARMUP_EVENTS,
                   "event_type": EVENT_TYPE, "prefix": prefix},
        "duration_s": round(duration_s, 1),
        "notes": [
            "medians of the repetitions with min and max; ratios are router median / direct median",
            "publisher: one thread of this process, full hub middleware stack, one confirmed publish at a time",
            "end to end: from the first publish until every subscriber message was processed (Redis INCR)",
            "hub CPU = publisher process while publishing + worker processes until the end",
            "rabbitmq/redis CPU: whole server processes, shared with anything else running on the machine",
        ],
        "raw_publish": raw,
        "results": results,
        "table": table,
        "raw_table": raw_table,
        "conclusion": conclusion,
    }


def _med(result: dict[str, Any], design: str, metric: str) -> float | None:
    value = result[design].get(metric)
    return None if value is None else float(value["median"])


def write_conclusion(results: list[dict[str, Any]], raw: dict[str, Any], *, events: int, repeats: int) -> str:
    """One paragraph, computed from the medians: which design costs less per event, and by what factor."""
    parts = [f"Medians of {repeats} runs of {events} events on the real RabbitMQ."]
    raw_ms = raw["quorum"]["ms_per_msg"]
    e2e_factors: list[float] = []
    cpu_factors: list[float] = []
    for r in results:
        k = r["subscribers"]
        d_pub, r_pub = _med(r, "direct", "publisher_ms_per_event"), _med(r, "router", "publisher_ms_per_event")
        d_eps, r_eps = _med(r, "direct", "events_per_s"), _med(r, "router", "events_per_s")
        d_cpu, r_cpu = _med(r, "direct", "hub_cpu_ms_per_event"), _med(r, "router", "hub_cpu_ms_per_event")
        d_n, r_n = _med(r, "direct", "publishes_per_event"), _med(r, "router", "publishes_per_event")
        if None in (d_pub, r_pub, d_eps, r_eps, d_n, r_n):
            continue
        assert d_pub is not None and r_pub is not None and d_eps is not None and r_eps is not None
        e2e = d_eps / r_eps  # router time per event over direct time per event
        e2e_factors.append(e2e)
        pub = r_pub / d_pub
        wait = (f"the router makes the publisher wait x{pub:.2f} as long ({r_pub:.2f} against {d_pub:.2f} ms per "
                f"event)" if pub >= 1 else
                f"the router cuts the publisher's wait x{1 / pub:.2f} ({r_pub:.2f} against {d_pub:.2f} ms per event)")
        sentence = (f"With {k} subscriber{'s' if k > 1 else ''}, {wait}; end to end direct moves {d_eps:.0f} "
                    f"events/s against {r_eps:.0f} for the router, so the router "
                    + (f"costs x{e2e:.2f} the time per event" if e2e >= 1 else
                       f"takes x{1 / e2e:.2f} less time per event")
                    + f", with {r_n:.0f} broker publishes per event instead of {d_n:.0f}")
        if d_cpu is not None and r_cpu is not None:
            cpu_factors.append(r_cpu / d_cpu)
            sentence += f" and x{r_cpu / d_cpu:.2f} the hub CPU ({r_cpu:.2f} against {d_cpu:.2f} ms per event)"
        parts.append(sentence + ".")
    if e2e_factors:
        lo, hi = min(e2e_factors), max(e2e_factors)
        if lo >= 1:
            verdict = (f"Direct dispatch costs less per event end to end (the router costs x{lo:.2f} to "
                       f"x{hi:.2f} as much)")
        elif hi <= 1:
            verdict = (f"The router costs less per event end to end (direct costs x{1 / hi:.2f} to "
                       f"x{1 / lo:.2f} as much)")
        else:
            verdict = (f"Neither design wins everywhere end to end (router/direct time per event x{lo:.2f} to "
                       f"x{hi:.2f})")
        if cpu_factors:
            verdict += f"; the router uses x{min(cpu_factors):.2f} to x{max(cpu_factors):.2f} the hub CPU per event"
        parts.append(verdict + ".")
        parts.append(_per_publish_sentence(results, raw_ms))
    return " ".join(parts)


def _per_publish_sentence(results: list[dict[str, Any]], raw_ms: float) -> str:
    """What one more subscriber adds to the publisher's wait under direct dispatch, against a raw publish."""
    points = [(r["subscribers"], _med(r, "direct", "publisher_ms_per_event")) for r in results]
    known = sorted((k, ms) for k, ms in points if ms is not None)
    if not known:
        return ""
    if len(known) >= 2 and known[-1][0] > known[0][0]:
        (k0, ms0), (k1, ms1) = known[0], known[-1]
        per_sub = (ms1 - ms0) / (k1 - k0)
        how = f"each further subscriber adds {per_sub:.2f} ms to the publisher's wait (K={k0} to K={k1})"
    else:
        k, ms = known[0]
        per_sub = ms / k
        how = f"each subscriber costs the publisher {per_sub:.2f} ms"
    return (f"Under direct dispatch {how}, against {raw_ms:.2f} ms for a raw confirmed publish to a quorum "
            f"queue (x{per_sub / raw_ms:.1f}; the rest is the hub's own enqueue path); under the router the "
            f"publisher's wait stays at one hub publish whatever K.")


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Direct dispatch against a router actor on the real RabbitMQ.")
    parser.add_argument("--events", type=int, default=1000, help="events per measured phase (default 1000)")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 3], help="K values (default 1 3)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions per design and K (default 5)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--raw-count", type=int, default=2000, help="messages per raw baseline run")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    try:
        run_dispatch(events=args.events, subscribers=args.subscribers, repeats=args.repeats,
                     threads=args.threads, processes=args.processes, raw_count=args.raw_count)
    except BenchError as exc:
        sys.exit(f"dispatch benchmark failed: {exc}")


if __name__ == "__main__":
    main()
