"""The invoice-readiness gate: its facts per project, folded order-independently under a lease per
project, and ``hub.invoice.readiness_changed.v1`` each time an invoice's verdict changes. Shared by the
actor and ``hub readiness`` (show, rebuild)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from actors.invoice_readiness.facts import ProjectFacts, ProjectMeta, Verdict, fold, verdict
from actors.invoice_readiness.logic import Event, InvoiceDrafted, Readiness, event_from_record, transition
from actors.invoice_readiness.rules import ReadinessRules
from actors.invoice_readiness.store import ReadinessStore
from connectors.erp.client import ErpClient
from connectors.sharepoint.client import GraphClient
from connectors.sharepoint.documents import document_events, workspace_documents
from hub.actor import Emitting
from hub.errors import StoreUnavailable
from hub.policy import Policy
from hub.store import Locks
from observability.logging import get_logger

LOCK_TTL_MS = 30_000
_NAMESPACE = uuid.UUID("5b0f1d2e-8c3a-4f6b-9e7d-1a2b3c4d5e6f")
log = get_logger(__name__)


@dataclass(frozen=True)
class Transition:
    """One emitted verdict change."""

    invoice_number: str
    project_code: str
    readiness: Readiness
    seq: int


def lock_name(code: str) -> str:
    """The lease that serialises a project's facts."""
    return f"readiness:{code}"


class ReadinessGate:
    """The gate's state and its transitions."""

    def __init__(self, *, policy: Policy, rules: ReadinessRules, erp: ErpClient, store: ReadinessStore,
                 locks: Locks) -> None:
        self.policy, self.rules, self.erp, self.store, self.locks = policy, rules, erp, store, locks

    # -- facts ------------------------------------------------------------------------------------

    def meta(self, code: str) -> ProjectMeta:
        """The project's engagement type and jurisdiction, read from the ERP."""
        project = self.erp.get_project(code)
        return ProjectMeta(project.engagement_type, project.region, project.country, project.client_id)

    def apply(self, event: Event, out: Emitting) -> list[Transition]:
        """Fold one event into its project's facts and emit the verdicts it changed."""
        code = event.project_code
        facts = self.store.load(code)
        facts, changed = fold(facts, event)
        meta = None
        if facts.meta is None and facts.drafts:
            meta = self.meta(code)
            facts = ProjectFacts(code, meta, facts.drafts, facts.shared)
        if changed or meta is not None:
            self.store.store(code, [event] if changed else [], meta)
        return self.evaluate(facts, out)

    def refresh(self, code: str, stated: ProjectMeta, out: Emitting) -> list[Transition]:
        """The project changed in the ERP: when the update ``stated`` another engagement type or
        jurisdiction than the gate holds, read the ERP's current record (whatever order the updates
        came in) and re-evaluate with it. One store read for every other project update."""
        held = self.store.meta(code)
        if held is None or stated == held:
            return []  # no invoice of this project is known to the gate, or nothing that matters changed
        meta = self.meta(code)
        if meta == held:
            return []
        self.store.store(code, [], meta)
        return self.evaluate(self.store.load(code), out)

    def replace(self, code: str, events: list[Event], out: Emitting) -> list[Transition]:
        """Forget the project's facts and store ``events`` instead (a rebuild), then re-evaluate."""
        facts = ProjectFacts(code, self.meta(code))
        for event in events:
            facts, _ = fold(facts, event)
        kept: list[Event] = [*facts.drafts.values(), *facts.base().documents.values(),
                             *facts.base().retention.values(), *facts.base().envelopes.values()]
        self.store.replace(code, kept, facts.meta)
        return self.evaluate(facts, out)

    # -- verdicts ---------------------------------------------------------------------------------

    def evaluate(self, facts: ProjectFacts, out: Emitting) -> list[Transition]:
        """Emit ``hub.invoice.readiness_changed.v1`` for every invoice of the project whose verdict changed."""
        changes: list[Transition] = []
        if facts.meta is None:
            return changes
        for number in sorted(facts.drafts):
            after = verdict(facts, number, self.policy, self.rules)
            before = self.store.verdict(number)
            if not transition(before.readiness if before else None, after):
                continue
            seq = (before.seq if before else 0) + 1
            self._emit(out, facts.project_code, number, after, seq)
            self.store.save_verdict(number, Verdict(after, seq))
            changes.append(Transition(number, facts.project_code, after, seq))
            log.info("invoice readiness changed", invoice_number=number, project_code=facts.project_code,
                     status=after.status, hold_codes=sorted({r.code for r in after.reasons}))
        return changes

    def _emit(self, out: Emitting, code: str, number: str, readiness: Readiness, seq: int) -> None:
        data = {"invoice_number": number, "project_code": code, "status": readiness.status,
                "hold_reasons": [r.to_record() for r in readiness.reasons], "changed_at": out.now()}
        # One id per transition and verdict: a redelivery after a crash re-emits the same id, which consumers
        # drop; a verdict reached again after the facts were rebuilt is new news with a new id.
        out.emit("hub.invoice.readiness_changed.v1", data,
                 id=str(uuid.uuid5(_NAMESPACE, f"{number}:{seq}:{Verdict(readiness, seq).dump()}")),
                 subject=number, partitionkey=f"invoice:{number}")

    def current(self, number: str) -> tuple[str | None, Readiness]:
        """The invoice's project and verdict from the stored facts now."""
        code, facts = self.store.facts_of_invoice(number)
        return code, verdict(facts, number, self.policy, self.rules)

    # -- rebuild ----------------------------------------------------------------------------------

    def rebuild(self, graph: GraphClient, out: Emitting, *, invoice: str | None = None,
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
            root = self.policy.workspace_path(project.template_values())
            for view in workspace_documents(graph, root):
                events += [event_from_record(t, r) for t, r in document_events(view, region=project.region)]
            lease = self._wait_for_lease(code)
            try:
                changes += self.replace(code, events, out)
            finally:
                self.locks.release(lock_name(code), lease)
            if progress is not None:
                progress(code, done, len(codes), len(events))
        return changes

    def _wait_for_lease(self, code: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            lease = self.locks.acquire(lock_name(code), ttl_ms=LOCK_TTL_MS)
            if lease is not None:
                return lease
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"readiness of project {code} stayed locked for {timeout_s:.0f} s")
            time.sleep(0.1)
