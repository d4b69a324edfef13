"""The hub's scheduled jobs: run by every worker process, each run claimed once across all of them.

A job runs every ``every`` (shifted by ``offset`` from midnight UTC: ``every=1 day, offset=2 h`` is nightly at
02:00). Time is cut into slots of that length; a worker that finds a slot started claims it in Redis
(``SET <prefix>:jobs:<name>:slot:<n> NX``, living one slot) and runs the job; the others find the slot claimed
and do nothing, so one run per slot happens whatever the number of worker processes and machines. A run
still going when the next slot starts is not started again beside itself (a second key, held while it runs).
A worker that dies mid-run loses that slot's run; the next slot runs it.

A job with a ``grace`` (the nightly reconciliation and readiness rebuild: an hour) starts only within that long of
its slot's start, as cron's jobs do; later in the slot, the slot is marked missed and the job waits for the next
one. Without it, a worker started in the afternoon (a deployment, or Redis restarted empty, which forgets which
slots ran) would start the night's full comparison with repairs at once, under the day's load. A job without a
grace (the subscription's renewal, the flight records' expiry: cheap, and late is worse than early) catches up
whenever a worker finds its slot unclaimed.

Each job's last run (start, end, outcome ``ok`` or ``failed``, what it said or the error's type and text) is
kept in ``<prefix>:jobs:<name>``, for ``hub jobs``, the console and ``/metrics``.

Why not APScheduler or periodiq: APScheduler 3 schedules per process (several worker processes would each run
every job), and the guard across processes has to name the run's slot, which its job functions are not told;
periodiq runs on Dramatiq's own command line and would put each run on the broker as a message. What is
needed here, a slot per job, one Redis key per slot and the record of the last run, is this module.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from hub.errors import HubError
from observability.logging import get_logger, mask_text
from observability.metrics import JOB_LAST_RUN, JOB_RUNS

log = get_logger(__name__)

#: Seconds between two looks at the clock.
TICK_S = 5.0


@dataclass(frozen=True)
class Job:
    """A scheduled job: its name, how often and when it runs, and what it does (returning one line saying what
    it did, or raising)."""

    name: str
    every: timedelta
    run: Callable[[], str]
    offset: timedelta = timedelta(0)
    #: What the console and ``hub jobs`` say it is for.
    description: str = ""
    #: How long after its slot's start a run may still start (None: any time within the slot).
    grace: timedelta | None = None

    def slot(self, now: datetime) -> int:
        """The number of the slot ``now`` falls in."""
        shifted = now.timestamp() - self.offset.total_seconds()
        return int(shifted // self.every.total_seconds())

    def slot_start(self, slot: int) -> datetime:
        """When slot ``slot`` starts."""
        return datetime.fromtimestamp(slot * self.every.total_seconds() + self.offset.total_seconds(), UTC)


@dataclass(frozen=True)
class LastRun:
    """A job's last run as recorded."""

    job: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # running, ok, failed
    detail: str
    runs: int

    def as_dict(self) -> dict[str, Any]:
        """As ``hub jobs --output json`` prints it."""
        return {"job": self.job, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "outcome": self.outcome, "detail": self.detail, "runs": self.runs}


class JobRecord:
    """The last run of each job, in Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def key(self, name: str) -> str:
        """The hash of one job's last run."""
        return f"{self.prefix}:jobs:{name}"

    def started(self, name: str, at: datetime) -> None:
        """A run began."""
        self.client.hset(self.key(name), mapping={"started_at": at.isoformat(), "finished_at": "",
                                                   "outcome": "running", "detail": ""})
        self.client.hincrby(self.key(name), "runs", 1)

    def finished(self, name: str, at: datetime, outcome: str, detail: str) -> None:
        """A run ended."""
        self.client.hset(self.key(name), mapping={"finished_at": at.isoformat(), "outcome": outcome,
                                                   "detail": detail[:500]})

    def last(self, name: str) -> LastRun | None:
        """The job's last run, if it ever ran."""
        stored: dict[bytes, bytes] = self.client.hgetall(self.key(name))  # type: ignore[assignment]
        raw = {k.decode(): v.decode() for k, v in stored.items()}
        if not raw.get("started_at"):
            return None
        return LastRun(job=name, started_at=datetime.fromisoformat(raw["started_at"]),
                       finished_at=datetime.fromisoformat(raw["finished_at"]) if raw.get("finished_at") else None,
                       outcome=raw.get("outcome", "running"), detail=raw.get("detail", ""),
                       runs=int(raw.get("runs", "0")))


