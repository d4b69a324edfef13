"""The invoice-readiness gate, decided: what an invoice still lacks before the ERP may finalise it.

Pure functions, no I/O. The actor keeps one :class:`InvoiceFacts` per invoice, folds every relevant
event into it with :func:`apply`, asks :func:`evaluate` for the verdict against the
:class:`ReadinessRules` (data: one :class:`Checklist` per engagement type) and emits
``hub.invoice.readiness_changed.v1`` only when :func:`transition` says the verdict changed.

:func:`apply` is order-independent and idempotent: per document it keeps the latest state by the
event's own timestamp (ties broken by a fixed order on the event's content), so any permutation of a
stream, with duplicates and replays, folds to the same facts as the ordered stream.

Past 400 lines on purpose: the events the gate reads, the facts they fold into and the verdict over them are one
decision, and each part is read against the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from actors.invoice_readiness.rules import (
    Checklist,
    HoldCode,
    ReadinessRules,
    Requirement,
    Scope,
    SignedClass,
)
from hub.errors import InvalidEvent
from hub.policy import DocumentClass, DocumentState, EngagementType, Region, file_stem

ReadinessStatus = Literal["ready", "held"]
_UNSIGNED: dict[SignedClass, HoldCode] = {
    "change_order": "UNSIGNED_CHANGE_ORDER",
    "sow": "SOW_NOT_SIGNED",
    "engagement_letter": "ENGAGEMENT_LETTER_NOT_SIGNED",
}

#: What an invoice needs of an artefact it bills whose class its checklist does not require.
_BILLED: dict[DocumentClass, Requirement] = {
    "deliverable": Requirement(document_class="deliverable", code="DELIVERABLE_NOT_APPROVED",
                               states=frozenset({"approved"})),
    "change_record": Requirement(document_class="change_record", code="CHANGE_RECORD_MISSING"),
    "service_report": Requirement(document_class="service_report", code="SERVICE_REPORT_MISSING"),
    "customer_approval": Requirement(document_class="customer_approval", code="CUSTOMER_APPROVAL_MISSING"),
    "change_order": Requirement(document_class="change_order", code="UNSIGNED_CHANGE_ORDER",
                                states=frozenset({"signed"})),
    "sow": Requirement(document_class="sow", code="SOW_NOT_SIGNED", states=frozenset({"signed"})),
    "engagement_letter": Requirement(document_class="engagement_letter", code="ENGAGEMENT_LETTER_NOT_SIGNED",
                                     states=frozenset({"signed"})),
}

#: Tie-break for two state changes of one document with the same timestamp: the further state wins.
_STATE_RANK: dict[DocumentState, int] = {
    "draft": 0, "in_review": 1, "rejected": 2, "approved": 3, "signed": 4, "superseded": 5,
}
#: A document in one of these states is out of the picture: it neither satisfies nor holds anything.
_WITHDRAWN: frozenset[DocumentState] = frozenset({"superseded"})


def default_rules() -> ReadinessRules:
    """The firm's default gate (the one ``actors/default_policy.yaml`` states): engineering, managed
    services, consulting and legal."""
    signed: frozenset[DocumentState] = frozenset({"signed"})
    return ReadinessRules(checklists={
        "engineering": Checklist(requirements=(
            Requirement(document_class="deliverable", code="DELIVERABLE_NOT_APPROVED",
                        states=frozenset({"approved"}), every_document=True, retention_label=True),
        )),
        "managed_services": Checklist(requirements=(
            Requirement(document_class="service_report", code="SERVICE_REPORT_MISSING"),
            Requirement(document_class="customer_approval", code="CUSTOMER_APPROVAL_MISSING"),
            Requirement(document_class="change_record", code="CHANGE_RECORD_MISSING", every_document=True),
        )),
        "consulting": Checklist(requirements=(
            Requirement(document_class="sow", code="SOW_NOT_SIGNED", states=signed, scope="project",
                        envelope_counts=True),
        )),
        "legal": Checklist(requirements=(
            Requirement(document_class="engagement_letter", code="ENGAGEMENT_LETTER_NOT_SIGNED", states=signed,
                        scope="project", envelope_counts=True),
        )),
    })


# -------------------------------------------------------------------------------------------- events


def _stamp(value: object, name: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    raise InvalidEvent(f"{name} must be epoch milliseconds or an aware datetime", field=name)


def _text(record: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    value = record.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{name} must be a non-empty string", field=name)
    return value


@dataclass(frozen=True, order=True)
class Billed:
    """One artefact the ERP says an invoice bills: a document class and its business number or title."""

    document_class: DocumentClass
    reference: str

    def matches(self, doc: DocumentStateChanged) -> bool:
        """Whether ``doc`` is it: of its class, with its reference, or named it (file name without the
        extension), case aside."""
        wanted = self.reference.strip().casefold()
        return doc.document_class == self.document_class and (
            (doc.reference or "").strip().casefold() == wanted or file_stem(doc.name or "").casefold() == wanted)


def _billed(value: object) -> tuple[Billed, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidEvent("bills must be a list", field="bills")
    items = []
    for item in value:
        if not isinstance(item, Mapping):
            raise InvalidEvent("each of bills must be an object", field="bills")
        items.append(Billed(_text(item, "document_class"), _text(item, "reference")))
    return tuple(sorted(set(items)))


@dataclass(frozen=True)
class InvoiceDrafted:
    """``erp.invoice.drafted.v1``: the fields the gate uses (``bills``: what the ERP says the invoice bills)."""

    invoice_number: str
    project_code: str
    drafted_at: datetime
    milestone: str | None = None
    bills: tuple[Billed, ...] = ()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> InvoiceDrafted:
        """Build from a decoded Avro record (or a stored fact, from before drafts stated their bills too)."""
        return cls(_text(record, "invoice_number"), _text(record, "project_code"),
                   _stamp(record.get("drafted_at"), "drafted_at"), _text(record, "milestone", optional=True),
                   _billed(record.get("bills")))


@dataclass(frozen=True)
class DocumentStateChanged:
    """``dms.document.state_changed.v1``: the fields the gate uses."""

    document_id: str
    project_code: str
    document_class: DocumentClass
    state: DocumentState
    changed_at: datetime
    milestone: str | None = None
    invoice_number: str | None = None
    name: str | None = None  # the file's name, for people (a fact stored before it was kept has none)
    reference: str | None = None  # its business number or title (the Reference column)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DocumentStateChanged:
        """Build from a decoded Avro record."""
        state = _text(record, "state")
        if state not in _STATE_RANK:
            raise InvalidEvent(f"state {state!r} is not a document state", field="state")
        return cls(_text(record, "document_id"), _text(record, "project_code"), _text(record, "document_class"),
                   state, _stamp(record.get("changed_at"), "changed_at"), _text(record, "milestone", optional=True),
                   _text(record, "invoice_number", optional=True), _text(record, "name", optional=True),
                   _text(record, "reference", optional=True))

    @property
    def shown(self) -> str:
        """How a person knows the document: its file name, else its id."""
        return repr(self.name) if self.name else self.document_id


@dataclass(frozen=True)
class RetentionApplied:
    """``dms.document.retention_applied.v1``: the fields the gate uses."""

    document_id: str
    project_code: str
    retention_label: str
    jurisdiction: Region
    applied_at: datetime

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RetentionApplied:
        """Build from a decoded Avro record."""
        return cls(_text(record, "document_id"), _text(record, "project_code"), _text(record, "retention_label"),
                   _text(record, "jurisdiction"), _stamp(record.get("applied_at"), "applied_at"))


EnvelopeStatus = Literal["sent", "delivered", "completed"]
#: An envelope's status only moves forward: completed wins over delivered over sent, in whatever order they come.
_ENVELOPE_RANK: dict[EnvelopeStatus, int] = {"sent": 0, "delivered": 1, "completed": 2}


@dataclass(frozen=True)
class EnvelopeChanged:
    """``esign.envelope.sent.v1``, ``esign.envelope.delivered.v1`` or ``esign.envelope.completed.v1``: the fields
    the gate uses. A completed envelope signed its document; one sent or delivered is waiting for its signers."""

    envelope_id: str
    project_code: str
    document_class: DocumentClass
    at: datetime
    status: EnvelopeStatus = "completed"
    document_name: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any], status: EnvelopeStatus | None = None) -> EnvelopeChanged:
        """Build from a decoded Avro record of the ``status`` event (its ``<status>_at``), or from a stored fact
        (which names its status; a fact without one was a completed envelope)."""
        status = status or record.get("status") or "completed"
        if status not in _ENVELOPE_RANK:
            raise InvalidEvent(f"status {status!r} is not an envelope status", field="status")
        at = record.get("at", record.get(f"{status}_at"))
        return cls(_text(record, "envelope_id"), _text(record, "project_code"), _text(record, "document_class"),
                   _stamp(at, f"{status}_at"), status, _text(record, "document_name", optional=True))


Event = InvoiceDrafted | DocumentStateChanged | RetentionApplied | EnvelopeChanged
_FROM_RECORD: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "erp.invoice.drafted.v1": InvoiceDrafted.from_record,
    "dms.document.state_changed.v1": DocumentStateChanged.from_record,
    "dms.document.retention_applied.v1": RetentionApplied.from_record,
    "esign.envelope.sent.v1": partial(EnvelopeChanged.from_record, status="sent"),
    "esign.envelope.delivered.v1": partial(EnvelopeChanged.from_record, status="delivered"),
    "esign.envelope.completed.v1": partial(EnvelopeChanged.from_record, status="completed"),
}
#: The event types that re-evaluate the gate.
EVENT_TYPES: tuple[str, ...] = tuple(_FROM_RECORD)


def event_from_record(event_type: str, record: Mapping[str, Any]) -> Event:
    """The gate's view of a decoded event of one of :data:`EVENT_TYPES`."""
    if event_type not in _FROM_RECORD:
        raise InvalidEvent(f"the readiness gate does not read {event_type!r}", field="type")
    return _FROM_RECORD[event_type](record)


