"""Small helpers shared by the benchmarks: timing, statistics, prefixes, cleanup, reports, tables."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import redis

#: Repository root (the benchmark and worker subprocesses run from here).
ROOT = Path(__file__).resolve().parent.parent
#: Where JSON reports go (git-ignored).
RESULTS_DIR = ROOT / "bench" / "results"
#: Default servers, the same as the hub's settings defaults.
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
REDIS_URL = "redis://127.0.0.1:6379/0"
DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/hub"
#: A wait fails when the counter it watches has not moved for this long.
STALL_S = 30.0


class BenchError(RuntimeError):
    """A benchmark could not complete (a stalled worker, a missing server)."""


def flag_key(prefix: str) -> str:
    """While this Redis key exists, the profiled worker profiles."""
    return f"{prefix}:bench:profile"



def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit`` (143) so that every ``finally`` runs: child processes stop, queues
    and keys of the run are deleted."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def new_prefix() -> str:
    """A queue and Redis key prefix unique to this run: ``b<hex>``."""
    return f"b{uuid.uuid4().hex[:10]}"


def now_iso() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Time a block with ``time.perf_counter``; the yielded function returns the seconds so far (or in all)."""
    start = time.perf_counter()
    end: float | None = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


@dataclass(frozen=True)
class Stats:
    """Median, minimum and maximum of repeated measurements."""

    median: float
    min: float
    max: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """Summarise ``values`` (at least one)."""
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        """JSON-ready form, rounded."""
        return {
            "median": round(self.median, digits),
            "min": round(self.min, digits),
            "max": round(self.max, digits),
            "samples": [round(v, digits) for v in self.samples],
        }

    def show(self, digits: int = 2) -> str:
        """``median (min-max)`` for a table cell."""
        return f"{self.median:.{digits}f} ({self.min:.{digits}f}-{self.max:.{digits}f})"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


def wait_for_count(
    read: Callable[[], int],
    target: int,
    *,
    what: str,
    stall_s: float = STALL_S,
    deadline_s: float = 600.0,
    interval_s: float = 0.002,
    alive: Callable[[], bool] | None = None,
) -> int:
    """Poll ``read()`` until it reaches ``target``; fail if it stalls ``stall_s`` or exceeds ``deadline_s``.

    ``alive`` (when given) is checked too, so a dead worker fails fast instead of after the stall.
    """
    start = last_change = time.monotonic()
    last = read()
    while last < target:
        time.sleep(interval_s)
        value = read()
        now = time.monotonic()
        if value != last:
            last, last_change = value, now
            continue
        if alive is not None and not alive():
            raise BenchError(f"{what}: the worker process died at {last}/{target}")
        if now - last_change > stall_s:
            raise BenchError(f"{what}: no progress for {stall_s:.0f} s, stuck at {last}/{target}")
        if now - start > deadline_s:
            raise BenchError(f"{what}: not done after {deadline_s:.0f} s, at {last}/{target}")
    return last


# -- cleanup ---------------------------------------------------------------------------------------
def run_queues(prefix: str) -> list[str]:
    """Names of the queues of this run (``<prefix>.*``, with their ``.DQ`` and ``.XQ``)."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True,
                         check=False, timeout=60).stdout
    return [line.strip() for line in out.splitlines() if line.strip().startswith(prefix + ".")]


def delete_queues(prefix: str, *, amqp_url: str = AMQP_URL) -> int:
    """Delete every queue named ``<prefix>.*``; returns how many."""
    names = run_queues(prefix)
    if not names:
        return 0
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()
    return len(names)


def delete_keys(prefix: str, *, redis_url: str = REDIS_URL) -> int:
    """Delete every Redis key ``<prefix>:*``; returns how many."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
        return deleted
    finally:
        client.close()


def drop_run_schema(prefix: str, *, database_url: str = DATABASE_URL) -> int:
    """Drop the run's schema in the hub's PostgreSQL database (the actors' stores: crosswalk, master data, outbox,
    the fan-out's matter verdicts); returns 1."""
    from hub.db import connect_database, drop_schema

    database = connect_database(database_url, prefix=prefix, embedded=False)
    try:
        drop_schema(database)
    finally:
        database.close()
    return 1


