"""Convergence runs: a scenario's vendor webhooks captured unsent, delivered to the hub in their order or in any
order with duplicates and concurrent re-posts, and the final state the hub leaves in the systems, to compare.

A run is one scenario on a fresh hub and fresh simulators. Every simulator holds its webhooks from the start, and
the users' side of the scenario is done first (:mod:`tests.support.convergence_scenarios`): the ERP's records, the
envelopes sent and signed in DocuSign, the files people put in SharePoint. Their webhooks, exported after each
step (:meth:`simulators.sandbox.Sandbox.export_webhooks`), are the scenario's sequence: the exact signed requests
the vendors would send. A :class:`Delivery` then posts them to the ingress, and keeps delivering what the hub's
own writes make the vendors send (the ERP's update of a project the hub wrote to, Graph's notification of a file
the hub filed), until the hub is quiet.

Quiet is read from signals, never from a pause: every webhook the vendors hold is delivered, the hub's outbox is
empty, and every event the ingress accepted has been through every actor it reaches, each message it led to
finished (the flight record; a message waiting for a retry is not finished).
"""

from __future__ import annotations

import queue
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from hub.outbox import SqlOutbox
from hub.topics import Receive
from simulators.kit.outbox import OutboundRequest
from tests.conftest import hub_settings, own_prefix
from tests.support.rabbit import queue_depth
from tests.support.scenario import Scenario, running_scenario
from tests.support.signals import all_hops, published, settled

#: How long a run may take to go quiet before it is a failure.
QUIET_TIMEOUT_S = 90.0
#: The longest retry delay and lock wait of a run's hub: its messages wait for each other (a workspace being
#: provisioned, a project's lock), and a short cap keeps each run's tail short without changing what it does.
RETRY_CAP_MS = 500
#: Answers after which a vendor delivers the same request again (any other non-2xx is a failure).
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


#: A webhook as the vendor would send it, and which system sends it (``erp``, ``docusign``, ``graph``).
Webhook = tuple[str, OutboundRequest]


@dataclass
class Captured:
    """A scenario's webhooks as the vendors queued them, step by step (a step: what one user action made them
    send), and what its run called things."""

    steps: list[list[Webhook]] = field(default_factory=list)
    #: Ids a run makes (envelopes) to the names the comparison uses.
    names: dict[str, str] = field(default_factory=dict)
    #: The invoices whose verdicts are compared.
    invoices: tuple[str, ...] = ()

    @property
    def webhooks(self) -> list[Webhook]:
        """Every webhook, in the order the vendors queued them."""
        return [webhook for step in self.steps for webhook in step]

    def take(self, scenario: Scenario) -> None:
        """Close a step: what the vendors hold now, in their order."""
        self.steps.append(scenario.sandbox.export_webhooks())


#: A scenario's users' side: it does what they do, with every webhook held, and returns what was captured.
Build = Callable[[Scenario], Captured]


