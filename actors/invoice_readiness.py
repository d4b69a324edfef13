"""The invoice-readiness gate: every drafted invoice, document state, retention label and completed
envelope re-evaluates the invoices of its project, and ``hub.invoice.readiness_changed.v1`` is emitted
when an invoice's verdict changes (``ready``, or ``held`` with its enumerated hold reasons).

Facts live in Redis (:mod:`actors.invoice_readiness_store`), folded order-independently by the pure
:mod:`actors.invoice_readiness_logic` under a lease per project, so duplicated, replayed and out-of-order
events reach the verdict of the ordered stream. :func:`rebuild` writes the facts again from the systems
of record (the ERP's invoices and the documents in the project's workspace).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import dramatiq
from dramatiq.errors import Retry
from dramatiq.middleware import CurrentMessage

from actors.document_intake import document_events, workspace_documents
from actors.document_workflow import project_values
from actors.invoice_readiness_logic import (
    EVENT_TYPES,
    Event,
    InvoiceDrafted,
    Readiness,
    event_from_record,
    transition,
)
from actors.invoice_readiness_store import (
    Keys,
    ProjectFacts,
    ProjectMeta,
    Verdict,
    dump_event,
    field_of,
    fold,
    project_facts,
    verdict,
)
from actors.provisioning_plan import workspace_path
from connectors.erp.client import ErpClient
from connectors.sharepoint.client import GraphClient
from hub.errors import NEVER_RETRIED, StoreUnavailable
from hub.events import from_message_body, make_event, validate_event
from hub.policy import Policy
from hub.runtime import Runtime
from hub.store import RedisLocks, guarded
from observability.logging import get_logger

ACTOR_NAME = "invoice_readiness"
SOURCE = "hub://invoice-readiness"
#: A project's engagement type or jurisdiction may change: its checklist and expected labels with them.
PROJECT_UPDATED = "erp.project.updated.v1"
TRIGGERS = (*EVENT_TYPES, PROJECT_UPDATED)
_LOCK_TTL_MS = 30_000
_NAMESPACE = uuid.UUID("5b0f1d2e-8c3a-4f6b-9e7d-1a2b3c4d5e6f")
log = get_logger(__name__)


@dataclass(frozen=True)
class Transition:
    """One emitted verdict change."""

    invoice_number: str
    project_code: str
    readiness: Readiness
    seq: int


class ReadinessGate:
    """The gate's state and its transitions, shared by the actor and ``hub readiness``."""

    def __init__(self, runtime: Runtime, *, policy: Policy, erp: ErpClient) -> None:
        self.runtime, self.policy, self.erp = runtime, policy, erp
        self.redis = runtime.redis
        self.keys = Keys(runtime.queue_prefix)
        self.locks = RedisLocks(runtime.redis, prefix=runtime.queue_prefix)

    # -- facts ------------------------------------------------------------------------------------

    def load(self, code: str) -> ProjectFacts:
        """The project's facts as stored."""
        raw: Any = guarded(lambda: self.redis.hgetall(self.keys.project(code)))
        return project_facts(code, raw)

    def meta(self, code: str) -> ProjectMeta:
        """The project's engagement type and jurisdiction, read from the ERP."""
        project = self.erp.get_project(code)
        return ProjectMeta(project.engagement_type, project.region, project.country, project.client_id)

    def _store(self, code: str, events: Iterable[Event], meta: ProjectMeta | None) -> None:
        mapping = {field_of(event): dump_event(event) for event in events}
        if meta is not None:
            mapping["meta"] = json.dumps(asdict(meta), sort_keys=True)
        if not mapping:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.project(code), mapping=mapping)
        pipe.sadd(self.keys.projects, code)
        for event in events:
            if isinstance(event, InvoiceDrafted):
                pipe.set(self.keys.invoice(event.invoice_number), code)
        guarded(pipe.execute)

    def apply(self, event: Event) -> list[Transition]:
        """Fold one event into its project's facts and return the verdicts it changed (already emitted)."""
        code = event.project_code
        facts = self.load(code)
        facts, changed = fold(facts, event)
        meta = None
        if facts.meta is None and facts.drafts:
            meta = self.meta(code)
            facts = ProjectFacts(code, meta, facts.drafts, facts.shared)
        if changed or meta is not None:
            self._store(code, [event] if changed else [], meta)
        return self.evaluate(facts)

    def refresh(self, code: str, stated: ProjectMeta) -> list[Transition]:
        """The project changed in the ERP: when the update ``stated`` another engagement type or
        jurisdiction than the gate holds, read the ERP's current record (whatever order the updates
        came in) and re-evaluate with it. One Redis read for every other project update."""
        raw: Any = guarded(lambda: self.redis.hget(self.keys.project(code), "meta"))
        if raw is None:
            return []  # no invoice of this project is known to the gate
        held = ProjectMeta(**json.loads(raw))
        if stated == held:
            return []
        meta = self.meta(code)
        if meta == held:
            return []
        self._store(code, [], meta)
        facts = self.load(code)
        return self.evaluate(facts)

    def replace(self, code: str, events: list[Event]) -> list[Transition]:
        """Forget the project's facts and store ``events`` instead (a rebuild), then re-evaluate."""
        facts = ProjectFacts(code, self.meta(code))
        for event in events:
            facts, _ = fold(facts, event)
        kept: list[Event] = [*facts.drafts.values(), *facts.base().documents.values(),
                             *facts.base().retention.values(), *facts.base().envelopes.values()]
        guarded(lambda: self.redis.delete(self.keys.project(code)))
        self._store(code, kept, facts.meta)
        return self.evaluate(facts)

    # -- verdicts ---------------------------------------------------------------------------------

    def evaluate(self, facts: ProjectFacts) -> list[Transition]:
        """Emit ``hub.invoice.readiness_changed.v1`` for every invoice of the project whose verdict changed."""
        changes: list[Transition] = []
        if facts.meta is None:
            return changes
        for number in sorted(facts.drafts):
            after = verdict(facts, number, self.policy)
            raw: Any = guarded(partial(self.redis.get, self.keys.verdict(number)))
            before = Verdict.load(raw)
            if not transition(before.readiness if before else None, after):
                continue
            seq = (before.seq if before else 0) + 1
            self._emit(facts.project_code, number, after, seq)
            stored = Verdict(after, seq).dump()
            guarded(partial(self.redis.set, self.keys.verdict(number), stored))
            changes.append(Transition(number, facts.project_code, after, seq))
            log.info("invoice readiness changed", invoice_number=number, project_code=facts.project_code,
                     status=after.status, hold_codes=sorted({r.code for r in after.reasons}))
        return changes

    def _emit(self, code: str, number: str, readiness: Readiness, seq: int) -> None:
        data = {"invoice_number": number, "project_code": code, "status": readiness.status,
                "hold_reasons": [r.to_record() for r in readiness.reasons], "changed_at": datetime.now(UTC)}
        # One id per transition and verdict: a redelivery after a crash re-emits the same id, which consumers
        # drop; a verdict reached again after the facts were rebuilt is new news with a new id.
        event = make_event(self.runtime.registry, type="hub.invoice.readiness_changed.v1", source=SOURCE,
                           id=str(uuid.uuid5(_NAMESPACE, f"{number}:{seq}:{Verdict(readiness, seq).dump()}")),
                           subject=number, data=data,
                           partitionkey=f"invoice:{number}")
        assert self.runtime.dispatcher is not None
        self.runtime.dispatcher.dispatch(event, parent=CurrentMessage.get_current_message())

    def current(self, number: str) -> tuple[str | None, Readiness]:
        """The invoice's project and verdict from the stored facts now."""
        raw: Any = guarded(lambda: self.redis.get(self.keys.invoice(number)))
        code = raw.decode() if isinstance(raw, bytes) else raw
        facts = self.load(code) if code else ProjectFacts("")
        return code, verdict(facts, number, self.policy)

    # -- rebuild ----------------------------------------------------------------------------------

    def rebuild(self, graph: GraphClient, *, invoice: str | None = None,
                progress: Callable[[str, int, int, int], None] | None = None) -> list[Transition]:
        """Write the facts again from the ERP (draft invoices) and the workspace's documents.

        ``invoice``: only that invoice's project; otherwise every project with a draft invoice.
        ``progress(project_code, done, total, facts)`` is called after each project.
        """
        drafts = [self.erp.get_invoice(invoice)] if invoice is not None else self.erp.list_invoices(status="draft")
        changes: list[Transition] = []
        codes = sorted({d.project_code for d in drafts})
        for done, code in enumerate(codes, start=1):
            project = self.erp.get_project(code)
            events: list[Event] = []
            for draft in self.erp.list_invoices(project_code=code):
                milestone = None
                if draft.milestone_id:
                    milestone = next((m.name for m in self.erp.milestones(code) if m.id == draft.milestone_id), None)
                events.append(InvoiceDrafted(draft.number, code, draft.updated_at, milestone))
            root = workspace_path(self.policy, project_values(project))
            for view in workspace_documents(graph, root):
                events += [event_from_record(t, r) for t, r in document_events(view, region=project.region)]
            lease = self._wait_for_lease(code)
            try:
                changes += self.replace(code, events)
            finally:
                self.locks.release(f"readiness:{code}", lease)
            if progress is not None:
                progress(code, done, len(codes), len(events))
        return changes

    def _wait_for_lease(self, code: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            lease = self.locks.acquire(f"readiness:{code}", ttl_ms=_LOCK_TTL_MS)
            if lease is not None:
                return lease
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"readiness of project {code} stayed locked for {timeout_s:.0f} s")
            time.sleep(0.1)