# --------------------------------------------------------------------------------------------- facts


def _doc_key(event: DocumentStateChanged) -> tuple[datetime, int, str, str, str, str, str]:
    return (event.changed_at, _STATE_RANK[event.state], event.document_class, event.milestone or "",
            event.invoice_number or "", event.name or "", event.reference or "")


def _retention_key(event: RetentionApplied) -> tuple[datetime, str, str]:
    return (event.applied_at, event.retention_label, event.jurisdiction)


def _draft_key(event: InvoiceDrafted) -> tuple[datetime, str, tuple[Billed, ...]]:
    return (event.drafted_at, event.milestone or "", event.bills)


def _envelope_key(event: EnvelopeChanged) -> tuple[int, datetime, str, str]:
    return (_ENVELOPE_RANK[event.status], event.at, event.document_class, event.document_name or "")


@dataclass(frozen=True)
class InvoiceFacts:
    """What the gate knows about one invoice; build with :meth:`start`, grow with :func:`apply`.

    Each mapping keeps the winning event per key (document id, envelope id): the one with the greatest
    ``(timestamp, content)`` key, which makes folding commutative and idempotent.
    """

    invoice_number: str
    project_code: str
    engagement_type: EngagementType
    drafted: InvoiceDrafted | None = None
    documents: Mapping[str, DocumentStateChanged] = field(default_factory=dict)
    retention: Mapping[str, RetentionApplied] = field(default_factory=dict)
    envelopes: Mapping[str, EnvelopeChanged] = field(default_factory=dict)

    @classmethod
    def start(cls, invoice_number: str, project_code: str, engagement_type: EngagementType) -> InvoiceFacts:
        """No facts yet about this invoice of this project."""
        return cls(invoice_number, project_code, engagement_type)

    @property
    def milestone(self) -> str | None:
        """The invoice's billing milestone, once drafted."""
        return self.drafted.milestone if self.drafted is not None else None

    @property
    def bills(self) -> tuple[Billed, ...]:
        """What the ERP says the invoice bills, once drafted."""
        return self.drafted.bills if self.drafted is not None else ()