class Delivery:
    """Posts vendor webhooks to the ingress from ``threads`` threads, as the vendors would (a 429 or 5xx is
    posted again), and records what the ingress accepted."""

    def __init__(self, scenario: Scenario, *, threads: int = 4) -> None:
        self.scenario = scenario
        self.threads = threads
        self._trust = ssl.create_default_context(cafile=scenario.tls_ca) if scenario.tls_ca else True
        self._lock = threading.Lock()
        #: Event id to type, of every event the ingress accepted (a resend names the first one's id).
        self.accepted: dict[str, str] = {}
        #: Answers by status, and the refusals (status, system, body) a vendor would not retry.
        self.statuses: Counter[int] = Counter()
        self.refused: list[tuple[int, str, str]] = []
        self.posts = 0
        #: One client per thread, kept across batches (a vendor keeps its connections open).
        self._clients = [httpx.Client(verify=self._trust, timeout=30, trust_env=False) for _ in range(threads)]

    def close(self) -> None:
        """Close the threads' connections."""
        for client in self._clients:
            client.close()

    def post(self, client: httpx.Client, system: str, request: OutboundRequest) -> None:
        """Post one webhook until it is answered 2xx or refused for good."""
        for attempt in range(20):
            response = client.request(request.method, request.url, headers=request.headers, content=request.body)
            with self._lock:
                self.posts += 1
                self.statuses[response.status_code] += 1
            if response.is_success:
                body = response.json() if response.content else {}
                with self._lock:
                    for accepted in body.get("accepted", []):
                        self.accepted.setdefault(accepted["id"], accepted["type"])
                return
            if response.status_code not in RETRIED_STATUSES:
                with self._lock:
                    self.refused.append((response.status_code, system, response.text[:300]))
                return
            time.sleep(min(0.05 * 2 ** attempt, 1.0))  # the vendor's backoff before its next attempt
        with self._lock:
            self.refused.append((0, system, "still refused after 20 attempts"))

    def post_all(self, requests: Sequence[Webhook]) -> None:
        """Post ``requests`` from the threads, each taking the next one: they start in this order and run side
        by side, so copies next to each other are posted concurrently."""
        work: queue.SimpleQueue[Webhook | None] = queue.SimpleQueue()
        for item in requests:
            work.put(item)
        errors: list[BaseException] = []

        def run(client: httpx.Client) -> None:
            while (item := work.get()) is not None:
                try:
                    self.post(client, *item)
                except BaseException as error:  # reported by the caller
                    errors.append(error)

        workers = [threading.Thread(target=run, args=(client,), name=f"vendor-post-{n}")
                   for n, client in enumerate(self._clients)]
        for worker in workers:
            work.put(None)
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]

    def settle(self, *, copies: int = 1, timeout_s: float = QUIET_TIMEOUT_S) -> None:
        """Deliver what the vendors send meanwhile (each ``copies`` times, side by side) until the hub is quiet;
        AssertionError when it is not within ``timeout_s``."""
        outbox = SqlOutbox(self.scenario.runtime.db)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if outbox.count_pending() or not self._all_settled():
                time.sleep(0.05)
                continue
            # Every journey ended, so every write the hub made to a vendor is over, and what it made the vendor
            # send is queued by now (the simulators queue a webhook before they answer the write).
            if not self._deliver_held(copies):
                return
        raise AssertionError(f"the hub is not quiet after {timeout_s:.0f} s: {self.unsettled()}")

    def _deliver_held(self, copies: int) -> bool:
        held = self.scenario.sandbox.export_webhooks()
        self.post_all([item for item in held for _ in range(copies)])
        return bool(held)

    def _all_settled(self) -> bool:
        flight, routes = self.scenario.runtime.flight, self._routes()
        with self._lock:
            accepted = dict(self.accepted)
        return all(settled(flight, event_id, entry_actors=routes.subscribers(event_type))
                   for event_id, event_type in accepted.items())

    def unsettled(self) -> list[str]:
        """The accepted events whose journey is not finished, for a failure's message."""
        flight, routes = self.scenario.runtime.flight, self._routes()
        return [f"{event_type} {event_id}" for event_id, event_type in self.accepted.items()
                if not settled(flight, event_id, entry_actors=routes.subscribers(event_type))]

    def _routes(self) -> Any:
        dispatcher = self.scenario.runtime.dispatcher
        assert dispatcher is not None
        return dispatcher.routes


# -- the final state ------------------------------------------------------------------------------------------

#: List-item fields SharePoint or the moment set, which say nothing of what the hub did.
_VOLATILE_FIELDS = frozenset({"id", "@odata.etag", "Created", "Modified", "Author", "Editor", "_UIVersionString",
                              "FileLeafRef", "ContentType"})


#: Integers from here on are instants in epoch milliseconds (2001 onwards), not amounts or counts.
_EPOCH_MS_FROM = 10**12
#: An instant (a date and a time of day): when a run did something, not what it did.
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")


