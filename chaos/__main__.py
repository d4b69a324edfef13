"""``python -m chaos [--events N] [--scenario NAME ...]``: run the fault scenarios, one table row each.

Exit code 0 when every scenario met its targets (nothing lost, no side effect done twice, no secret in a log
or a store, the hub settled by itself: no dead letter but the poison put on its queues), 1 otherwise.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from bench.common import format_table
from chaos.harness import Options, Result, run_scenario
from chaos.scenarios import SCENARIOS

HEADERS = ("scenario", "events", "accepted", "lost", "duplicated side effects", "duplicated topic copies",
           "recovery time s", "secret leaks", "dead letters", "verdict")


def row(result: Result) -> tuple[object, ...]:
    """The table row of a result."""
    recovery = "-" if result.recovery_s is None else f"{result.recovery_s:.1f}"
    dead = f"{result.dead_letters} ({result.expected_dead} poison)" if result.expected_dead else result.dead_letters
    return (result.scenario, result.events, result.accepted, result.lost, result.duplicated_effects,
            result.duplicated_copies, recovery, len(result.leaks), dead, "pass" if result.passed else "FAIL")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios and print the table; the exit code says whether every target was met."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="events per scenario (default 10000)")
    parser.add_argument("--rate", type=float, default=Options.rate, help="events/s offered (default %(default)s)")
    parser.add_argument("--workers", type=int, default=Options.workers, help="worker processes (default %(default)s)")
    parser.add_argument("--threads", type=int, default=Options.threads,
                        help="threads per worker process (default %(default)s)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), metavar="NAME",
                        help=f"run only this one (repeatable): {', '.join(SCENARIOS)}")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's server data and logs")
    args = parser.parse_args(argv)
    if args.events < 20 or args.rate <= 0 or args.workers < 1 or args.threads < 1:
        parser.error("--events must be at least 20, --rate above 0, and --workers and --threads at least 1")
    # A TERM (from a CI timeout or ``kill``) ends the run as Ctrl-C does: each scenario's servers and hub stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    options = Options(events=args.events, rate=args.rate, workers=args.workers, threads=args.threads,
                      keep=args.keep)
    results = []
    for name in args.scenario or list(SCENARIOS):
        started = time.monotonic()
        print(f"{name}: {options.events} events at {options.rate:g}/s, {options.workers} workers of "
              f"{options.threads} threads ...", flush=True)
        result = run_scenario(name, SCENARIOS[name], options)
        results.append(result)
        print(f"{name}: {'pass' if result.passed else 'FAIL'} in {time.monotonic() - started:.0f} s", flush=True)
        for note in [*result.notes, *result.leaks]:
            print(f"  {note}", flush=True)
    print()
    print(format_table(HEADERS, [row(r) for r in results]))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