def apply(facts: InvoiceFacts, event: Event) -> InvoiceFacts:
    """The facts with one more event; events of other projects or invoices change nothing."""
    if event.project_code != facts.project_code:
        return facts
    if isinstance(event, InvoiceDrafted):
        if event.invoice_number != facts.invoice_number:
            return facts
        if facts.drafted is not None and _draft_key(facts.drafted) >= _draft_key(event):
            return facts
        return replace(facts, drafted=event)
    if isinstance(event, DocumentStateChanged):
        doc = facts.documents.get(event.document_id)
        if doc is not None and _doc_key(doc) >= _doc_key(event):
            return facts
        return replace(facts, documents={**facts.documents, event.document_id: event})
    if isinstance(event, RetentionApplied):
        label = facts.retention.get(event.document_id)
        if label is not None and _retention_key(label) >= _retention_key(event):
            return facts
        return replace(facts, retention={**facts.retention, event.document_id: event})
    envelope = facts.envelopes.get(event.envelope_id)
    if envelope is not None and _envelope_key(envelope) >= _envelope_key(event):
        return facts
    return replace(facts, envelopes={**facts.envelopes, event.envelope_id: event})


def apply_all(facts: InvoiceFacts, events: Iterable[Event]) -> InvoiceFacts:
    """The facts with every event applied."""
    for event in events:
        facts = apply(facts, event)
    return facts