def register(runtime: Runtime, *, gate: ReadinessGate, max_attempts: int) -> Any:
    """Declare the invoice-readiness actor."""
    prefix = runtime.queue_prefix

    @dramatiq.actor(broker=runtime.broker, actor_name=ACTOR_NAME, queue_name=f"{prefix}.{ACTOR_NAME}",
                    throws=NEVER_RETRIED, max_retries=max(max_attempts - 1, 0), on_dead_letter="exceptions")
    def invoice_readiness(event_body: dict[str, Any]) -> None:
        """Fold the event into its project's facts and emit the verdicts it changed."""
        cloud_event = from_message_body(event_body)
        record = validate_event(cloud_event, runtime.registry)
        project_update = cloud_event.get_type() == PROJECT_UPDATED
        event = None if project_update else event_from_record(cloud_event.get_type(), record)
        code = str(record["project_code"])
        lease = gate.locks.acquire(f"readiness:{code}", ttl_ms=_LOCK_TTL_MS)
        if lease is None:
            raise Retry(f"readiness of project {code} is being updated", delay=200)
        try:
            if event is None:
                gate.refresh(code, ProjectMeta(engagement_type=record["engagement_type"], region=record["region"],
                                               country=record["country"], client_id=record["client_id"]))
            else:
                gate.apply(event)
        finally:
            gate.locks.release(f"readiness:{code}", lease)

    return invoice_readiness


__all__ = ["ACTOR_NAME", "TRIGGERS", "ReadinessGate", "Transition", "register"]
