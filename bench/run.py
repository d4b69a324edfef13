"""``make bench``: every benchmark in one run, with the machine they ran on: ``python -m bench.run``.

For now: the dispatch benchmark (direct against router, ``bench/dispatch.py``) and the raw publish
baseline it includes. Writes ``bench/results/bench.json`` (and each benchmark's own report). New
benchmarks are added to :data:`BENCHMARKS`; the whole run must stay under 10 minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import ROOT, BenchError, format_table, machine_info, now_iso, write_report
from bench.dispatch import run_dispatch


def _dispatch(quick: bool) -> dict[str, Any]:
    if quick:
        return run_dispatch(events=200, subscribers=[1, 3], repeats=2, raw_count=500)
    return run_dispatch(events=1000, subscribers=[1, 3], repeats=5, raw_count=2000)


#: Name and runner of each benchmark; a runner returns its report (it prints its own tables).
BENCHMARKS: list[tuple[str, Callable[[bool], dict[str, Any]]]] = [
    ("dispatch", _dispatch),
]


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark, then write and print the combined report."""
    parser = argparse.ArgumentParser(description="Run every hub benchmark on the real RabbitMQ and Redis.")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that everything runs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    machine = machine_info()
    print(format_table(["machine", "value"], [[k, v] for k, v in machine.items()]))
    print(flush=True)
    reports: dict[str, Any] = {}
    for name, runner in BENCHMARKS:
        print(f"== {name} ==", flush=True)
        try:
            reports[name] = runner(args.quick)
        except BenchError as exc:
            sys.exit(f"benchmark {name} failed: {exc}")
        print(flush=True)
    dispatch = reports.get("dispatch", {})
    report = {
        "name": "bench",
        "date": now_iso(),
        "machine": machine,
        "quick": args.quick,
        "duration_s": round(time.perf_counter() - started, 1),
        "raw_publish": dispatch.get("raw_publish"),
        "benchmarks": reports,
    }
    path = write_report("bench", report)
    print(f"all benchmarks done in {report['duration_s']:.0f} s; report: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