# ------------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True, order=True)
class HoldReason:
    """One reason an invoice is held: a stable code, the document id or artefact it concerns, what a person knows
    it by (the file's or the envelope's document name) and who takes the next step (an owner of the policy)."""

    code: HoldCode
    artefact: str
    detail: str = ""
    name: str | None = None
    owner: str | None = None

    def to_record(self) -> dict[str, str | None]:
        """The ``hub.common.HoldReason`` record."""
        return {"code": self.code, "artefact": self.artefact, "detail": self.detail or None, "name": self.name,
                "owner": self.owner}


@dataclass(frozen=True)
class Readiness:
    """The gate's verdict: ``ready`` with no reasons, or ``held`` with every reason, sorted."""

    status: ReadinessStatus
    reasons: tuple[HoldReason, ...] = ()

    @classmethod
    def of(cls, reasons: Iterable[HoldReason]) -> Readiness:
        """The verdict for these reasons (duplicates dropped, sorted by code, artefact, detail)."""
        ordered = tuple(sorted(set(reasons)))
        return cls("held" if ordered else "ready", ordered)


def _linked(doc: DocumentStateChanged, facts: InvoiceFacts, scope: Scope) -> bool:
    if scope == "project":
        return True
    return doc.invoice_number == facts.invoice_number or (
        facts.milestone is not None and doc.milestone == facts.milestone) or any(b.matches(doc) for b in facts.bills)


