"""The invoice-readiness gate: its facts per project, folded order-independently under a lease per
project, and ``hub.invoice.readiness_changed.v1`` each time an invoice's verdict changes, written to the
outbox with the facts and the verdict (:mod:`hub.outbox`). Shared by the actor and ``hub readiness``
(show, rebuild)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime

from actors.invoice_readiness.facts import ProjectFacts, ProjectMeta, Verdict, field_of, fold, verdict
from actors.invoice_readiness.logic import Billed, Event, InvoiceDrafted, Readiness, event_from_record, transition
from actors.invoice_readiness.rules import ReadinessRules
from actors.invoice_readiness.store import ReadinessStore
from connectors.erp.client import ErpClient, ProjectNotFound
from connectors.platform import DocumentPlatform, Platforms
from connectors.sharepoint.documents import document_events
from hub.actor import Emitting
from hub.errors import ConfigurationError, NotYet, StoreUnavailable
from hub.outbox import Outgoing
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
                 locks: Locks, platforms: Platforms | None = None) -> None:
        """``platforms``: where the projects have their documents, the policy's choice of platform per project (a
        rebuild reads them there; None: rebuilds are not this process's to make)."""
        self.policy, self.rules, self.erp, self.store, self.locks = policy, rules, erp, store, locks
        self.platforms = platforms

    # -- facts ------------------------------------------------------------------------------------

    def meta(self, code: str) -> ProjectMeta:
        """The project's engagement type and jurisdiction, read from the ERP (a project it does not know yet,
        behind the invoice it drafted, is waited for)."""
        try:
            project = self.erp.get_project(code)
        except ProjectNotFound:
            raise NotYet(f"project {code} is not known to the ERP yet", prerequisite="erp_project") from None
        return ProjectMeta(project.engagement_type, project.region, project.country, project.client_id)

    def apply(self, event: Event, out: Emitting) -> list[Transition]:
        """Fold one event into its project's facts; save them with the verdicts they changed and the events
        announcing those (see :meth:`_save`)."""
        code = event.project_code
        facts = self.store.load(code)
        facts, changed = fold(facts, event)
        meta = None
        if facts.meta is None and facts.drafts:
            meta = self.meta(code)
            facts = ProjectFacts(code, meta, facts.drafts, facts.shared)
        changes = self.evaluate(facts)
        if changed or meta is not None or changes:
            self._save(out, code, [event] if changed else [], meta, changes)
        return changes

    def refresh(self, code: str, stated: ProjectMeta, out: Emitting) -> list[Transition]:
        """The project changed in the ERP: when the update ``stated`` another engagement type or
        jurisdiction than the gate holds, read the ERP's current record (whatever order the updates
        came in) and re-evaluate with it. One store read for every other project update.

        The new meta and the verdicts it changes are saved together: a re-run finds the meta it stated
        already held and changes nothing, so what it must still publish is in the outbox."""
        held = self.store.meta(code)
        if held is None or stated == held:
            return []  # no invoice of this project is known to the gate, or nothing that matters changed
        meta = self.meta(code)
        if meta == held:
            return []
        stored = self.store.load(code)
        changes = self.evaluate(ProjectFacts(code, meta, stored.drafts, stored.shared))
        self._save(out, code, [], meta, changes)
        return changes

    def replace(self, code: str, events: list[Event], out: Emitting) -> list[Transition]:
        """Forget the project's facts and store ``events`` instead (a rebuild), with the verdicts that
        changed (see :meth:`_save`)."""
        facts = ProjectFacts(code, self.meta(code))
        for event in events:
            facts, _ = fold(facts, event)
        kept: list[Event] = [*facts.drafts.values(), *facts.base().documents.values(),
                             *facts.base().retention.values(), *facts.base().envelopes.values()]
        changes = self.evaluate(facts)
        self._save(out, code, kept, facts.meta, changes, replace=True)
        return changes

    # -- verdicts ---------------------------------------------------------------------------------

    def evaluate(self, facts: ProjectFacts) -> list[Transition]:
        """Every invoice of the project whose verdict differs from the one last emitted (nothing saved)."""
        changes: list[Transition] = []
        if facts.meta is None:
            return changes
        for number in sorted(facts.drafts):
            after = verdict(facts, number, self.policy, self.rules)
            before = self.store.verdict(number)
            if transition(before.readiness if before else None, after):
                changes.append(Transition(number, facts.project_code, after, (before.seq if before else 0) + 1))
        return changes

    def _save(self, out: Emitting, code: str, events: list[Event], meta: ProjectMeta | None,
              changes: list[Transition], *, replace: bool = False) -> None:
        """Write the facts and the new verdicts, and their ``hub.invoice.readiness_changed.v1`` to the outbox,
        in one transaction; the caller publishes them (``out.flush(store.outbox)``). Saved apart, a worker
        dying between the save and the publish would leave a change its re-run does not see (the meta a
        project update states is then held), so a verdict never told."""
        verdicts = {change.invoice_number: Verdict(change.readiness, change.seq) for change in changes}
        announce = [self._announcement(out, change) for change in changes]
        write = self.store.replace if replace else self.store.store
        write(code, events, meta, verdicts=verdicts, announce=announce)
        for change in changes:
            log.info("invoice readiness changed", invoice_number=change.invoice_number, project_code=code,
                     status=change.readiness.status, hold_codes=sorted({r.code for r in change.readiness.reasons}))

    def _announcement(self, out: Emitting, change: Transition) -> Outgoing:
        number, readiness, seq = change.invoice_number, change.readiness, change.seq
        data = {"invoice_number": number, "project_code": change.project_code, "status": readiness.status,
                "hold_reasons": [r.to_record() for r in readiness.reasons], "changed_at": out.now()}
        # One id per transition and verdict: a second publish of the same pending event has the same id, which
        # consumers drop; a verdict reached again after the facts were rebuilt is new news with a new id.
        return out.outgoing("hub.invoice.readiness_changed.v1", data,
                            id=str(uuid.uuid5(_NAMESPACE, f"{number}:{seq}:{Verdict(readiness, seq).dump()}")),
                            subject=number, partitionkey=f"invoice:{number}")

    def current(self, number: str) -> tuple[str | None, Readiness]:
        """The invoice's project and verdict from the stored facts now."""
        code, facts = self.store.facts_of_invoice(number)
        return code, verdict(facts, number, self.policy, self.rules)

    # -- rebuild ----------------------------------------------------------------------------------

    def rebuild(self, out: Emitting, *, invoice: str | None = None,
                progress: Callable[[str, int, int, int], None] | None = None) -> list[Transition]:
        """Write the facts again from the ERP (draft invoices) and the workspace's documents, and publish the
        verdicts that changed (project by project, each from the outbox once its facts are saved).

        ``invoice``: only that invoice's project; otherwise every project with a draft invoice.
        ``progress(project_code, done, total, facts)`` is called after each project.
        """
        drafts = [self.erp.get_invoice(invoice)] if invoice is not None else self.erp.list_invoices(status="draft")
        changes: list[Transition] = []
        codes = sorted({d.project_code for d in drafts})
        for done, code in enumerate(codes, start=1):
            replaced, facts = self._replace_now(code, out)
            changes += replaced
            if progress is not None:
                progress(code, done, len(codes), facts)
        return changes

    def rebuild_project(self, code: str, out: Emitting) -> list[Transition]:
        """One project's facts written again from the ERP and its workspace (a reconciliation's repair)."""
        return self._replace_now(code, out)[0]

    def derive(self, code: str) -> list[Event]:
        """The project's facts as the ERP (its invoices) and its workspace's documents, on the platform the policy
        keeps it on, state them now."""
        if self.platforms is None:
            raise ConfigurationError("the readiness gate was given no document platform to read workspaces from")
        project = self.erp.get_project(code)
        events: list[Event] = []
        for draft in self.erp.list_invoices(project_code=code):
            milestone = None
            if draft.milestone_id:
                milestone = next((m.name for m in self.erp.milestones(code) if m.id == draft.milestone_id), None)
            bills = tuple(sorted({Billed(b.document_class, b.reference) for b in draft.bills}))  # type: ignore[arg-type]
            events.append(InvoiceDrafted(draft.number, code, draft.updated_at, milestone, bills))
        values = project.template_values()
        for view in self.platforms.for_project(values).documents(self.policy.workspace_path(values)):
            events += [event_from_record(t, r) for t, r in document_events(view, region=project.region)]
        return events

    def platform_for(self, code: str) -> DocumentPlatform:
        """The document platform the policy keeps the project's workspace on."""
        if self.platforms is None:
            raise ConfigurationError("the readiness gate was given no document platform to read workspaces from")
        return self.platforms.for_project(self.erp.get_project(code).template_values())

    def platform_of(self, code: str) -> str:
        """The name of the document platform the policy keeps the project's workspace on."""
        return self.platform_for(code).name

    def stale(self) -> Iterator[tuple[str, str, str]]:
        """Each project with a draft invoice whose stored facts differ from those :meth:`derive` reads now:
        (project code, the facts only the sources state, the facts only the store holds), each a short list of
        fact names. Envelopes are not compared (only DocuSign's events state them); times are not either (an
        event's time and the document's modification time name the same change)."""
        codes = sorted({d.project_code for d in self.erp.list_invoices(status="draft")})
        for code in codes:
            derived = ProjectFacts(code)
            for event in self.derive(code):
                derived, _ = fold(derived, event)
            now, held = _comparable(derived), _comparable(self.store.load(code))
            if now != held:
                yield code, _names(now, held), _names(held, now)

    def _replace_now(self, code: str, out: Emitting) -> tuple[list[Transition], int]:
        """The project's facts replaced by what :meth:`derive` reads, read under the project's lease (a reading
        made before it and saved after an event folded meanwhile would put back the state that event replaced);
        the verdicts that changed, and how many facts were read."""
        lease = self._wait_for_lease(code)
        try:
            events = self.derive(code)
            changes = self.replace(code, events, out)
            # Outside a message, this publishes whatever the outbox holds pending (these verdicts
            # among it); what a failed publish leaves there, the workers' relay publishes.
            out.flush(self.store.outbox)
        finally:
            self.locks.release(lock_name(code), lease)
        return changes, len(events)

    def _wait_for_lease(self, code: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            lease = self.locks.acquire(lock_name(code), ttl_ms=LOCK_TTL_MS)
            if lease is not None:
                return lease
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"readiness of project {code} stayed locked for {timeout_s:.0f} s")
            time.sleep(0.1)


def _comparable(facts: ProjectFacts) -> dict[str, str]:
    """A project's draft, document and label facts by name, without their times."""
    base = facts.base()
    kept: list[Event] = [*facts.drafts.values(), *base.documents.values(), *base.retention.values()]
    return {field_of(event): json.dumps({k: v for k, v in asdict(event).items() if not isinstance(v, datetime)},
                                        sort_keys=True, default=str) for event in kept}


def _names(one: dict[str, str], other: dict[str, str], limit: int = 10) -> str:
    """The fact names ``one`` states differently from ``other`` (at most ``limit``, then how many more)."""
    names = sorted(name for name, value in one.items() if other.get(name) != value)
    shown = ", ".join(names[:limit]) or "none"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