class Scheduler:
    """Runs the due jobs of this process in a daemon thread (one look every ``tick_s``), each slot's run claimed
    once across every process (the module docstring)."""

    def __init__(self, jobs: Sequence[Job], client: redis.Redis, *, prefix: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), tick_s: float = TICK_S) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError("two scheduled jobs share a name")
        self.jobs, self.client, self.prefix, self.clock, self.tick_s = tuple(jobs), client, prefix, clock, tick_s
        self.record = JobRecord(client, prefix=prefix)
        self._who = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hub-scheduler", daemon=True)

    def start(self) -> None:
        """Start looking at the clock."""
        if self.jobs:
            self._thread.start()

    def stop(self) -> None:
        """Stop (a run in progress finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def run_due(self) -> list[str]:
        """Run every job whose current slot nobody has claimed yet; returns the names of those run here."""
        ran = []
        for job in self.jobs:
            try:
                if self._claim(job):
                    self._run(job)
                    ran.append(job.name)
            except (redis.RedisError, OSError, HubError) as exc:  # Redis away: the next look tries again
                log.warning("scheduled job not started", job=job.name, reason=type(exc).__name__)
        return ran

    def _claim(self, job: Job) -> bool:
        now = self.clock()
        slot = job.slot(now)
        ttl_ms = max(int(job.every.total_seconds() * 1000), 1000)
        claimed = self.client.set(f"{self.prefix}:jobs:{job.name}:slot:{slot}", self._who, nx=True, px=ttl_ms)
        if not claimed:
            return False
        if job.grace is not None and now - job.slot_start(slot) > job.grace:
            log.info("scheduled job's slot started too long ago; it runs at the next one", job=job.name,
                     slot_start=job.slot_start(slot).isoformat(), next_start=job.slot_start(slot + 1).isoformat())
            JOB_RUNS.labels(job.name, "missed").inc()
            return False
        running = self.client.set(f"{self.prefix}:jobs:{job.name}:running", self._who, nx=True, px=ttl_ms)
        if not running:
            log.info("scheduled job still running from its last slot; this slot's run is skipped", job=job.name)
            JOB_RUNS.labels(job.name, "skipped").inc()
        return bool(running)

    def _run(self, job: Job) -> None:
        started = self.clock()
        self.record.started(job.name, started)
        clock = time.perf_counter()
        try:
            detail = job.run()
        except Exception as exc:  # a failed run is recorded and logged; the next slot tries again
            outcome, detail = "failed", mask_text(f"{type(exc).__name__}: {exc}")
            log.error("scheduled job failed", job=job.name, error=detail)
        else:
            outcome = "ok"
            log.info("scheduled job ran", job=job.name, detail=detail,
                     duration_ms=round((time.perf_counter() - clock) * 1000, 1))
        finally:
            self.client.delete(f"{self.prefix}:jobs:{job.name}:running")
        self.record.finished(job.name, self.clock(), outcome, detail)
        JOB_RUNS.labels(job.name, outcome).inc()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            if self._stop.wait(self.tick_s):
                return


def describe_jobs(jobs: Sequence[Job], record: JobRecord) -> list[dict[str, Any]]:
    """Each job with its schedule and last run, for ``hub jobs`` and the console."""
    described = []
    for job in jobs:
        last = record.last(job.name)
        described.append({"job": job.name, "description": job.description,
                          "every_s": int(job.every.total_seconds()), "offset_s": int(job.offset.total_seconds()),
                          "last": last.as_dict() if last else None})
    return described


class JobGauges:
    """``hub_scheduled_job_last_run_timestamp_seconds{job, outcome}``: when each job last finished, and how."""

    def __init__(self, jobs: Sequence[Job], record: JobRecord) -> None:
        self.jobs, self.record = tuple(jobs), record

    def collect(self) -> Iterator[Metric]:
        """Read each job's last run."""
        family = GaugeMetricFamily(JOB_LAST_RUN, "When each scheduled job last finished (Unix time), by outcome.",
                                   labels=["job", "outcome"])
        for job in self.jobs:
            last = self.record.last(job.name)
            if last is not None and last.finished_at is not None:
                family.add_metric([job.name, last.outcome], last.finished_at.timestamp())
        yield family