def _check(requirement: Requirement, facts: InvoiceFacts, label_for: Callable[[DocumentClass], str]
           ) -> list[HoldReason]:
    cls = requirement.document_class
    docs = sorted((doc for doc in facts.documents.values()
                   if doc.document_class == cls and doc.state not in _WITHDRAWN
                   and _linked(doc, facts, requirement.scope)), key=lambda doc: doc.document_id)
    accepted = [doc for doc in docs if doc.state in requirement.states]
    envelopes = [e for e in facts.envelopes.values() if e.document_class == cls and e.status == "completed"] \
        if requirement.envelope_counts else []
    wanted = " or ".join(sorted(requirement.states))
    where = "for the project" if requirement.scope == "project" else \
        f"linked to milestone {facts.milestone!r} or invoice {facts.invoice_number}" if facts.milestone else \
        f"linked to invoice {facts.invoice_number}"
    reasons: list[HoldReason] = []
    if requirement.every_document:
        reasons += [HoldReason(requirement.code, doc.document_id, f"{cls} {doc.shown} is {doc.state}, needs {wanted}",
                               doc.name)
                    for doc in docs if doc not in accepted]
    expected = [billed for billed in facts.bills if billed.document_class == cls]
    live = [doc for doc in facts.documents.values() if doc.state not in _WITHDRAWN]
    for billed in expected:  # each artefact the invoice bills must be there, and accepted
        matching = sorted((doc for doc in live if billed.matches(doc)), key=lambda doc: doc.document_id)
        if not matching:
            reasons.append(HoldReason(requirement.code, billed.reference,
                                      f"{cls} {billed.reference!r}, billed by invoice {facts.invoice_number}, is not "
                                      "in the workspace"))
        elif not any(doc.state in requirement.states for doc in matching):
            reasons += [HoldReason(requirement.code, doc.document_id,
                                   f"{cls} {doc.shown} is {doc.state}, needs {wanted}", doc.name) for doc in matching]
    if not accepted and not envelopes and not expected and not (requirement.every_document and docs):
        reasons.append(HoldReason(requirement.code, cls, f"no {wanted} {cls} {where}"))
    if requirement.retention_label:
        expected_label = label_for(cls)
        for doc in accepted:
            applied = facts.retention.get(doc.document_id)
            if applied is None or applied.retention_label != expected_label:
                found = "no label" if applied is None else f"label {applied.retention_label!r}"
                reasons.append(HoldReason("RETENTION_LABEL_MISSING", doc.document_id,
                                          f"{cls} {doc.shown} has {found}, needs {expected_label!r}", doc.name))
    return reasons


def evaluate(facts: InvoiceFacts, rules: ReadinessRules, *,
             expected_retention_label: str | Callable[[DocumentClass], str]) -> Readiness:
    """Whether the invoice may be finalised, with every hold reason.

    ``expected_retention_label`` is the jurisdiction's label for the checked documents (from the
    retention policy, for the project's region, country and client): one label, or one per class.
    """
    label = expected_retention_label
    label_for: Callable[[DocumentClass], str] = (lambda _: label) if isinstance(label, str) else label
    checklist = rules.checklist_for(facts.engagement_type)
    reasons: list[HoldReason] = []
    if facts.drafted is None:
        reasons.append(HoldReason("INVOICE_NOT_DRAFTED", facts.invoice_number,
                                  f"the ERP has not drafted invoice {facts.invoice_number}"))
    for requirement in checklist.requirements:
        reasons += _check(requirement, facts, label_for)
    required = {requirement.document_class for requirement in checklist.requirements}
    for cls in sorted({billed.document_class for billed in facts.bills} - required):
        if cls in _BILLED:  # billed, though the checklist does not ask for the class
            reasons += _check(_BILLED[cls], facts, label_for)
    for doc in facts.documents.values():
        for signed in checklist.must_be_signed:
            if doc.document_class == signed and doc.state in ("draft", "in_review"):
                reasons.append(HoldReason(_UNSIGNED[signed], doc.document_id,
                                          f"{signed} {doc.shown} is {doc.state}, not signed", doc.name))
    for envelope in facts.envelopes.values():  # sent for signature from the e-signature platform, not signed yet
        if envelope.status != "completed" and envelope.document_class in checklist.must_be_signed:
            signed = envelope.document_class
            name = f" {envelope.document_name!r}" if envelope.document_name else ""
            reasons.append(HoldReason(_UNSIGNED[signed], envelope.envelope_id,
                                      f"{signed}{name} is out for signature (envelope {envelope.envelope_id}, "
                                      f"{envelope.status}), not signed", envelope.document_name))
    return Readiness.of(replace(reason, owner=rules.owner_of(reason.code)) for reason in reasons)


def transition(before: Readiness | None, after: Readiness) -> bool:
    """Whether to emit ``hub.invoice.readiness_changed.v1``: first verdict, or status or reasons changed."""
    return before is None or before.status != after.status or before.reasons != after.reasons
