"""The gate's facts per project, as stored: the project's meta (engagement type, jurisdiction), the
winning event per fact (``inv:<number>`` drafted invoice, ``doc:<id>`` document state, ``ret:<id>``
retention label, ``env:<id>`` envelope: sent, delivered or completed), folded order-independently; the
verdict of an invoice from them; and the last verdict emitted. Pure: :mod:`actors.invoice_readiness.store`
keeps them (one row per fact; the in-memory fake a dict of JSON per project, as :func:`project_facts` reads it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from actors.invoice_readiness.logic import (
    DocumentStateChanged,
    EnvelopeChanged,
    Event,
    HoldReason,
    InvoiceDrafted,
    InvoiceFacts,
    Readiness,
    RetentionApplied,
    apply,
    evaluate,
)
from actors.invoice_readiness.rules import ReadinessRules
from hub.policy import DocumentClass, EngagementType, Policy, Region

_KINDS: dict[str, type[InvoiceDrafted | DocumentStateChanged | RetentionApplied | EnvelopeChanged]] = {
    "inv": InvoiceDrafted, "doc": DocumentStateChanged, "ret": RetentionApplied, "env": EnvelopeChanged,
}


@dataclass(frozen=True)
class ProjectMeta:
    """What the gate needs to know about the project: its checklist and its retention jurisdiction."""

    engagement_type: EngagementType
    region: Region
    country: str
    client_id: str

    def label_for(self, policy: Policy) -> Callable[[DocumentClass], str]:
        """The expected retention label per document class, from the policy's retention rules."""
        def label(document_class: DocumentClass) -> str:
            return policy.retention.label_for(region=self.region, country=self.country, client_id=self.client_id,
                                              engagement_type=self.engagement_type, document_class=document_class)
        return label


@dataclass(frozen=True)
class ProjectFacts:
    """Every fact about one project's invoices; :meth:`for_invoice` is one invoice's view."""

    project_code: str
    meta: ProjectMeta | None = None
    drafts: Mapping[str, InvoiceDrafted] = field(default_factory=dict)
    shared: InvoiceFacts | None = None

    def base(self) -> InvoiceFacts:
        """The document, label and envelope facts (no invoice)."""
        return self.shared or InvoiceFacts.start("", self.project_code, "consulting")

    def for_invoice(self, number: str) -> InvoiceFacts:
        """The facts of one invoice (needs ``meta``)."""
        assert self.meta is not None
        return replace(self.base(), invoice_number=number, engagement_type=self.meta.engagement_type,
                       drafted=self.drafts.get(number))


def field_of(event: Event) -> str:
    """The name of an event's fact: kind and id (the fact it replaces has the same name)."""
    if isinstance(event, InvoiceDrafted):
        return f"inv:{event.invoice_number}"
    if isinstance(event, DocumentStateChanged):
        return f"doc:{event.document_id}"
    if isinstance(event, RetentionApplied):
        return f"ret:{event.document_id}"
    return f"env:{event.envelope_id}"


def event_record(event: Event) -> dict[str, Any]:
    """An event's fact as a JSON record (timestamps as epoch milliseconds)."""
    return {k: round(v.timestamp() * 1000) if isinstance(v, datetime) else v for k, v in asdict(event).items()}


def event_of(name: str, record: Mapping[str, Any]) -> Event:
    """A fact from its name and record."""
    return _KINDS[name.split(":", 1)[0]].from_record(record)


def dump_event(event: Event) -> str:
    """An event's fact as JSON (timestamps as epoch milliseconds)."""
    return json.dumps(event_record(event), sort_keys=True)


def load_event(name: str, raw: str | bytes) -> Event:
    """A fact from its name and JSON."""
    return event_of(name, json.loads(raw))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def project_facts(project_code: str, raw: Mapping[Any, Any]) -> ProjectFacts:
    """The facts from a mapping of fact name to JSON (str or bytes), with the meta as ``meta``."""
    meta: ProjectMeta | None = None
    events: list[Event] = []
    for key, value in raw.items():
        name = _text(key)
        if name == "meta":
            meta = ProjectMeta(**json.loads(value))
        else:
            events.append(load_event(name, value))
    return stored_facts(project_code, meta, events)


def stored_facts(project_code: str, meta: ProjectMeta | None, events: Iterable[Event]) -> ProjectFacts:
    """The facts of a project from its stored meta and its winning events (one per fact name)."""
    drafts: dict[str, InvoiceDrafted] = {}
    shared = InvoiceFacts.start("", project_code, "consulting")
    for event in events:
        if isinstance(event, InvoiceDrafted):
            drafts[event.invoice_number] = event
        else:
            shared = apply(shared, event)
    return ProjectFacts(project_code, meta, drafts, shared)


def fold(facts: ProjectFacts, event: Event) -> tuple[ProjectFacts, bool]:
    """The facts with ``event`` folded in, and whether they changed (duplicates and stale events don't)."""
    if isinstance(event, InvoiceDrafted):
        current = facts.drafts.get(event.invoice_number)
        start = InvoiceFacts.start(event.invoice_number, facts.project_code, "consulting")
        after = apply(replace(start, drafted=current), event).drafted
        if after == current or after is None:
            return facts, False
        return replace(facts, drafts={**facts.drafts, event.invoice_number: after}), True
    before = facts.base()
    after_facts = apply(before, event)
    return replace(facts, shared=after_facts), after_facts != before


def verdict(facts: ProjectFacts, number: str, policy: Policy, rules: ReadinessRules) -> Readiness:
    """The gate's verdict on one invoice: held with ``INVOICE_NOT_DRAFTED`` when nothing is known of it."""
    if facts.meta is None or number not in facts.drafts:
        return Readiness.of([HoldReason("INVOICE_NOT_DRAFTED", number,
                                        f"the hub has not seen invoice {number} drafted in the ERP",
                                        owner=rules.owner_of("INVOICE_NOT_DRAFTED"))])
    return evaluate(facts.for_invoice(number), rules, expected_retention_label=facts.meta.label_for(policy))


@dataclass(frozen=True)
class Verdict:
    """A verdict as emitted: the readiness and the transition's sequence number for the invoice."""

    readiness: Readiness
    seq: int

    def record(self) -> dict[str, Any]:
        """As stored: ``status``, ``seq`` and ``reasons`` (code, artefact, detail, name, owner)."""
        return {"status": self.readiness.status, "seq": self.seq,
                "reasons": [asdict(reason) for reason in self.readiness.reasons]}

    @classmethod
    def of_record(cls, data: Mapping[str, Any]) -> Verdict:
        """From its :meth:`record`."""
        readiness = Readiness(data["status"], tuple(HoldReason(**reason) for reason in data["reasons"]))
        return cls(readiness, int(data["seq"]))

    def dump(self) -> str:
        """As JSON (part of the emitted event's id: keep it stable)."""
        return json.dumps(self.record())

    @classmethod
    def load(cls, raw: str | bytes | None) -> Verdict | None:
        """From its JSON (None when absent)."""
        return None if raw is None else cls.of_record(json.loads(raw))


def readiness_body(number: str, project_code: str | None, readiness: Readiness) -> dict[str, Any]:
    """The hard-stop answer (``GET /v1/invoices/{number}/readiness``) and ``hub readiness show``."""
    return {
        "invoice_number": number,
        "project_code": project_code,
        "status": readiness.status,
        "may_finalize": readiness.status == "ready",
        "hold_reasons": [{"code": r.code, "artefact": r.artefact, "detail": r.detail, "name": r.name,
                          "owner": r.owner} for r in readiness.reasons],
    }
