"""One scenario's world and its bookkeeping: private servers, the simulated systems, the hub's own processes
(``hub serve`` and ``hub worker``) on them, the load, the count of topic copies, and the verdict.

:func:`run_scenario` boots everything for one scenario and tears it down afterwards (servers stopped, their
directory removed unless kept). A scenario drives the :class:`Run` it is given (starts the load, waits for a
number of accepted events, breaks something, says when the fault is over), then :meth:`Run.finish` waits for
the hub to settle (no message in any of its queues, handled or waiting for a retry, and an empty outbox)
and counts:

- **lost**: accepted events whose effects never all appeared: the workspace folder in SharePoint, the
  ERP's link to it, and on ``hub.events`` the event itself (the fan-out), ``hub.project.changed.v1``
  (master data) and ``dms.workspace.provisioned.v1`` (provisioning) about its project;
- **duplicated side effects**: a folder created twice at one path, a group granted twice on one item, a
  file uploaded twice (the simulators' own records of committed writes);
- **duplicated topic copies**: copies of one event on ``hub.events`` beyond the first (at-least-once
  delivery allows them; they are counted, not a target);
- **recovery time**: from the end of the fault until every event accepted before it had all its effects;
- **secret leaks**: canaries found in a log or a store (:mod:`chaos.secrets`).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from actors import load_policy
from bench.procs import BENCH_SOURCE, Ingress, Proc, start_hub_workers, start_ingress, stop_all, write_sources_file
from chaos.load import EVENT_TYPE, Publisher, project_codes, seed_erp
from chaos.secrets import Canaries, LeakFinder
from chaos.servers import PrivatePostgres, PrivateRabbit, PrivateRedis, scratch_dir
from chaos.topic import TopicCounter
from hub.db import connect_database, ensure_database
from hub.dlq import DeadLetter, list_dead_letters
from hub.ingress.server import serve_in_thread
from hub.outbox import SqlOutbox
from hub.topics import exchange_name
from simulators.sandbox import Sandbox, running_sandbox

#: The topic events that say an accepted project event went all the way (besides the event itself).
OUTCOMES = ("hub.project.changed.v1", "dms.workspace.provisioned.v1")
#: How long the hub must stay quiet (no message anywhere, an empty outbox) to be settled.
QUIET_S = 2.0
#: How often settling looks at the queues: each look is a ``rabbitmqctl`` (about half a second of CPU) and a
#: database session, taken from the hub it waits for.
POLL_S = 5.0
#: Settings of the hub's processes in a scenario: short leases and backoffs, so a dead worker's message is
#: taken again in seconds (the defaults are 30 s and up to 15 min); everything else as shipped.
HUB_SETTINGS = {"HUB_LEASE_TTL_MS": "5000", "HUB_MIN_BACKOFF_MS": "200", "HUB_MAX_BACKOFF_MS": "10000",
                "HUB_LOG_LEVEL": "INFO", "HUB_LOG_FORMAT": "json"}


@dataclass(frozen=True)
class Options:
    """How big and how fast a scenario runs."""

    events: int = 300
    rate: float = 10.0  # events/s offered: about what the hub handles on 2 cores, so a backlog is the fault's
    workers: int = 2
    threads: int = 8
    settle_s: float = 300.0  # the longest the hub may go without draining anything once the load is over
    progress_s: float = 60.0  # how often a long run says where it is (0: never)
    keep: bool = False  # keep the servers' directory and the logs


@dataclass
class Result:
    """One scenario's figures."""

    scenario: str
    events: int
    accepted: int = 0
    lost: int = 0
    duplicated_effects: int = 0
    duplicated_copies: int = 0
    recovery_s: float | None = None
    leaks: list[str] = field(default_factory=list)
    settled: bool = True
    dead_letters: int = 0
    expected_dead: int = 0  # the poison the scenario put on the queues
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing done twice downstream, no secret anywhere, and the hub settled by itself: no
        dead letter but the poison (a dead letter waits for an operator's replay)."""
        return (self.settled and self.lost == 0 and self.duplicated_effects == 0 and not self.leaks
                and self.dead_letters == self.expected_dead)


class Servers:
    """The three private servers of a scenario."""

    def __init__(self, base: Path, canaries: Canaries) -> None:
        self.base = base
        self.rabbit = PrivateRabbit(base / "rabbitmq", user="hub", password=canaries.amqp_password)
        self.redis = PrivateRedis(base / "redis", password=canaries.redis_password)
        self.postgres = PrivatePostgres(base / "postgres")

    def boot(self) -> None:
        """Start all three; the hub's database is created."""
        self.postgres.boot()
        ensure_database(self.postgres.url)
        self.redis.boot()
        self.rabbit.boot()

    def stop(self) -> None:
        """Stop all three gracefully."""
        for stop in (self.rabbit.stop, self.redis.stop, self.postgres.stop):
            with contextlib.suppress(Exception):
                stop()

    def logs(self) -> list[Path]:
        """Their log files and directories."""
        return [self.rabbit.log_dir, self.rabbit.base / "server.out", self.redis.log_path, self.postgres.log_path]


class Hub:
    """The hub's processes on the private servers: one ingress and ``workers`` worker processes."""

    def __init__(self, prefix: str, work_dir: Path, env: dict[str, str], *, amqp_url: str, threads: int) -> None:
        self.prefix, self.work_dir, self.env, self.amqp_url, self.threads = prefix, work_dir, env, amqp_url, threads
        self.workers: list[Proc] = []
        self.retired: list[Proc] = []
        self._started = 0
        self.ingress: Ingress | None = None

    def start_ingress(self, secret: str) -> str:
        """``hub serve``; returns its URL once ready."""
        sources = write_sources_file(self.work_dir, quota="1000000/10 seconds")
        self.ingress = start_ingress(self.prefix, self.work_dir, secret=secret, sources_file=sources,
                                     extra_env=self.env, command=[sys.executable, "-m", "hub", "serve"])
        return self.ingress.url

    def start_workers(self, count: int) -> None:
        """Start ``count`` more ``hub worker`` processes; returns once each consumes."""
        self.workers += start_hub_workers(self.prefix, self.work_dir, count, threads=self.threads,
                                          tag=f"worker{self._started}-", extra_env=self.env,
                                          amqp_url=self.amqp_url, baseline=len(self.workers))
        self._started += 1

    def kill_worker(self, rng: random.Random) -> Proc:
        """SIGKILL one worker chosen at random (it is not restarted here)."""
        victim = self.workers.pop(rng.randrange(len(self.workers)))
        victim.popen.kill()
        victim.popen.wait(timeout=30)
        self.retired.append(victim)
        return victim

    def processes(self) -> list[Proc]:
        """Every process started, running or not."""
        return [*([self.ingress.proc] if self.ingress else []), *self.workers, *self.retired]

    def stop(self) -> None:
        """SIGTERM every process (the stragglers are killed)."""
        stop_all(self.processes())


class Run:
    """A scenario in progress: the world it runs in, and what it did."""

    def __init__(self, name: str, options: Options, *, servers: Servers, hub: Hub, sandbox: Sandbox,
                 canaries: Canaries, ingress_url: str, topic: TopicCounter, codes: list[str]) -> None:
        self.name, self.options = name, options
        self.servers, self.hub, self.sandbox, self.canaries = servers, hub, sandbox, canaries
        self.topic, self.codes, self.ingress_url = topic, codes, ingress_url
        self.rng = random.Random(name)
        self.publisher: Publisher | None = None
        self.fault_end: float | None = None
        self.notes: list[str] = []
        self.expected_dead: int = 0

    def load(self) -> Publisher:
        """Start posting the scenario's events."""
        budget = self.options.events / self.options.rate + 600.0
        self.publisher = Publisher(self.ingress_url, self.canaries.webhook_secret, self.codes,
                                   rate=self.options.rate, deadline_s=budget).start()
        if self.options.progress_s:
            threading.Thread(target=self._report_load, args=(self.publisher,), name="chaos-progress",
                             daemon=True).start()
        return self.publisher

    def _report_load(self, publisher: Publisher) -> None:
        """Say how far the load is every ``progress_s`` until it is over (faults and all)."""
        while not publisher.result.done.wait(self.options.progress_s):
            self._say(f"{publisher.accepted_count()} of {self.options.events} events accepted, {self._backlog()}")

    def wait_accepted(self, count: int) -> None:
        """Wait until ``count`` events were accepted (or the load is over); see :meth:`Publisher.wait_accepted`."""
        assert self.publisher is not None, "start the load first"
        try:
            self.publisher.wait_accepted(count)
        except TimeoutError as exc:
            raise TimeoutError(f"{self.name}: {exc}") from None

    def fault_over(self) -> None:
        """The fault is over: recovery is timed from now."""
        self.fault_end = time.monotonic()

    def queued(self) -> int:
        """Messages in the hub's queues (ready, or held by a worker: a retry waiting for its time too), dead
        letters aside, and in the topic queue not yet counted."""
        counts = self.servers.rabbit.queue_messages()
        return sum(n for name, n in counts.items() if (name.startswith(f"{self.hub.prefix}.")
                   and not name.endswith(".XQ")) or name == self.topic.queue)

    def backlog(self) -> str:
        """The messages queued and the three longest queues, for a progress line."""
        counts = self.servers.rabbit.queue_messages()
        mine = {name.removeprefix(f"{self.hub.prefix}."): n for name, n in counts.items()
                if name.startswith(f"{self.hub.prefix}.") and not name.endswith(".XQ") and n}
        longest = ", ".join(f"{name} {n}" for name, n in sorted(mine.items(), key=lambda kv: -kv[1])[:3])
        return f"{sum(mine.values())} queued" + (f" ({longest})" if longest else "")

    def dead_letters(self) -> int:
        """Messages in the hub's dead-letter queues."""
        counts = self.servers.rabbit.queue_messages()
        return sum(n for name, n in counts.items() if name.startswith(f"{self.hub.prefix}.") and name.endswith(".XQ"))

    def _dead_letters(self) -> list[DeadLetter]:
        queues = {name.removesuffix(".XQ") for name in self.servers.rabbit.queue_messages()
                  if name.startswith(f"{self.hub.prefix}.") and name.endswith(".XQ")}
        return [letter for queue in sorted(queues)
                for letter in list_dead_letters(self.servers.rabbit.url, queue, None)]

    def outbox_pending(self) -> int:
        """Events written to the outbox and not yet published."""
        database = connect_database(self.servers.postgres.url, prefix=self.hub.prefix, embedded=False)
        try:
            return SqlOutbox(database).count_pending()
        finally:
            database.close()

    def settle(self, load_s: float) -> bool:
        """Wait until the hub is quiet for :data:`QUIET_S` (nothing queued, an empty outbox); False when it
        drained nothing for ``settle_s`` (stuck), or after ``settle_s`` plus the load's ``load_s`` in all (a
        hub that fell behind by the whole load still drains it in that time, at the rate it was offered)."""
        started = time.monotonic()
        deadline = started + self.options.settle_s + load_s
        quiet_since: float | None = None
        fewest: int | None = None
        drained_at = reported = started
        while (now := time.monotonic()) < deadline and now - drained_at < self.options.settle_s:
            try:
                queued: int | None = self.queued()
                quiet = queued == 0 and self.outbox_pending() == 0
            except Exception:  # a server still coming back: not quiet
                queued, quiet = None, False
            if queued is not None and (fewest is None or queued < fewest):
                fewest, drained_at = queued, now
            if not quiet or now - self.topic.last_message < QUIET_S:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= QUIET_S:
                return True
            if self.options.progress_s and now - reported >= self.options.progress_s:
                reported = now
                self._say(f"settling for {now - started:.0f} s: {self._backlog()}")
            time.sleep(POLL_S)
        return False

    def _backlog(self) -> str:
        try:
            return self.backlog()
        except Exception:  # a server down by the scenario's hand
            return "queues unknown"

    def _say(self, line: str) -> None:
        print(f"{self.name}: {line}", flush=True)

    def finish(self, finder: LeakFinder) -> Result:
        """Wait for the load and for the hub to settle; count, and look for the canaries in the stores."""
        assert self.publisher is not None, "start the load first"
        started = time.monotonic()
        published = self.publisher.join()
        loaded = time.monotonic()
        settled = self.settle(loaded - started)
        result = Result(self.name, self.options.events, accepted=len(published.accepted), settled=settled,
                        notes=self.notes)
        result.notes.append(f"load over {loaded - started:.0f} s after the scenario's faults, "
                            f"settled {time.monotonic() - loaded:.0f} s after the load")
        if published.refused:
            result.notes.append(f"refused in the end: {len(published.refused)} "
                                f"({dict(Counter(published.refused.values()))})")
        if published.retried:
            result.notes.append(f"posts answered otherwise and posted again: {dict(published.retried)}")
        if not settled:
            result.notes.append(f"not settled {time.monotonic() - loaded:.0f} s after the load (it may go "
                                f"{self.options.settle_s:.0f} s without draining, and take the load's time plus "
                                f"that in all): {self.queued()} message(s) queued")
        self._count(result, published.accepted)
        dead = self.dead_letters()
        if dead != self.expected_dead:
            result.notes.append(f"dead letters: {dead} (expected {self.expected_dead})")
            result.notes += [f"  {letter.describe()}" for letter in self._dead_letters()[:10]]
        result.dead_letters, result.expected_dead = dead, self.expected_dead
        finder.redis(self.servers.redis.client())
        finder.postgres(self.servers.postgres.url)
        finder.queues(self.servers.rabbit.url, [name for name in self.servers.rabbit.queue_messages()
                                                if name.endswith(".XQ")])
        return result

    def _count(self, result: Result, accepted: dict[str, tuple[str, float]]) -> None:
        erp = {project["code"]: project for project in self.sandbox.erp_state()["projects"]}
        graph = self.sandbox.graph_state()["drives"][self.sandbox.drive_id]["items"]
        workspaces = {path.rsplit("/", 1)[-1] for path, item in graph.items() if item["kind"] == "folder"}
        missing: Counter[str] = Counter()
        done_at: dict[str, float] = {}
        for event_id, (code, _) in accepted.items():
            linked = (erp.get(code, {}).get("custom_fields") or {}).get("workspace_url")
            seen = [self.topic.seen(EVENT_TYPE, code), *(self.topic.seen(kind, code) for kind in OUTCOMES)]
            gaps = [what for what, ok in (("workspace", code in workspaces), ("erp link", bool(linked)),
                                          ("fan-out copy", self.topic.copies_of(BENCH_SOURCE, event_id) > 0),
                                          *((kind, t is not None) for kind, t in zip(OUTCOMES, seen[1:], strict=True)))
                    if not ok]
            missing.update(gaps)
            if gaps:
                result.lost += 1
            elif all(t is not None for t in seen):
                done_at[event_id] = max(t for t in seen if t is not None)
        if missing:
            result.notes.append(f"missing effects: {dict(missing)}")
        requests = self.sandbox.graph_requests()
        twice = sum(n - 1 for kind in ("creates", "uploads") for n in requests[kind].values() if n > 1)
        for item in graph.values():
            twice += sum(n - 1 for n in Counter(p["group"] for p in item["permissions"]).values() if n > 1)
        result.duplicated_effects = twice
        result.duplicated_copies = self.topic.duplicated()
        if self.fault_end is not None:
            before = [done_at.get(event_id) for event_id, (_, at) in accepted.items() if at <= self.fault_end]
            if before and all(t is not None for t in before):
                result.recovery_s = max(0.0, max(t for t in before if t is not None) - self.fault_end)


#: A scenario: drives a run from its start to the end of its fault.
Scenario = Callable[[Run], None]


def run_scenario(name: str, scenario: Scenario, options: Options) -> Result:
    """Boot the servers, the simulators and the hub for ``scenario``, run it, count, tear everything down and
    look for the canaries in every log."""
    canaries = Canaries.generate()
    finder = LeakFinder(canaries)
    base = scratch_dir(f"hubchaos-{name}-")
    work_dir = base / "logs"
    work_dir.mkdir()
    prefix = f"c{uuid.uuid4().hex[:8]}"
    servers = Servers(base, canaries)
    hubs: list[Hub] = []
    with ExitStack() as stack:
        if not options.keep:
            stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.callback(lambda: finder.files([*(p.log_path for h in hubs for p in h.processes()), *servers.logs()]))
        stack.callback(servers.stop)
        servers.boot()
        policy = load_policy(None)
        sandbox = stack.enter_context(running_sandbox(
            serve=serve_in_thread, ingress_events_url=None, webhook_secret=canaries.webhook_secret,
            groups=list(policy.security_groups.known_groups or []), erp_token=canaries.erp_token,
            graph_token=canaries.graph_token))
        env = {**HUB_SETTINGS, "HUB_AMQP_URL": servers.rabbit.url, "HUB_REDIS_URL": servers.redis.url,
               "HUB_DATABASE_URL": servers.postgres.url, "HUB_ERP_URL": sandbox.erp_url,
               "HUB_ERP_TOKEN": canaries.erp_token, "HUB_GRAPH_URL": sandbox.graph_url,
               "HUB_GRAPH_TOKEN": canaries.graph_token, "HUB_GRAPH_DRIVE_ID": sandbox.drive_id,
               "HUB_DOCUSIGN_TOKEN": canaries.docusign_token, "HUB_BOX_URL": sandbox.box_url,
               "HUB_BOX_UPLOAD_URL": f"{sandbox.box_url}/api"}
        hub = Hub(prefix, work_dir, env, amqp_url=servers.rabbit.url, threads=options.threads)
        hubs.append(hub)
        stack.callback(hub.stop)
        ingress_url = hub.start_ingress(canaries.webhook_secret)
        hub.start_workers(options.workers)
        topic = TopicCounter(servers.rabbit.url, f"{prefix}-chaos.topic", exchange=exchange_name(prefix),
                             inspect=lambda data: finder.look("a copy on hub.events", data)).start()
        stack.callback(topic.stop)
        codes = project_codes(prefix, options.events)
        with sandbox.erp() as erp:
            seed_erp(erp, codes)
        run = Run(name, options, servers=servers, hub=hub, sandbox=sandbox, canaries=canaries,
                  ingress_url=ingress_url, topic=topic, codes=codes)
        # A run cut short (Ctrl-C, SIGTERM) stops posting first: the posting threads would go on posting to an
        # ingress that is gone, and the process would wait for them forever.
        stack.callback(lambda: run.publisher.stop() if run.publisher is not None else None)
        scenario(run)
        result = run.finish(finder)
    result.leaks = list(finder.hits)
    if options.keep:
        result.notes.append(f"servers' data and logs kept in {base}")
    return result
