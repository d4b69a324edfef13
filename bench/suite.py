"""The hub benchmark: ingress, end to end, scaling and cost per event, against baselines of the same run.

One module past 400 lines on purpose: it is the benchmark's script, the measurements in the order they run;
the machinery it uses lives in ``bench/common.py``, ``procs.py`` and ``loadgen.py``.

Processes (all on this machine, with the real RabbitMQ and Redis):

- the ingress: ``python -m bench.hubproc ingress``, which is ``hub serve`` (``build_app`` + ``build_ingress``
  + uvicorn) with the hub's routing table cut to the measured flow (the fan-out: ``erp.project.created.v1``
  also goes to flows that need simulators), a generated sources file (``HUB_SOURCES_FILE``, the webhook
  secret in an environment variable) and a free port;
- hub workers: ``python -m hub worker --threads 8`` (1 or 2 processes), ``HUB_QUEUE_PREFIX`` = the run's prefix;
- for the flows: one more ingress per flow (``$BENCH_FLOW``) and the ERP and Graph simulators (``bench.sims``);
- bare workers for baseline (b): ``python -m bench.noop_worker`` (Dramatiq, no hub middleware, no-op actor);
- this process: the load generator (HTTP/1.1 keep-alive client on asyncio, requests signed before each
  phase), the ``hub.events`` subscriber, the raw publishers of the baselines, and the CPU accounting
  (``/proc/<pid>/stat`` of every process above and of the RabbitMQ and Redis servers).

Measured, each as the median of ``repeats`` repetitions with min and max, the baselines interleaved with
what they are compared to (order alternating between repetitions) so that drift on a noisy machine hits
both alike; every ratio divides two figures of this run:

1. baseline (a): raw confirmed persistent publishing with aio-pika on one channel with N publishes
   awaiting their confirm, N = the confirms the ingress has in flight at each measured point
   (concurrency x events per request; the fan-out is the only subscriber); plus pika one at a time;
2. ingress: accepted events/s (202 after every confirm) for single-event and batch requests at several
   client concurrencies, with p50/p95/p99 request latency, against (a) at the same N. No worker runs
   meanwhile; the actor queue is purged after each point;
3. end to end: business events/s from the first POST until the subscriber received the fan-out's
   publish of every event, with 1 and 2 worker processes, driven with batches of 10 and with single
   events (8 clients each), against baseline (b): the bare Dramatiq no-op actor with as many
   processes, fed by a raw aio-pika publisher;
4. latency at a fixed offered load: half the single-event end-to-end maximum of the same worker count,
   offered open loop as single-event requests; latency from each request's scheduled send time to the
   subscriber's receipt of its fan-out publish;
5. cost per event: CPU ms per business event of each process during the end-to-end phases, and the
   share of tracing (the same phases with ``OTEL_SDK_DISABLED=true`` in the ingress and the workers);
   peak RSS (``VmHWM``) of the ingress and of a worker;
6. flows: each flow of ``bench.flows.FLOWS`` (the fan-out, provisioning, master data and all three: the
   hub's own routing) on an ingress of its own, with the ERP and Graph simulators at zero latency in processes
   of their own (``bench.sims``), from the first POST until the last event's last side effects reached
   ``hub.events``, against baseline (b), with CPU ms per event of every component (PostgreSQL and the
   simulators too). ``--flows-only`` runs this section alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import loadgen
from bench.baseline import AsyncRawPublisher, measure_raw_publish
from bench.common import (
    REDIS_URL,
    STALL_S,
    BenchError,
    Stats,
    cleanup,
    cpu_of,
    machine_busy_s,
    new_prefix,
    percentile,
    postgres_cpu_s,
    server_pids,
)
from bench.flows import FANOUT, FLOW_ENV, FLOWS, Flow
from bench.noop_worker import ACTOR as NOOP_ACTOR
from bench.noop_worker import queue_name as noop_queue
from bench.noop_worker import stats_key as noop_stats_key
from bench.procs import (
    BENCH_SOURCE,
    Ingress,
    Proc,
    new_webhook_secret,
    start_hub_workers,
    start_ingress,
    start_noop_workers,
    stop_all,
    write_sources_file,
)
from bench.sims import Simulators, start_simulators

#: The targets (reported, not asserted). The ingress's, per request kind and clients (ratio to (a)); a kind with
#: clients None: every point of that kind.
TARGET_INGRESS_RATIOS: dict[tuple[str, int | None], float] = {("single", 8): 0.30, ("batch10", None): 0.50}
#: End to end with batches (the drive), per worker process count (ratio to (b)).
TARGET_E2E_DRIVE = (10, 8)
TARGET_E2E_RATIOS: dict[int, float] = {1: 0.35, 2: 0.30}
#: CPU per business event of everything (batches, 1 worker process): at most half of the 3.26 ms of 2026-11-27.
TARGET_CPU_MS = 3.26 / 2
TARGET_P99_MS = 25.0


def ingress_target(mode: str, concurrency: int) -> float | None:
    """The ratio to (a) an ingress point must reach, or None when it has none."""
    return TARGET_INGRESS_RATIOS.get((mode, concurrency), TARGET_INGRESS_RATIOS.get((mode, None)))
#: Connections of the open-loop client; requests beyond them wait for one (their latency counts from the
#: scheduled time all the same).
LATENCY_CONNECTIONS = 64
#: An open-loop phase stops when this many requests are unanswered (the server fell far behind).
LATENCY_MAX_OUTSTANDING = 1000
#: Environment that turns OpenTelemetry's SDK into no-ops (spans are not recorded at all).
NO_TRACING = {"OTEL_SDK_DISABLED": "true"}


@dataclass(frozen=True)
class Config:
    """Sizes of a run; every phase is bounded by a count and by a duration."""

    repeats: int = 5
    #: (events per request, client concurrency) of each ingress point; 1 = a structured single event.
    ingress_points: tuple[tuple[int, int], ...] = ((1, 1), (1, 8), (1, 32), (10, 1), (10, 8), (10, 32),
                                                  (50, 1), (50, 8), (50, 32))
    #: Points measured again with httpx as the load generator's client (the client's own cost, shown).
    httpx_points: tuple[tuple[int, int], ...] = ((1, 8), (1, 32))
    ingress_events: int = 3000
    ingress_max_s: float = 2.0
    raw_count: int = 4000
    raw_max_s: float = 1.0
    pika_count: int = 1000
    worker_counts: tuple[int, ...] = (1, 2)
    worker_threads: int = 8
    #: How the end-to-end maximum is driven: (events per request, client concurrency) of each drive. The
    #: first is the capacity figure compared with (b); the single-event drive sets the latency load.
    e2e_drives: tuple[tuple[int, int], ...] = ((10, 8), (1, 8))
    e2e_events: int = 1500
    e2e_max_s: float = 8.0
    warmup_events: int = 300
    noop_messages: int = 4000
    noop_in_flight: int = 80
    latency_repeats: int = 5
    latency_s: float = 4.0
    tracing_repeats: int = 3
    http_client: str = "raw"
    #: The flows measured end to end with the simulators (names of ``bench.flows.FLOWS``), each posted to an
    #: ingress of its own routing the load's type to the flow's actors only, with ``flow_processes`` hub worker
    #: processes, driven by ``flow_drive``, with ``flow_events`` events a repetition (per flow: provisioning
    #: costs about ten times what the fan-out does, so it gets fewer).
    flows: tuple[str, ...] = ("fanout", "provisioning", "master_data", "all")
    flow_processes: int = 1
    flow_drive: tuple[int, int] = (10, 8)
    flow_events: tuple[tuple[str, int], ...] = (("fanout", 600), ("provisioning", 100), ("master_data", 200),
                                                ("all", 80))
    flow_warmup_events: int = 40
    #: Added by the ERP and Graph simulators before every answer (0: zero latency).
    sim_latency_ms: float = 0.0
    #: Only the flows section (``--flows-only``): no ingress, end-to-end, latency or tracing section.
    flows_only: bool = False


QUICK = Config(repeats=2, ingress_points=((1, 1), (1, 8), (10, 8), (50, 8)), httpx_points=((1, 8),),
               ingress_events=600,
               ingress_max_s=1.0, raw_count=1000, raw_max_s=0.5, pika_count=300, e2e_events=400,
               warmup_events=100, noop_messages=800, latency_repeats=1, latency_s=2.0, tracing_repeats=1,
               flow_events=(("fanout", 100), ("provisioning", 30), ("master_data", 50), ("all", 30)),
               flow_warmup_events=20)


# -- CPU accounting -----------------------------------------------------------------------------------
#: A group of processes measured: their pids, or a function reading the group's CPU seconds (a server whose
#: processes come and go: PostgreSQL).
Group = Sequence[int] | Callable[[], float | None]


class CpuMeter:
    """CPU seconds of named process groups, read from ``/proc`` at the start and end of a phase."""

    def __init__(self, groups: dict[str, Group]) -> None:
        self.groups = {name: pids if callable(pids) else list(pids) for name, pids in groups.items()}

    def read(self) -> dict[str, float | None]:
        """The groups' CPU seconds so far, with the whole machine's busy CPU seconds (``_machine``) and the time."""
        return {**{name: pids() if callable(pids) else cpu_of(pids) for name, pids in self.groups.items()},
                "_machine": machine_busy_s(), "_wall": time.monotonic()}

    @staticmethod
    def per_event_ms(before: dict[str, float | None], after: dict[str, float | None], events: int
                     ) -> dict[str, float | None]:
        """CPU ms per event of each group between two readings (``None`` where unreadable)."""
        out: dict[str, float | None] = {}
        for name, start in before.items():
            if name.startswith("_"):
                continue
            end = after.get(name)
            out[name] = None if start is None or end is None or events <= 0 else 1000 * (end - start) / events
        return out

    @staticmethod
    def other_cores(before: dict[str, float | None], after: dict[str, float | None]) -> float | None:
        """Cores used meanwhile by processes outside the groups (other users of the machine, and steal time):
        the noise gauge. Idle processes of this run (e.g. the bare workers during a hub phase) count too."""
        values = [(before.get(k), after.get(k)) for k in before]
        if any(a is None or b is None for a, b in values):
            return None
        delta = {k: float(after[k]) - float(before[k]) for k in before}  # type: ignore[arg-type]
        ours = sum(v for k, v in delta.items() if not k.startswith("_"))
        return None if delta["_wall"] <= 0 else max(0.0, (delta["_machine"] - ours) / delta["_wall"])


def _stats(values: Iterable[float | None]) -> Stats | None:
    known = [v for v in values if v is not None]
    return Stats.of(known) if known else None


def _dict(stats: Stats | None, digits: int = 3) -> dict[str, Any] | None:
    return None if stats is None else stats.as_dict(digits)


# -- measurements -------------------------------------------------------------------------------------
@dataclass
class IngressRep:
    """One repetition of one ingress point, with its baseline (a) measured just before."""

    baseline_msgs_per_s: float
    events_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_ms_per_event: dict[str, float | None]
    failures: dict[str, int]
    events: int
    other_cores: float | None


@dataclass
class E2eRep:
    """One end-to-end repetition."""

    events_per_s: float
    events: int
    cpu_ms_per_event: dict[str, float | None]
    failures: dict[str, int]
    other_cores: float | None


@dataclass
class NoopRep:
    """One repetition of baseline (b)."""

    msgs_per_s: float
    messages: int
    cpu_ms_per_message: dict[str, float | None]
    other_cores: float | None


@dataclass
class LatencyRep:
    """One open-loop repetition at a fixed offered load."""

    offered_per_s: float
    achieved_per_s: float
    events: int
    e2e_p50_ms: float
    e2e_p95_ms: float
    e2e_p99_ms: float
    e2e_max_ms: float
    ingress_p50_ms: float
    ingress_p99_ms: float
    failures: dict[str, int]
    overloaded: bool
    other_cores: float | None


@dataclass
class Run:
    """Everything one run measured (turned into the report at the end)."""

    pika: dict[str, Any] = field(default_factory=dict)
    ingress: dict[tuple[int, int, str], list[IngressRep]] = field(default_factory=dict)  # (batch, clients, client)
    e2e: dict[tuple[int, int, int], list[E2eRep]] = field(default_factory=dict)  # (processes, batch, concurrency)
    noop: dict[int, list[NoopRep]] = field(default_factory=dict)
    latency: dict[int, list[LatencyRep]] = field(default_factory=dict)
    untraced: dict[tuple[int, int, int], list[E2eRep]] = field(default_factory=dict)
    peak_rss_mb: dict[str, float | None] = field(default_factory=dict)
    server_background_cpu_ms_per_s: dict[str, dict[str, float | None]] = field(default_factory=dict)
    flows: dict[str, list[E2eRep]] = field(default_factory=dict)  # flow name -> repetitions
    flow_noop: list[NoopRep] = field(default_factory=list)  # baseline (b) of the flows section


class Bench:
    """One run: the processes, the publishers, the subscriber and the measurements."""

    def __init__(self, cfg: Config, prefix: str, work_dir: Path, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.work_dir = work_dir
        self.log = log
        self.secret = new_webhook_secret()
        self.sources_file = write_sources_file(work_dir)
        self.factory = loadgen.RequestFactory(self.secret, tag=prefix[1:7].upper())
        self.servers = server_pids()
        self.redis: redis.Redis[bytes] = redis.Redis.from_url(REDIS_URL)
        self.ingress: Ingress | None = None
        self.sims: Simulators | None = None
        self.procs: list[Proc] = []  # every child still to stop
        self.run = Run()
        self.hub_body = b""
        self.noop_body = b""

    # -- processes ------------------------------------------------------------------------------
    def start_ingress(self, extra_env: dict[str, str] | None = None) -> Ingress:
        """(Re)start the ingress."""
        if self.ingress is not None:
            self.stop([self.ingress.proc])
        self.ingress = start_ingress(self.prefix, self.work_dir, secret=self.secret,
                                     sources_file=self.sources_file, extra_env=extra_env)
        self.procs.append(self.ingress.proc)
        return self.ingress

    def stop(self, procs: Sequence[Proc]) -> None:
        """Stop ``procs`` and forget them."""
        stop_all(procs)
        self.procs = [p for p in self.procs if p not in procs]

    def close(self) -> None:
        """Stop every child process still running."""
        self.stop(list(self.procs))
        self.redis.close()

    def _client(self, concurrency: int, kind: str | None = None, ingress: Ingress | None = None) -> loadgen.Client:
        ingress = ingress or self.ingress
        assert ingress is not None
        return loadgen.CLIENTS[kind or self.cfg.http_client](ingress.url, concurrency)

    def _meter(self, ingress: Ingress | None = None, **groups: Group) -> CpuMeter:
        ingress = ingress or self.ingress
        assert ingress is not None
        sims: dict[str, Group] = {} if self.sims is None else {"erp_sim": [self.sims.erp.pid],
                                                                "graph_sim": [self.sims.graph.pid]}
        return CpuMeter({"ingress": [ingress.proc.pid], **groups, "rabbitmq": self.servers["rabbitmq"],
                         "redis": self.servers["redis"], "postgres": postgres_cpu_s, **sims,
                         "loadgen": [os.getpid()]})

    # -- bodies ---------------------------------------------------------------------------------
    def build_bodies(self) -> None:
        """A message body like the ingress's (fan-out message of one event) and the same for the no-op actor."""
        from dramatiq import Message

        from hub.cli.scenario import acme_engagement
        from hub.events import event_summary, make_event, to_message_body
        from hub.registry import SchemaRegistry

        record = {**acme_engagement(), "project_code": "ENG-RAW-0000001"}
        event = make_event(SchemaRegistry.load(), type=loadgen.EVENT_TYPE, source=BENCH_SOURCE,
                           subject=record["project_code"], data=record,
                           partitionkey=f"project:{record['project_code']}")
        carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        for actor, queue, attr in (("fanout", f"{self.prefix}.fanout", "hub_body"),
                                   (NOOP_ACTOR, noop_queue(self.prefix), "noop_body")):
            message: Message[Any] = Message(queue_name=queue, actor_name=actor, args=(to_message_body(event),),
                                            kwargs={}, options={"hub_event": event_summary(event),
                                                                "trace_context": carrier})
            setattr(self, attr, message.encode())

    # -- (a) and ingress ------------------------------------------------------------------------
    async def ingress_section(self, raw: AsyncRawPublisher) -> None:
        """Baseline (a) and the ingress points, interleaved."""
        cfg = self.cfg
        raw_queue = f"{self.prefix}.raw_async"
        await raw.declare_like_actor_queue(raw_queue)
        fanout_queue = f"{self.prefix}.fanout"
        # warm-up: connections, caches, the first requests of each process
        await raw.publish(raw_queue, self.hub_body, count=500, in_flight=8, max_duration_s=2)
        await raw.purge(raw_queue)
        await self._ingress_point(1, 8, events=cfg.warmup_events)
        await raw.purge(fanout_queue)
        all_points = [(b, c, cfg.http_client) for b, c in cfg.ingress_points]
        all_points += [(b, c, "httpx") for b, c in cfg.httpx_points if cfg.http_client != "httpx"]
        for rep in range(cfg.repeats):
            for batch, concurrency, kind in all_points if rep % 2 == 0 else all_points[::-1]:
                in_flight = batch * concurrency
                done, seconds, _ = await raw.publish(raw_queue, self.hub_body, count=cfg.raw_count,
                                                     in_flight=in_flight, max_duration_s=cfg.raw_max_s)
                await raw.purge(raw_queue)
                rep_result = await self._ingress_point(batch, concurrency, events=cfg.ingress_events,
                                                       baseline=done / seconds, kind=kind)
                await raw.purge(fanout_queue)
                self.run.ingress.setdefault((batch, concurrency, kind), []).append(rep_result)
                self.log(f"  ingress rep {rep + 1}/{cfg.repeats} {_mode(batch)} c={concurrency} ({kind}): "
                         f"{rep_result.events_per_s:.0f} events/s (p99 {rep_result.p99_ms:.1f} ms), baseline (a) "
                         f"N={in_flight}: {rep_result.baseline_msgs_per_s:.0f} msgs/s; other load "
                         f"{_num(rep_result.other_cores)} cores"
                         + (f", FAILURES {rep_result.failures}" if rep_result.failures else ""))

    async def _ingress_point(self, batch: int, concurrency: int, *, events: int, baseline: float = 0.0,
                             kind: str | None = None) -> IngressRep:
        client = self._client(concurrency, kind)
        try:
            requests = self.factory.requests(events, batch, client)
            await client.warm()
            meter = self._meter()
            before = meter.read()
            result = await loadgen.closed_loop(client, requests, concurrency=concurrency,
                                               max_duration_s=self.cfg.ingress_max_s)
            after = meter.read()
        finally:
            await client.aclose()
        accepted = result.accepted_events
        if not accepted:
            raise BenchError(f"ingress {_mode(batch)} c={concurrency}: nothing accepted ({result.failures})")
        latencies = [1000 * v for v in result.latencies_s()]
        return IngressRep(
            baseline_msgs_per_s=baseline, events_per_s=accepted / result.elapsed_s,
            p50_ms=percentile(latencies, 0.50), p95_ms=percentile(latencies, 0.95), p99_ms=percentile(latencies, 0.99),
            cpu_ms_per_event=CpuMeter.per_event_ms(before, after, accepted), failures=result.failures,
            events=accepted, other_cores=CpuMeter.other_cores(before, after))

    # -- (b) and end to end ---------------------------------------------------------------------
    def _noop_totals(self, pids: Sequence[int]) -> tuple[int, float]:
        count, last = 0, 0.0
        for pid in pids:
            values = self.redis.hgetall(noop_stats_key(self.prefix, pid))
            count += int(float(values.get(b"count", 0)))
            last = max(last, float(values.get(b"last", 0.0)))
        return count, last

    async def noop_phase(self, raw: AsyncRawPublisher, workers: Sequence[Proc], messages: int) -> NoopRep:
        """Baseline (b): publish ``messages`` to the no-op actor while its workers consume; until all processed."""
        pids = [p.pid for p in workers]
        meter = CpuMeter({"workers": pids, "rabbitmq": self.servers["rabbitmq"], "redis": self.servers["redis"],
                          "loadgen": [os.getpid()]})
        start_count, _ = self._noop_totals(pids)
        before = meter.read()
        done, _, started = await raw.publish(noop_queue(self.prefix), self.noop_body, count=messages,
                                             in_flight=self.cfg.noop_in_flight, max_duration_s=60.0)
        target = start_count + done
        deadline = time.monotonic() + max(60.0, done * 0.05)
        last_change, seen = time.monotonic(), start_count
        while True:
            count, last = self._noop_totals(pids)
            if count >= target:
                break
            now = time.monotonic()
            if count != seen:
                seen, last_change = count, now
            if not all(p.alive() for p in workers):
                raise BenchError(f"baseline (b): a no-op worker died at {count - start_count}/{done}")
            if now - last_change > STALL_S or now > deadline:
                raise BenchError(f"baseline (b): stuck at {count - start_count}/{done}")
            await asyncio.sleep(0.005)
        after = meter.read()
        return NoopRep(msgs_per_s=done / (last - started), messages=done,
                       cpu_ms_per_message=CpuMeter.per_event_ms(before, after, done),
                       other_cores=CpuMeter.other_cores(before, after))

    async def e2e_phase(self, sub: loadgen.Subscriber, workers: Sequence[Proc], events: int, drive: tuple[int, int],
                        *, what: str, flow: Flow = FANOUT, ingress: Ingress | None = None) -> E2eRep:
        """Post ``events`` through the ingress (of ``flow``) as fast as it accepts them; until every last side effect
        of the flow arrived (the fan-out's publish of each event, by default). The ERP's projects of the events are
        seeded first when the flow reads them."""
        cfg = self.cfg
        batch, concurrency = drive
        client = self._client(concurrency, ingress=ingress)
        try:
            requests = self.factory.requests(events, batch, client)
            ids = [e for r in requests for e in r.event_ids]
            if flow.simulators:
                assert self.sims is not None
                self.sims.seed_projects([c for r in requests for c in r.codes])
            await client.warm()
            sub.expect(ids, [c for r in requests for c in r.codes], flow.effects)
            meter = self._meter(ingress, workers=[p.pid for p in workers])
            before = meter.read()
            result = await loadgen.closed_loop(client, requests, concurrency=concurrency,
                                               max_duration_s=cfg.e2e_max_s)
        finally:
            await client.aclose()
        if result.failures:
            sub.forget(ids)
            raise BenchError(f"{what}: the ingress refused requests: {result.failures}")
        if result.stopped_by_time:  # events never sent are not waited for
            sent = {e for o_req in requests[:len(result.outcomes)] for e in o_req.event_ids}
            sub.forget([e for e in ids if e not in sent])
            ids = [e for e in ids if e in sent]
        last = await sub.wait_all(ids, what=what, deadline_s=max(120.0, len(ids) * 0.1))
        after = meter.read()
        sub.forget(ids)
        return E2eRep(events_per_s=len(ids) / (last - result.start), events=len(ids),
                      cpu_ms_per_event=CpuMeter.per_event_ms(before, after, len(ids)), failures=result.failures,
                      other_cores=CpuMeter.other_cores(before, after))

    async def latency_phase(self, sub: loadgen.Subscriber, workers: Sequence[Proc], rate: float, *,
                            what: str) -> LatencyRep:
        """Single-event requests open loop at ``rate``/s; latency from scheduled send to fan-out receipt."""
        cfg = self.cfg
        count = max(20, int(rate * cfg.latency_s))
        client = self._client(LATENCY_CONNECTIONS)
        try:
            requests = self.factory.requests(count, 1, client)
            ids = [r.event_ids[0] for r in requests]
            await client.warm()
            sub.expect(ids)
            meter = self._meter(workers=[p.pid for p in workers])
            before = meter.read()
            result = await loadgen.open_loop(client, requests, rate=rate, max_duration_s=cfg.latency_s * 2,
                                             max_outstanding=LATENCY_MAX_OUTSTANDING)
        finally:
            await client.aclose()
        if not result.outcomes:
            raise BenchError(f"{what}: no request sent")
        # outcomes are in request order (gathered in the order the tasks were created)
        by_id = {request.event_ids[0]: outcome for request, outcome in zip(requests, result.outcomes, strict=False)
                 if outcome.status == 202}
        sub.forget([e for e in ids if e not in by_id])  # not sent, or refused: never published
        if not by_id:
            raise BenchError(f"{what}: nothing accepted ({result.failures})")
        await sub.wait_all(list(by_id), what=what, deadline_s=max(120.0, len(by_id) * 0.1))
        after = meter.read()
        e2e = [1000 * (sub.arrived[e] - o.scheduled) for e, o in by_id.items()]
        http = [1000 * (o.answered - o.scheduled) for o in by_id.values()]
        sub.forget(list(by_id))
        start = min(o.scheduled for o in result.outcomes)
        duration = max(o.scheduled for o in result.outcomes) - start
        return LatencyRep(
            offered_per_s=rate, achieved_per_s=(len(result.outcomes) - 1) / duration if duration > 0 else 0.0,
            events=len(by_id), e2e_p50_ms=percentile(e2e, 0.5), e2e_p95_ms=percentile(e2e, 0.95),
            e2e_p99_ms=percentile(e2e, 0.99), e2e_max_ms=max(e2e), ingress_p50_ms=percentile(http, 0.5),
            ingress_p99_ms=percentile(http, 0.99), failures=result.failures, overloaded=result.overloaded,
            other_cores=CpuMeter.other_cores(before, after))

    def _background(self) -> dict[str, float | None]:
        """CPU ms per second the RabbitMQ, Redis and PostgreSQL servers use with this run idle (other users' load)."""
        meter = CpuMeter({"rabbitmq": self.servers["rabbitmq"], "redis": self.servers["redis"],
                          "postgres": postgres_cpu_s})
        before = meter.read()
        time.sleep(1.0)
        after = meter.read()
        return CpuMeter.per_event_ms(before, after, 1)

    async def e2e_section(self, raw: AsyncRawPublisher, sub: loadgen.Subscriber, processes: int) -> None:
        """Baseline (b) and the end-to-end maximum of each drive interleaved, then the latency at half the maximum."""
        cfg = self.cfg
        self.run.server_background_cpu_ms_per_s[f"before the {processes}-worker phases"] = self._background()
        noop = start_noop_workers(self.prefix, self.work_dir, processes, threads=cfg.worker_threads)
        self.procs += noop
        hub = start_hub_workers(self.prefix, self.work_dir, processes, threads=cfg.worker_threads)
        self.procs += hub
        self.log(f"  {processes} hub worker process(es) and {processes} no-op worker process(es) consuming")
        await self.noop_phase(raw, noop, max(200, cfg.noop_messages // 4))
        for drive in cfg.e2e_drives:
            await self.e2e_phase(sub, hub, cfg.warmup_events, drive, what="warm-up")
        kinds: list[tuple[int, int] | None] = [None, *cfg.e2e_drives]  # None: baseline (b)
        for rep in range(cfg.repeats):
            figures = []
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                if kind is None:
                    n = await self.noop_phase(raw, noop, cfg.noop_messages)
                    self.run.noop.setdefault(processes, []).append(n)
                    figures.append(f"baseline (b) {n.msgs_per_s:.0f} msgs/s (other load {_num(n.other_cores)})")
                else:
                    e = await self.e2e_phase(sub, hub, cfg.e2e_events, kind,
                                             what=f"end to end, {processes} worker(s), {_drive(kind)}")
                    self.run.e2e.setdefault((processes, *kind), []).append(e)
                    figures.append(f"{_drive(kind)} {e.events_per_s:.0f} events/s (other load {_num(e.other_cores)})")
            self.log(f"  end to end rep {rep + 1}/{cfg.repeats}, {processes} worker(s): " + ", ".join(figures))
        self.stop(noop)
        single = next((d for d in cfg.e2e_drives if d[0] == 1), cfg.e2e_drives[0])
        half = Stats.of([r.events_per_s for r in self.run.e2e[(processes, *single)]]).median / 2
        for rep in range(cfg.latency_repeats):
            lat = await self.latency_phase(sub, hub, half, what=f"latency, {processes} worker(s)")
            self.run.latency.setdefault(processes, []).append(lat)
            self.log(f"  latency rep {rep + 1}/{cfg.latency_repeats} at {half:.0f} events/s offered, "
                     f"{processes} worker(s): p50 {lat.e2e_p50_ms:.1f} ms, p99 {lat.e2e_p99_ms:.1f} ms; other "
                     f"processes used {_num(lat.other_cores)} cores"
                     + (" (OVERLOADED: stopped early)" if lat.overloaded else ""))
        rss = [p.peak_rss_mb() for p in hub]
        self.run.peak_rss_mb[f"worker ({processes}-process run)"] = max((r for r in rss if r is not None),
                                                                        default=None)
        self.stop(hub)

    async def tracing_section(self, sub: loadgen.Subscriber, processes: int) -> None:
        """The first drive's end-to-end phases again with OpenTelemetry's SDK disabled in the ingress and workers."""
        cfg = self.cfg
        assert self.ingress is not None
        drive = cfg.e2e_drives[0]
        self.run.peak_rss_mb["ingress"] = self.ingress.proc.peak_rss_mb()
        self.start_ingress(NO_TRACING)
        hub = start_hub_workers(self.prefix, self.work_dir, processes, threads=cfg.worker_threads,
                                tag="untraced", extra_env=NO_TRACING)
        self.procs += hub
        await self.e2e_phase(sub, hub, cfg.warmup_events, drive, what="warm-up, no tracing")
        for rep in range(cfg.tracing_repeats):
            e = await self.e2e_phase(sub, hub, cfg.e2e_events, drive, what="end to end, no tracing")
            self.run.untraced.setdefault((processes, *drive), []).append(e)
            self.log(f"  no tracing rep {rep + 1}/{cfg.tracing_repeats}, {processes} worker(s), {_drive(drive)}: "
                     f"{e.events_per_s:.0f} events/s (other load {_num(e.other_cores)})")
        self.stop(hub)

    async def flows_section(self, raw: AsyncRawPublisher, sub: loadgen.Subscriber) -> None:
        """Each flow end to end with the simulators at zero latency, interleaved with baseline (b).

        One ingress per flow (``bench.hubproc ingress`` with ``$BENCH_FLOW``: the load's type routed to the flow's
        actors only), all running side by side (an idle one costs nothing); one set of hub workers, which run
        every actor and route what the actors emit as the hub does."""
        cfg = self.cfg
        flows = [FLOWS[name] for name in cfg.flows]
        processes = cfg.flow_processes
        self.run.server_background_cpu_ms_per_s["before the flows"] = self._background()
        if any(flow.simulators for flow in flows):
            self.sims = start_simulators(self.prefix, self.work_dir, latency_ms=cfg.sim_latency_ms)
            self.procs += self.sims.procs
        ingresses: dict[str, Ingress] = {}
        for flow in flows:
            ingresses[flow.name] = start_ingress(self.prefix, self.work_dir, secret=self.secret,
                                                 sources_file=self.sources_file, extra_env={FLOW_ENV: flow.name})
            self.procs.append(ingresses[flow.name].proc)
        noop = start_noop_workers(self.prefix, self.work_dir, processes, threads=cfg.worker_threads)
        self.procs += noop
        hub = start_hub_workers(self.prefix, self.work_dir, processes, threads=cfg.worker_threads, tag="flows",
                                extra_env=self.sims.env() if self.sims else None)
        self.procs += hub
        self.log(f"  flows {', '.join(cfg.flows)}: {processes} hub worker process(es)"
                 + (", ERP and Graph simulators" if self.sims else "") + f", {_drive(cfg.flow_drive)}")
        await self.noop_phase(raw, noop, max(200, cfg.noop_messages // 4))
        for flow in flows:
            await self.e2e_phase(sub, hub, cfg.flow_warmup_events, cfg.flow_drive, what=f"warm-up, {flow.name}",
                                 flow=flow, ingress=ingresses[flow.name])
        kinds: list[Flow | None] = [None, *flows]  # None: baseline (b)
        for rep in range(cfg.repeats):
            figures = []
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                if kind is None:
                    n = await self.noop_phase(raw, noop, cfg.noop_messages)
                    self.run.flow_noop.append(n)
                    figures.append(f"baseline (b) {n.msgs_per_s:.0f} msgs/s")
                else:
                    e = await self.e2e_phase(sub, hub, dict(cfg.flow_events).get(kind.name, 100), cfg.flow_drive,
                                             what=f"flow {kind.name}", flow=kind, ingress=ingresses[kind.name])
                    self.run.flows.setdefault(kind.name, []).append(e)
                    total = sum(v for v in e.cpu_ms_per_event.values() if v is not None)
                    figures.append(f"{kind.name} {e.events_per_s:.0f} events/s ({total:.1f} CPU ms/event, other "
                                   f"load {_num(e.other_cores)})")
            self.log(f"  flows rep {rep + 1}/{cfg.repeats}: " + ", ".join(figures))
        self.stop([*noop, *hub, *(i.proc for i in ingresses.values()), *(self.sims.procs if self.sims else [])])
        self.sims = None

    async def measure(self) -> None:
        """Every section, in order, on one event loop."""
        cfg = self.cfg
        async with AsyncRawPublisher() as raw:
            if not cfg.flows_only:
                self.log("ingress and baseline (a)")
                await self.ingress_section(raw)
            async with loadgen.Subscriber(self.prefix) as sub:
                for processes in () if cfg.flows_only else cfg.worker_counts:
                    self.log(f"end to end and baseline (b), {processes} worker process(es)")
                    await self.e2e_section(raw, sub, processes)
                if cfg.tracing_repeats and not cfg.flows_only:
                    self.log(f"tracing share: OTEL_SDK_DISABLED=true, {max(cfg.worker_counts)} worker process(es)")
                    await self.tracing_section(sub, max(cfg.worker_counts))
                if cfg.flows:
                    self.log(f"flows end to end with the simulators at {_latency(cfg.sim_latency_ms)}, and "
                             "baseline (b)")
                    await self.flows_section(raw, sub)


def _mode(batch: int) -> str:
    return "single" if batch == 1 else f"batch{batch}"


def _drive(drive: tuple[int, int]) -> str:
    return f"{_mode(drive[0])} c={drive[1]}"


def run_suite(cfg: Config, log: Callable[[str], None] = print) -> tuple[Run, dict[str, Any]]:
    """Run every measurement; returns the raw measurements and the run's parameters."""
    prefix = new_prefix()
    work_dir = Path(tempfile.mkdtemp(prefix=f"hub-bench-{prefix}-"))
    log(f"hub benchmark: prefix {prefix}, {cfg.repeats} repetitions, HTTP client {cfg.http_client}")
    bench = Bench(cfg, prefix, work_dir, log)
    not_measured: tuple[str, ...] = ()
    try:
        import actors
        from hub.dispatch import RoutingTable

        ROUTES = RoutingTable.of(actors.SPECS).as_dict()
        loadgen.check_routes(ROUTES, [FLOWS[name] for name in cfg.flows])
        not_measured = loadgen.check_routes(ROUTES)
        if not_measured:
            log(f"flow of the ingress and end-to-end sections: {loadgen.EVENT_TYPE} -> {', '.join(FANOUT.actors)}; "
                f"the hub also routes it to {', '.join(not_measured)}, cut from that ingress's routing table (measured "
                "in the flows section)")
        bench.build_bodies()
        if not cfg.flows_only:
            log("baseline: pika, one confirmed publish at a time")
            bench.run.pika = measure_raw_publish(prefix, body=bench.hub_body, count=cfg.pika_count,
                                                 repeats=cfg.repeats)
            bench.start_ingress()
        asyncio.run(bench.measure())
    finally:
        bench.close()
        cleanup(prefix)
        shutil.rmtree(work_dir, ignore_errors=True)
    params = {**asdict(cfg), "prefix": prefix, "http_client": cfg.http_client, "event_type": loadgen.EVENT_TYPE,
              "flow_actors": list(FANOUT.actors), "also_routed_to_not_measured": list(not_measured),
              "flows": {name: {"actors": list(FLOWS[name].actors), "last_side_effects": list(FLOWS[name].effects)}
                        for name in cfg.flows},
              "flow_drive": list(cfg.flow_drive),
              "ingress_points": [list(p) for p in cfg.ingress_points],
              "httpx_points": [list(p) for p in cfg.httpx_points]}
    return bench.run, params


# -- the report -----------------------------------------------------------------------------------------
def _ratio(num: Stats | None, den: Stats | None) -> float | None:
    if num is None or den is None or den.median == 0:
        return None
    return num.median / den.median


def _cpu_summary(reps: Sequence[Any], attr: str = "cpu_ms_per_event") -> dict[str, Stats | None]:
    names: list[str] = []
    for rep in reps:
        names += [n for n in getattr(rep, attr) if n not in names]
    return {name: _stats(getattr(rep, attr).get(name) for rep in reps) for name in names}


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def build_report(run: Run, cfg: Config) -> dict[str, Any]:
    """The JSON report (figures, ratios, targets) and the tables."""
    ingress_rows = []
    for (batch, concurrency, kind), reps in run.ingress.items():
        eps = Stats.of([r.events_per_s for r in reps])
        base = Stats.of([r.baseline_msgs_per_s for r in reps])
        ratio = _ratio(eps, base)
        counted = kind == cfg.http_client  # the other client's rows only show the load generator's own cost
        ingress_rows.append({
            "mode": _mode(batch), "events_per_request": batch, "concurrency": concurrency, "http_client": kind,
            "confirms_in_flight": batch * concurrency,
            "events_per_s": eps.as_dict(1),
            "p50_ms": Stats.of([r.p50_ms for r in reps]).as_dict(2),
            "p95_ms": Stats.of([r.p95_ms for r in reps]).as_dict(2),
            "p99_ms": Stats.of([r.p99_ms for r in reps]).as_dict(2),
            "baseline_a_msgs_per_s": base.as_dict(1),
            "ratio_to_a": None if ratio is None else round(ratio, 3),
            "ratio_to_a_per_rep": Stats.of([r.events_per_s / r.baseline_msgs_per_s for r in reps]).as_dict(3),
            "cpu_ms_per_event": {k: _dict(v) for k, v in _cpu_summary(reps).items()},
            "failures": sum(sum(r.failures.values()) for r in reps),
            "other_cores": _dict(_stats(r.other_cores for r in reps), 2),
            "target": _verdict(None if ratio is None or not counted or ingress_target(_mode(batch), concurrency) is None
                               else ratio >= (ingress_target(_mode(batch), concurrency) or 0.0)),
        })
    e2e_rows = []
    for (processes, batch, concurrency), reps in run.e2e.items():
        eps = Stats.of([r.events_per_s for r in reps])
        noop_reps = run.noop[processes]
        noop = Stats.of([r.msgs_per_s for r in noop_reps])
        ratio = _ratio(eps, noop)
        e2e_rows.append({
            "worker_processes": processes, "drive": _drive((batch, concurrency)),
            "events_per_request": batch, "concurrency": concurrency,
            "events_per_s": eps.as_dict(1),
            "baseline_b_msgs_per_s": noop.as_dict(1),
            "ratio_to_b": None if ratio is None else round(ratio, 3),
            "ratio_to_b_per_rep": Stats.of([e.events_per_s / n.msgs_per_s
                                            for e, n in zip(reps, noop_reps, strict=False)]).as_dict(3),
            "cpu_ms_per_event": {k: _dict(v) for k, v in _cpu_summary(reps).items()},
            "baseline_b_cpu_ms_per_message": {k: _dict(v) for k, v in
                                              _cpu_summary(noop_reps, "cpu_ms_per_message").items()},
            "other_cores": _dict(_stats(r.other_cores for r in reps), 2),
            "baseline_b_other_cores": _dict(_stats(r.other_cores for r in noop_reps), 2),
        })
    latency_rows = []
    for processes, lat in run.latency.items():
        latency_rows.append({
            "worker_processes": processes,
            "offered_events_per_s": round(lat[0].offered_per_s, 1),
            "achieved_events_per_s": Stats.of([r.achieved_per_s for r in lat]).as_dict(1),
            "events": sum(r.events for r in lat),
            "e2e_p50_ms": Stats.of([r.e2e_p50_ms for r in lat]).as_dict(2),
            "e2e_p95_ms": Stats.of([r.e2e_p95_ms for r in lat]).as_dict(2),
            "e2e_p99_ms": Stats.of([r.e2e_p99_ms for r in lat]).as_dict(2),
            "e2e_max_ms": Stats.of([r.e2e_max_ms for r in lat]).as_dict(2),
            "ingress_p50_ms": Stats.of([r.ingress_p50_ms for r in lat]).as_dict(2),
            "ingress_p99_ms": Stats.of([r.ingress_p99_ms for r in lat]).as_dict(2),
            "overloaded_reps": sum(r.overloaded for r in lat),
            "failures": sum(sum(r.failures.values()) for r in lat),
            "other_cores": _dict(_stats(r.other_cores for r in lat), 2),
        })
    tracing = None
    for key, reps in run.untraced.items():
        traced = _cpu_summary(run.e2e[key])
        untraced = _cpu_summary(reps)
        share = {}
        for name in ("ingress", "workers"):
            a, b = traced.get(name), untraced.get(name)
            share[name] = None if a is None or b is None else round(a.median - b.median, 3)
        tracing = {
            "worker_processes": key[0], "drive": _drive(key[1:]),
            "traced_events_per_s": Stats.of([r.events_per_s for r in run.e2e[key]]).as_dict(1),
            "untraced_events_per_s": Stats.of([r.events_per_s for r in reps]).as_dict(1),
            "untraced_cpu_ms_per_event": {k: _dict(v) for k, v in untraced.items()},
            "untraced_other_cores": _dict(_stats(r.other_cores for r in reps), 2),
            "tracing_cpu_ms_per_event": share,
            "how": "traced = the end-to-end repetitions of this drive (HUB_TRACE_EXPORTER=none: spans recorded, "
                   "not exported); untraced = the same phases with OTEL_SDK_DISABLED=true in the ingress and the "
                   "workers (no-op spans), run afterwards; tracing = difference of the CPU medians",
        }
    flow_rows = []
    noop_reps = run.flow_noop
    for name, reps in run.flows.items():
        eps = Stats.of([r.events_per_s for r in reps])
        noop = Stats.of([r.msgs_per_s for r in noop_reps]) if noop_reps else None
        ratio = _ratio(eps, noop)
        flow = FLOWS[name]
        flow_rows.append({
            "flow": name, "actors": list(flow.actors), "last_side_effects": list(flow.effects),
            "worker_processes": cfg.flow_processes, "drive": _drive(cfg.flow_drive),
            "events_per_s": eps.as_dict(1),
            "baseline_b_msgs_per_s": _dict(noop, 1),
            "ratio_to_b": None if ratio is None else round(ratio, 3),
            "ratio_to_b_per_rep": Stats.of([e.events_per_s / n.msgs_per_s
                                            for e, n in zip(reps, noop_reps, strict=False)]).as_dict(3)
            if noop_reps else None,
            "cpu_ms_per_event": {k: _dict(v) for k, v in _cpu_summary(reps).items()},
            "baseline_b_cpu_ms_per_message": {k: _dict(v) for k, v in
                                              _cpu_summary(noop_reps, "cpu_ms_per_message").items()},
            "other_cores": _dict(_stats(r.other_cores for r in reps), 2),
        })
    report = {"ingress": ingress_rows, "end_to_end": e2e_rows, "latency_at_half_max": latency_rows,
              "flows": flow_rows, "tracing": tracing,
              "peak_rss_mb": {k: None if v is None else round(v, 1) for k, v in run.peak_rss_mb.items()},
              "server_background_cpu_ms_per_s": {
                  k: {name: None if v is None else round(v, 1) for name, v in values.items()}
                  for k, values in run.server_background_cpu_ms_per_s.items()},
              "baselines": {"pika_one_at_a_time": run.pika}}
    report["targets"] = _targets(report, cfg)
    return report


def _targets(report: dict[str, Any], cfg: Config) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in report["ingress"]:
        ratio, target = row["ratio_to_a"], ingress_target(row["mode"], row["concurrency"])
        if row["http_client"] != cfg.http_client or target is None:
            continue
        out.append({"target": f"ingress {row['mode']} c={row['concurrency']} >= {target:.2f} of (a)",
                    "value": ratio, "verdict": _verdict(None if ratio is None else ratio >= target),
                    "detail": f"{row['events_per_s']['median']:.0f} events/s against "
                              f"{row['baseline_a_msgs_per_s']['median']:.0f} msgs/s with "
                              f"{row['confirms_in_flight']} confirms in flight"})
    drive = _drive(TARGET_E2E_DRIVE)
    for row in report["end_to_end"]:
        target = TARGET_E2E_RATIOS.get(row["worker_processes"])
        if row["drive"] != drive or target is None:
            continue
        ratio = row["ratio_to_b"]
        out.append({"target": f"end to end fan-out, {row['worker_processes']} process(es), {drive} >= {target:.2f} "
                              "of (b)",
                    "value": ratio, "verdict": _verdict(None if ratio is None else ratio >= target),
                    "detail": f"{row['events_per_s']['median']:.0f} events/s against "
                              f"{row['baseline_b_msgs_per_s']['median']:.0f} msgs/s (bare no-op actor)"})
        if row["worker_processes"] == 1:
            cpu = {k: _median(v) for k, v in row["cpu_ms_per_event"].items()}
            total = sum(v for v in cpu.values() if v is not None)
            out.append({"target": f"CPU per business event, 1 process, {drive} <= {TARGET_CPU_MS:.2f} ms (half of "
                                  "3.26)",
                        "value": total, "verdict": _verdict(total <= TARGET_CPU_MS),
                        "detail": ", ".join(f"{k} {_num(v)}" for k, v in cpu.items()) + " ms"})
    for lat in report["latency_at_half_max"]:
        p99 = lat["e2e_p99_ms"]["median"]
        out.append({"target": f"p99 ingress -> fan-out < {TARGET_P99_MS:.0f} ms at half max load, "
                              f"{lat['worker_processes']} process(es)",
                    "value": p99, "verdict": _verdict(p99 < TARGET_P99_MS and not lat["overloaded_reps"]),
                    "detail": f"p99 {p99:.1f} ms (p50 {lat['e2e_p50_ms']['median']:.1f} ms) at "
                              f"{lat['offered_events_per_s']:.0f} single events/s offered"
                              + (f"; {lat['overloaded_reps']} repetition(s) overloaded" if lat["overloaded_reps"]
                                 else "")})
    return out


def _cell(d: dict[str, Any] | None, digits: int = 0) -> str:
    if d is None:
        return "n/a"
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}-{d['max']:.{digits}f})"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _median(d: dict[str, Any] | None) -> float | None:
    return None if d is None else float(d["median"])


def markdown_tables(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md (GitHub markdown); cells are median (min-max) of the repetitions."""
    lines = ["### Ingress alone (no worker running; 202 after every confirm)", "",
             "| request | clients | confirms in flight | events/s | p50 ms | p95 ms | p99 ms | baseline (a) msgs/s "
             "| ratio to (a) | ingress CPU ms/event | load gen CPU ms/event | target |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for row in report["ingress"]:
        label = row["mode"] + ("" if row["http_client"] == "raw" else f" ({row['http_client']} client)")
        lines.append(f"| {label} | {row['concurrency']} | {row['confirms_in_flight']} | "
                     f"{_cell(row['events_per_s'])} | {_cell(row['p50_ms'], 1)} | {_cell(row['p95_ms'], 1)} | "
                     f"{_cell(row['p99_ms'], 1)} | {_cell(row['baseline_a_msgs_per_s'])} | "
                     f"{_num(row['ratio_to_a'], 2)} | {_num(_median(row['cpu_ms_per_event'].get('ingress')))} | "
                     f"{_num(_median(row['cpu_ms_per_event'].get('loadgen')))} | {row['target']} |")
    other = _stats(_median(row.get("other_cores")) for row in report["ingress"])
    lines += ["", f"Other processes on the machine used {_num(other and other.median)} cores (median of the points; "
              f"{_num(other and other.min)}-{_num(other and other.max)}) during these phases.",
              "", "### End to end (first POST -> last fan-out publish received on `hub.events`)", "",
              "| worker processes | drive | events/s | baseline (b) msgs/s | ratio to (b) | other load, cores |",
              "|--:|---|--:|--:|--:|--:|"]
    for row in report["end_to_end"]:
        lines.append(f"| {row['worker_processes']} | {row['drive']} | {_cell(row['events_per_s'])} | "
                     f"{_cell(row['baseline_b_msgs_per_s'])} | {_num(row['ratio_to_b'], 2)} | "
                     f"{_cell(row.get('other_cores'), 2)} |")
    lines += ["", "### Latency at half the single-event maximum (open loop, single-event requests)", "",
              "| worker processes | offered events/s | achieved | ingress->fan-out p50 ms | p95 ms | p99 ms | max ms "
              "| 202 p99 ms | overloaded reps | other load, cores |",
              "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for lat in report["latency_at_half_max"]:
        lines.append(f"| {lat['worker_processes']} | {lat['offered_events_per_s']:.0f} | "
                     f"{_cell(lat['achieved_events_per_s'])} | {_cell(lat['e2e_p50_ms'], 1)} | "
                     f"{_cell(lat['e2e_p95_ms'], 1)} | {_cell(lat['e2e_p99_ms'], 1)} | {_cell(lat['e2e_max_ms'], 1)} | "
                     f"{_cell(lat['ingress_p99_ms'], 1)} | {lat['overloaded_reps']} | "
                     f"{_cell(lat.get('other_cores'), 2)} |")
    lines += ["", "### CPU ms per business event (median of the end-to-end repetitions)", "",
              "| worker processes | drive | ingress | workers | RabbitMQ* | Redis* | PostgreSQL* "
              "| load gen + subscriber | total | bare no-op worker, per msg |",
              "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in report["end_to_end"]:
        cpu = {k: _median(v) for k, v in row["cpu_ms_per_event"].items()}
        total = sum(v for v in cpu.values() if v is not None)
        noop = _median(row["baseline_b_cpu_ms_per_message"].get("workers"))
        lines.append(f"| {row['worker_processes']} | {row['drive']} | {_num(cpu.get('ingress'))} | "
                     f"{_num(cpu.get('workers'))} | {_num(cpu.get('rabbitmq'))} | {_num(cpu.get('redis'))} | "
                     f"{_num(cpu.get('postgres'))} | {_num(cpu.get('loadgen'))} | {_num(total)} | {_num(noop)} |")
    lines += _flow_tables(report.get("flows") or [], float(report.get("params", {}).get("sim_latency_ms") or 0.0))
    background = report.get("server_background_cpu_ms_per_s") or {}
    if background:
        lines += ["", "\\* whole server processes, shared with other users of this machine; with this run idle they "
                  "used (CPU ms per second): " + "; ".join(
                      f"{when}: RabbitMQ {_num(v.get('rabbitmq'), 0)}, Redis {_num(v.get('redis'), 0)}, "
                      f"PostgreSQL {_num(v.get('postgres'), 0)}" for when, v in background.items()) + "."]
    tracing = report.get("tracing")
    if tracing:
        share = tracing["tracing_cpu_ms_per_event"]
        lines += ["", f"Tracing ({tracing['worker_processes']} worker processes, {tracing['drive']}; spans recorded "
                  "but not exported, against `OTEL_SDK_DISABLED=true` in the ingress and the workers): ingress "
                  f"{_num(share.get('ingress'))} ms/event, workers {_num(share.get('workers'))} ms/event; "
                  f"end to end {_cell(tracing['untraced_events_per_s'])} events/s without against "
                  f"{_cell(tracing['traced_events_per_s'])} with."]
    rss = report["peak_rss_mb"]
    lines += ["", "Peak RSS (VmHWM): " + ", ".join(f"{k} {_num(v, 0)} MiB" for k, v in rss.items()) + "."]
    pika = report["baselines"]["pika_one_at_a_time"]
    if pika:
        lines += ["", f"pika, one confirmed publish at a time ({pika['body_bytes']} B body): quorum queue "
                  f"{_cell(pika['quorum']['msgs_per_s'])} msgs/s, classic {_cell(pika['classic']['msgs_per_s'])} "
                  "msgs/s."]
    lines += ["", "### Targets (reported, not asserted)", "", "| target | value | verdict | detail |",
              "|---|--:|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {_num(t['value'], 2)} | **{t['verdict']}** | {t['detail']} |")
    return "\n".join(lines)


#: How the flows' last side effects are named in the tables.
_EFFECTS = {"event": "the event's fan-out publish", "dms.workspace.provisioned.v1": "`dms.workspace.provisioned.v1`",
            "hub.project.changed.v1": "`hub.project.changed.v1`"}


def _latency(ms: float) -> str:
    return "zero latency" if not ms else f"{ms:g} ms of latency per answer"


def _flow_tables(rows: Sequence[dict[str, Any]], latency_ms: float = 0.0) -> list[str]:
    """The flows' end-to-end and cost tables (nothing when the run measured no flow)."""
    if not rows:
        return []
    first = rows[0]
    lines = ["", f"### Flows end to end ({first['worker_processes']} worker process(es), {first['drive']}; ERP and "
             f"Graph simulators at {_latency(latency_ms)}; first POST -> last side effect on `hub.events`)", "",
             "| flow | routed to | last side effects | events/s | baseline (b) msgs/s | ratio to (b) "
             "| other load, cores |",
             "|---|---|---|--:|--:|--:|--:|"]
    for row in rows:
        lines.append(f"| {row['flow']} | {', '.join(row['actors'])} | "
                     f"{', '.join(_EFFECTS.get(e, e) for e in row['last_side_effects'])} | "
                     f"{_cell(row['events_per_s'])} | {_cell(row['baseline_b_msgs_per_s'])} | "
                     f"{_num(row['ratio_to_b'], 2)} | {_cell(row.get('other_cores'), 2)} |")
    lines += ["", "### CPU ms per business event by flow (median of the repetitions)", "",
              "| flow | ingress | workers | RabbitMQ* | Redis* | PostgreSQL* | ERP sim | Graph sim "
              "| load gen + subscriber | total | bare no-op worker, per msg |",
              "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in rows:
        cpu = {k: _median(v) for k, v in row["cpu_ms_per_event"].items()}
        total = sum(v for v in cpu.values() if v is not None)
        noop = _median(row["baseline_b_cpu_ms_per_message"].get("workers"))
        lines.append(f"| {row['flow']} | " + " | ".join(_num(cpu.get(k)) for k in (
            "ingress", "workers", "rabbitmq", "redis", "postgres", "erp_sim", "graph_sim", "loadgen"))
            + f" | {_num(total)} | {_num(noop)} |")
    by_flow = {row["flow"]: {k: _median(v) for k, v in row["cpu_ms_per_event"].items()} for row in rows}
    if "master_data" in by_flow and "fanout" in by_flow:
        own = {k: None if v is None or by_flow["fanout"].get(k) is None else v - by_flow["fanout"][k]
               for k, v in by_flow["master_data"].items()}
        lines += ["", "The fan-out publishes `hub.project.changed.v1` only once it has the matter's ethical-wall "
                  "verdict from the project's own event, so master data runs with the fan-out; its own cost, the "
                  f"master_data row less the fanout row: {_num(sum(v for v in own.values() if v is not None))} ms/event"
                  " "
                  f"(workers {_num(own.get('workers'))}, PostgreSQL {_num(own.get('postgres'))})."]
    return lines


def target_lines(report: dict[str, Any]) -> str:
    """``PASS``/``MISS`` per target, with the numbers, for the console."""
    return "\n".join(f"{t['verdict']}  {t['target']}: {_num(t['value'], 2)} ({t['detail']})"
                     for t in report["targets"])