def _named(value: Any, names: dict[str, str]) -> Any:
    """``value`` with every run-made id (a key of ``names``) replaced by its stable name, instants by
    ``<instant>``."""
    if isinstance(value, str):
        for made, name in names.items():
            value = value.replace(made, name)
        return _INSTANT.sub("<instant>", value)
    if isinstance(value, dict):
        return {_named(k, names): _named(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_named(v, names) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= _EPOCH_MS_FROM:
        return "<instant>"  # epoch milliseconds (the ERP's record of when a term was stated)
    return value


def _without_moments(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.endswith("_at")}


def final_state(scenario: Scenario, captured: Captured) -> dict[str, Any]:
    """What the hub left in the systems (``state``), with run-made ids named alike across runs (``names``): the
    workspace tree, grants, labels and list-item fields per path; SharePoint's committed folder creates, invites
    (grants), uploads and deletes per path; the ERP's records (a project's ``version`` counts its changes) and its
    writes per record; the gate's verdicts; dead letters, messages that ended failed or dead, and exceptions
    raised to owners."""
    sandbox = scenario.sandbox
    graph = sandbox.graph_state()["drives"][sandbox.drive_id]
    names = dict(captured.names)
    names.update({item["id"]: f"<item {path}>" for path, item in graph["items"].items()})
    erp = sandbox.erp_state()
    milestones = {m["id"]: f"<milestone {code}/{m['name']}>" for code, items in erp["milestones"].items()
                  for m in items}
    names.update(milestones)
    items = graph["items"]
    workspace = {
        "tree": {path: item["kind"] for path, item in items.items()},
        "grants": {path: sorted((p["group"], sorted(p["roles"])) for p in item["permissions"])
                   for path, item in items.items() if item["permissions"]},
        "labels": {path: item["retentionLabel"] for path, item in items.items() if item["retentionLabel"]},
        "fields": {path: {k: v for k, v in item["fields"].items() if k not in _VOLATILE_FIELDS}
                   for path, item in items.items() if item["fields"]},
    }
    counts = sandbox.graph_requests()
    effects = {kind: counts[kind] for kind in ("creates", "invites", "uploads", "deletes")}
    effects.update({f"erp_{kind}": counts for kind, counts in sandbox.erp_writes().items()})
    records = {
        "projects": sorted((_without_moments(p) for p in erp["projects"]), key=lambda p: p["code"]),
        "clients": sorted((_without_moments(c) for c in erp["clients"]), key=lambda c: c["id"]),
        "milestones": {code: sorted((_without_moments(m) for m in items), key=lambda m: m["name"])
                       for code, items in erp["milestones"].items()},
        "billing_codes": {code: sorted((_without_moments(b) for b in items), key=lambda b: b["code"])
                          for code, items in erp["billing_codes"].items()},
        "invoices": sorted((_without_moments(i) for i in erp["invoices"]), key=lambda i: i["number"]),
    }
    verdicts = {number: _verdict(scenario, number) for number in captured.invoices}
    actor_queues = [actor.queue_name for actor in scenario.runtime.actors.values()]
    dead = {name: depth for name in actor_queues if (depth := queue_depth(f"{name}.XQ"))}
    ended_badly = sorted(f"{hop.actor} {hop.event_type} {hop.outcome}" for hop in all_hops(scenario.runtime)
                         if hop.outcome in {"dead", "failed"})
    exceptions = {hop.event_id for hop in published(scenario.runtime, "hub.exception.raised.v1", actor="fanout")}
    state = {"workspace": workspace, "effects": effects, "erp": records, "verdicts": verdicts,
             "dead_letters": dead, "ended_badly": ended_badly, "exceptions_raised": len(exceptions)}
    return {"state": _named(state, names), "names": names}


def _verdict(scenario: Scenario, number: str) -> dict[str, Any]:
    body: dict[str, Any] = scenario.readiness(number).json()
    reasons = sorted((r["code"], r["artefact"], r.get("detail")) for r in body.get("hold_reasons") or [])
    return {"status": body.get("status"), "may_finalize": body.get("may_finalize"), "hold_reasons": reasons}


# -- runs -----------------------------------------------------------------------------------------------------

VERDICT = "hub.invoice.readiness_changed.v1"


@dataclass(frozen=True)
class Plan:
    """How a run delivers a scenario's webhooks: ``order`` indexes the scenario's webhooks (each one to three
    times), in the order their posts start, from ``threads`` threads side by side; what the hub's own writes make
    the vendors send meanwhile is posted ``feedback`` times."""

    order: tuple[int, ...]
    threads: int
    feedback: int

    def describe(self, systems: Sequence[str]) -> str:
        """The plan in words: ``erp#0 graph#3 graph#3 ...`` (system and index of each post)."""
        posts = " ".join(f"{systems[i]}#{i}" for i in self.order)
        return f"{self.threads} threads, feedback x{self.feedback}: {posts}"


@dataclass
class Outcome:
    """What one run of a scenario left, and how it went."""

    #: The final state (:func:`final_state`).
    state: dict[str, Any]
    #: Per invoice, the verdicts the gate published (status and hold codes with artefacts), in its order.
    verdicts: dict[str, list[tuple[str, list[tuple[str, str]]]]]
    #: The systems of the scenario's webhooks, in order (every run of a scenario captures the same sequence).
    systems: list[str]
    posts: int
    refused: list[tuple[int, str, str]]


def run(build: Build, plan: Plan | None = None) -> Outcome:
    """One run of a scenario on a fresh hub (its own prefix) and fresh simulators: the users' side with every
    webhook held, then the webhooks delivered in their order (``plan`` None: one at a time, the hub quiet after
    each step) or as ``plan`` says; then the hub left to go quiet."""
    with own_prefix() as prefix, running_scenario(hub_settings(prefix, max_backoff_ms=RETRY_CAP_MS),
                                                  documents=True) as scenario, \
            scenario.runtime.subscription(VERDICT) as receive:
        scenario.sandbox.hold_webhooks()
        captured = build(scenario)
        delivery = Delivery(scenario, threads=plan.threads if plan else 1)
        try:
            if plan is None:
                for step in captured.steps:
                    delivery.post_all(step)
                    delivery.settle()
            else:
                webhooks = captured.webhooks
                delivery.post_all([webhooks[i] for i in plan.order])
                delivery.settle(copies=plan.feedback)
        finally:
            delivery.close()
        state = final_state(scenario, captured)
        verdicts = published_verdicts(scenario, receive, state["names"])
        return Outcome(state=state["state"], verdicts=verdicts, systems=[system for system, _ in captured.webhooks],
                       posts=delivery.posts, refused=list(delivery.refused))


def published_verdicts(scenario: Scenario, receive: Receive, names: dict[str, str]
                       ) -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """Every verdict the gate published on ``hub.events`` (read from ``receive``, bound before the run), per
    invoice in the order the gate reached them (its ``changed_at``), artefacts named as in the final state."""
    expected = {hop.event_id for hop in published(scenario.runtime, VERDICT, actor="fanout")}
    seen: dict[str, tuple[datetime, int, dict[str, Any]]] = {}
    while not expected <= set(seen):
        delivery = receive(30.0)
        assert delivery is not None, f"published verdicts missing on hub.events: {sorted(expected - set(seen))}"
        data = scenario.runtime.registry.decode(delivery.routing_key, delivery.body)
        seen.setdefault(delivery.key()[1], (data["changed_at"], len(seen), data))
    verdicts: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {}
    for _, _, data in sorted(seen.values(), key=lambda v: v[:2]):
        reasons = sorted((r["code"], _named(r["artefact"] or "", names)) for r in data["hold_reasons"])
        verdicts.setdefault(data["invoice_number"], []).append((data["status"], reasons))
    return verdicts


def repeated(verdicts: list[tuple[str, list[tuple[str, str]]]]) -> list[int]:
    """Where a published verdict repeats the one before it (its index): a verdict published twice."""
    return [n for n in range(1, len(verdicts)) if verdicts[n] == verdicts[n - 1]]
