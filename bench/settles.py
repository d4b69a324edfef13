"""The ingress's settle: held for the next request's round trip (the hub's) against a round trip of its own.

``python -m bench.settles`` (``make bench-settles``, about ten minutes): the ingress alone (no worker), as ``make
bench`` measures it, at three points (single events with 8 clients, batches of 10 with 8, batches of 50 with one),
two ingress processes' ways alternating within every repetition, the order swapped each time:

- ``at-once`` (the baseline): each request settles its events' outcomes, with its publishes' flight-record hops,
  in a round trip of its own before its response (``BENCH_SETTLE_AT_ONCE=1``, see :mod:`bench.hubproc`);
- ``held`` (what ``hub serve`` runs): the settle goes first in the next request's admission pipeline
  (:class:`hub.batching.TrailingWrites`), one round trip per request under load.

Printed per way and point: events/s, the ingress's and Redis's CPU per event, the 202's latency (p50, p99; each
median, min-max), and the held way's ratios to the baseline; written to ``bench/results/settles.json``. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Stats,
    cleanup,
    exit_on_sigterm,
    format_table,
    machine_info,
    new_prefix,
    now_iso,
    write_report,
)
from bench.hubproc import SETTLE_AT_ONCE
from bench.suite import Bench, Config

WAYS = {"at-once": {SETTLE_AT_ONCE: "1"}, "held": {}}
#: (events per request, clients).
POINTS = ((1, 8), (10, 8), (50, 1))
METRICS = ("events_per_s", "ingress_cpu_ms", "redis_cpu_ms", "p50_ms", "p99_ms")


async def _measure(bench: Bench, *, repeats: int, events: int, log: Any) -> dict[str, list[dict[str, float]]]:
    samples: dict[str, list[dict[str, float]]] = {}
    ways = list(WAYS)
    for rep in range(repeats):
        for way in ways if rep % 2 == 0 else ways[::-1]:
            bench.start_ingress(WAYS[way])
            await bench._ingress_point(1, 8, events=min(events, 500))  # warm-up: connections, scripts
            for batch, clients in POINTS:
                point = await bench._ingress_point(batch, clients, events=events if batch > 1 else events // 2)
                cpu = point.cpu_ms_per_event
                sample = {"events_per_s": point.events_per_s, "ingress_cpu_ms": cpu.get("ingress"),
                          "redis_cpu_ms": cpu.get("redis"), "p50_ms": point.p50_ms, "p99_ms": point.p99_ms}
                samples.setdefault(f"{way} {batch}x{clients}", []).append(
                    {k: v for k, v in sample.items() if v is not None})
                log(f"  rep {rep + 1}/{repeats} {way} batch {batch} c={clients}: {point.events_per_s:.0f} events/s, "
                    f"ingress {cpu.get('ingress') or 0:.3f} ms, Redis {cpu.get('redis') or 0:.3f} ms CPU per event"
                    + (f", FAILURES {point.failures}" if point.failures else ""))
    return samples


def run(*, repeats: int, events: int, log: Any = print) -> dict[str, Any]:
    """Measure both ways; returns the report (and prints its table)."""
    prefix = new_prefix()
    work_dir = Path(tempfile.mkdtemp(prefix=f"hub-settles-{prefix}-"))
    bench = Bench(replace(Config(), repeats=repeats), prefix, work_dir, log)
    try:
        bench.build_bodies()
        samples = asyncio.run(_measure(bench, repeats=repeats, events=events, log=log))
    finally:
        bench.close()
        cleanup(prefix)
        shutil.rmtree(work_dir, ignore_errors=True)
    summary: dict[str, dict[str, Stats]] = {}
    ratios: dict[str, dict[str, Stats]] = {}
    rows = []
    for batch, clients in POINTS:
        point = f"{batch}x{clients}"
        for way in WAYS:
            got = samples[f"{way} {point}"]
            summary[f"{way} {point}"] = {m: Stats.of([s[m] for s in got if m in s]) for m in METRICS
                                         if any(m in s for s in got)}
        held, base = samples[f"held {point}"], samples[f"at-once {point}"]
        ratios[point] = {m: Stats.of([h[m] / b[m] for h, b in zip(held, base, strict=True) if m in h and b.get(m)])
                         for m in METRICS if all(m in s and s[m] for s in base) and all(m in s for s in held)}
        for way in WAYS:
            cells = summary[f"{way} {point}"]
            rows.append([f"batch {batch}, {clients} client(s), {way}",
                         *(cells[m].show({"events_per_s": 0, "p50_ms": 1, "p99_ms": 1}.get(m, 3)) if m in cells else "-"
                           for m in METRICS)])
        rows.append([f"batch {batch}, {clients} client(s), held / at-once",
                     *(ratios[point][m].show(2) if m in ratios[point] else "-" for m in METRICS)])
    log(format_table(["point", "events/s", "ingress CPU ms/event", "Redis CPU ms/event", "202 p50 ms", "202 p99 ms"],
                     rows))
    return {"when": now_iso(), "machine": machine_info(), "repeats": repeats, "events": events, "samples": samples,
            "summary": {k: {m: s.as_dict() for m, s in v.items()} for k, v in summary.items()},
            "ratios_held_to_at_once": {k: {m: s.as_dict() for m, s in v.items()} for k, v in ratios.items()}}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="The ingress's settle held for the next request against a round "
                                                 "trip of its own, on the real RabbitMQ and Redis.")
    parser.add_argument("--repeats", type=int, default=6, help="repetitions of both ways (default 6)")
    parser.add_argument("--events", type=int, default=4000, help="events per batched point (default 4000; half for "
                                                                 "single events)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.events < 100:
        parser.error("need --repeats >= 1 and --events >= 100")
    exit_on_sigterm()
    try:
        report = run(repeats=args.repeats, events=args.events)
    except BenchError as exc:
        sys.exit(f"settles benchmark failed: {exc}")
    print(f"written to {write_report('settles', report)}")


if __name__ == "__main__":
    main()