def cleanup(prefix: str) -> None:
    """Remove the run's queues, Redis keys and database schema, reporting (not raising) what could not be removed."""
    for what, action in (("queues", delete_queues), ("redis keys", delete_keys), ("database schema", drop_run_schema)):
        try:
            count = action(prefix)
            print(f"cleanup: deleted {count} {what} of {prefix}")
        except Exception as exc:  # cleanup must not hide the run's own error
            print(f"cleanup: could not delete {what} of {prefix}: {type(exc).__name__}: {exc}")


# -- CPU accounting --------------------------------------------------------------------------------
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), or ``None`` if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the ")" field 0 is state (field 3 of the man page): utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def find_pids(command: str) -> list[int]:
    """Pids whose ``comm`` is ``command`` (read-only look-up in ``/proc``, e.g. ``beam.smp``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == command:
                    pids.append(int(entry.name))
    return pids


# -- reports -----------------------------------------------------------------------------------------
def write_report(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned plain-text table (first column left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def machine_info() -> dict[str, Any]:
    """The machine the numbers come from: cores, CPU model, kernel, server versions (when cheap)."""
    import platform

    info: dict[str, Any] = {"nproc": os.cpu_count()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    info["python"] = platform.python_version()
    with contextlib.suppress(OSError):
        info["kernel"] = Path("/proc/sys/kernel/osrelease").read_text().strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True, check=False,
                             timeout=30).stdout.strip()
        if out:
            info["rabbitmq"] = out
    with contextlib.suppress(Exception):
        client: redis.Redis[bytes] = redis.Redis.from_url(REDIS_URL)
        info["redis"] = client.info("server").get("redis_version")
        client.close()
    return info


# -- processes ---------------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size (``VmHWM``) of a running process in MiB, or ``None`` if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the kernel picks it).

    Not reserved: another process may bind it before the child this is meant for does, so a caller starting a
    server on it retries on "address already in use" (``hub serve`` takes a port, not an inherited socket).
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def cpu_of(pids: Sequence[int]) -> float | None:
    """Summed user + system CPU seconds of ``pids``; ``None`` when any is unreadable or there is none."""
    values = [process_cpu_s(pid) for pid in pids]
    if not pids or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def _is_rabbit_server(pid: int) -> bool:
    """Whether the ``beam.smp`` process ``pid`` is the RabbitMQ node (``-s rabbit boot``), not a CLI tool's VM."""
    try:
        return b"\x00-s\x00rabbit\x00boot\x00" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def server_pids() -> dict[str, list[int]]:
    """Pids of the RabbitMQ (``beam.smp`` of the node, not of ``rabbitmqctl``) and Redis servers on this machine."""
    beams = find_pids("beam.smp")
    return {"rabbitmq": [pid for pid in beams if _is_rabbit_server(pid)] or beams,
            "redis": find_pids("redis-server")}


def postgres_cpu_s() -> float | None:
    """User + system CPU seconds of the PostgreSQL server on this machine: every ``postgres`` process (the
    postmaster, its background processes, one backend per connection: they come and go, so the set is read
    anew each time) plus what the postmaster's children used before they exited (its ``cutime`` + ``cstime``:
    a backend's CPU moves there when it is reaped). ``None`` without a server."""
    total, found = 0.0, False
    pids = set(find_pids("postgres"))
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile: its CPU is in the postmaster's children's time
        total += int(fields[11]) + int(fields[12])
        if int(fields[1]) not in pids:  # the postmaster (its parent is not a postgres process)
            total += int(fields[13]) + int(fields[14])
            found = True
    return total / _CLK_TCK if found else None


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine spent busy (all cores, ``/proc/stat``: everything but idle and I/O wait,
    so with interrupts, which tick accounting also charges to the process they interrupt, and steal, the
    time the hypervisor gave to other guests)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK
