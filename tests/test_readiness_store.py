"""The invoice-readiness gate's stored facts: events as named facts, folding, the verdict per invoice,
stored verdicts and the hard-stop answer (pure; a project's facts as a dict of JSON by fact name, as the
in-memory store keeps them and a Redis hash did)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actors
from actors import load_policy
from actors.invoice_readiness.facts import (
    ProjectFacts,
    ProjectMeta,
    Verdict,
    dump_event,
    event_of,
    event_record,
    field_of,
    fold,
    load_event,
    project_facts,
    readiness_body,
    stored_facts,
    verdict,
)
from actors.invoice_readiness.logic import (
    Billed,
    DocumentStateChanged,
    EnvelopeChanged,
    Event,
    HoldReason,
    InvoiceDrafted,
    InvoiceFacts,
    Readiness,
    RetentionApplied,
    apply_all,
)

POLICY = load_policy(actors.DEFAULT_POLICY)
RULES = POLICY.invoice_readiness  # type: ignore[attr-defined]  # a pattern's section, composed in
T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
ME_ENGINEERING = ProjectMeta(engagement_type="engineering", region="ME", country="AE", client_id="GULF")
ME_LABEL = "ME-Deliverable-10y"


def t(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes, milliseconds=123)


def doc(document_id: str, state: str, minutes: int, *, cls: str = "deliverable", milestone: str | None = "M2",
        invoice: str | None = None, project: str = "P1") -> DocumentStateChanged:
    return DocumentStateChanged(document_id, project, cls, state, t(minutes), milestone,  # type: ignore[arg-type]
                                invoice)


def label(document_id: str, name: str, minutes: int) -> RetentionApplied:
    return RetentionApplied(document_id, "P1", name, "ME", t(minutes))


def drafted(number: str = "INV-1", minutes: int = 0, milestone: str | None = "M2") -> InvoiceDrafted:
    return InvoiceDrafted(number, "P1", t(minutes), milestone)


EVENTS: list[Event] = [
    drafted(),
    doc("D-1", "approved", 1),
    label("D-1", ME_LABEL, 2),
    EnvelopeChanged("ENV-1", "P1", "sow", t(3)),
]


def stored(events: list[Event], meta: ProjectMeta | None = ME_ENGINEERING, *, as_bytes: bool = False
           ) -> dict[Any, Any]:
    """The project's facts as JSON by fact name (str or, as Redis returned them, bytes)."""
    raw: dict[str, str] = {field_of(event): dump_event(event) for event in events}
    if meta is not None:
        raw["meta"] = json.dumps(asdict(meta), sort_keys=True)
    return {k.encode(): v.encode() for k, v in raw.items()} if as_bytes else dict(raw)


def folded(events: list[Event], meta: ProjectMeta | None = ME_ENGINEERING) -> ProjectFacts:
    facts = ProjectFacts("P1", meta)
    for event in events:
        facts, _ = fold(facts, event)
    return facts


def codes(readiness: Readiness) -> list[tuple[str, str]]:
    return [(r.code, r.artefact) for r in readiness.reasons]


# ------------------------------------------------------------------------------------- hash fields


@pytest.mark.parametrize("event", [
    drafted(), drafted(milestone=None), doc("D-1", "approved", 1), doc("D-2", "in_review", 1, milestone=None,
                                                                       invoice="INV-1"),
    label("D-1", ME_LABEL, 2), EnvelopeChanged("ENV-1", "P1", "engagement_letter", t(3)),
    EnvelopeChanged("ENV-2", "P1", "change_order", t(3), "delivered", "CO-2.pdf"),
    InvoiceDrafted("INV-2", "P1", t(0), "M2", (Billed("change_record", "CR-12"), Billed("deliverable", "Pump"))),
    DocumentStateChanged("D-3", "P1", "change_record", "approved", t(1), name="CR 12.pdf", reference="CR-12"),
], ids=["drafted", "drafted-no-milestone", "document", "document-by-invoice", "label", "envelope",
        "envelope-out-for-signature", "drafted-with-bills", "document-with-reference"])
def test_each_kind_of_fact_round_trips_through_its_hash_field(event: Event) -> None:
    field, raw = field_of(event), dump_event(event)
    assert load_event(field, raw) == event
    assert load_event(field, raw.encode()) == event
    assert type(load_event(field, raw)) is type(event)


def test_an_envelope_stored_before_envelopes_had_a_status_reads_as_completed() -> None:
    """Facts stored when the gate took in completed envelopes only: ``completed_at``, no ``status``."""
    at = round(t(3).timestamp() * 1000)
    old = json.dumps({"envelope_id": "ENV-1", "project_code": "P1", "document_class": "sow", "completed_at": at})
    assert load_event("env:ENV-1", old) == EnvelopeChanged("ENV-1", "P1", "sow", t(3), "completed")


def test_fields_are_named_by_kind_and_id() -> None:
    assert [field_of(event) for event in EVENTS] == ["inv:INV-1", "doc:D-1", "ret:D-1", "env:ENV-1"]


def test_timestamps_are_stored_as_epoch_milliseconds() -> None:
    record = json.loads(dump_event(doc("D-1", "approved", 1)))
    assert record["changed_at"] == int(t(1).timestamp()) * 1000 + 123
    assert record == {"document_id": "D-1", "project_code": "P1", "document_class": "deliverable",
                      "state": "approved", "changed_at": record["changed_at"], "milestone": "M2",
                      "invoice_number": None, "name": None, "reference": None}


def test_the_hash_reads_as_the_events_folded() -> None:
    for as_bytes in (False, True):
        facts = project_facts("P1", stored(EVENTS, as_bytes=as_bytes))
        assert facts == folded(EVENTS)
        assert facts.meta == ME_ENGINEERING
        assert facts.drafts == {"INV-1": drafted()}
        assert facts.shared is not None and set(facts.shared.documents) == {"D-1"}
        assert set(facts.shared.retention) == {"D-1"} and set(facts.shared.envelopes) == {"ENV-1"}


def test_facts_read_back_from_their_json_records_are_the_events_folded() -> None:
    events = [*EVENTS, doc("D-2", "in_review", 4), drafted("INV-2", 1, milestone="M3")]
    rows = [(field_of(event), json.loads(json.dumps(event_record(event)))) for event in events]  # as a JSON column
    assert stored_facts("P1", ME_ENGINEERING, (event_of(name, record) for name, record in rows)) == folded(events)
    assert stored_facts("P1", None, []) == project_facts("P1", {})


def test_a_hash_without_meta_has_no_meta() -> None:
    facts = project_facts("P1", stored(EVENTS, meta=None))
    assert facts.meta is None and facts.drafts == {"INV-1": drafted()}


def test_an_empty_hash_has_no_facts() -> None:
    facts = project_facts("P1", {})
    assert facts.meta is None and facts.drafts == {}
    assert facts.base() == InvoiceFacts.start("", "P1", "consulting")


# ------------------------------------------------------------------------------------------- fold


def test_folding_a_new_fact_changes_the_facts() -> None:
    facts = ProjectFacts("P1", ME_ENGINEERING)
    for event in EVENTS:
        facts, changed = fold(facts, event)
        assert changed


def test_a_duplicate_changes_nothing() -> None:
    facts = folded(EVENTS)
    for event in EVENTS:
        again, changed = fold(facts, event)
        assert not changed and again == facts


def test_an_older_state_of_the_same_document_changes_nothing() -> None:
    facts = folded([doc("D-1", "approved", 5)])
    after, changed = fold(facts, doc("D-1", "in_review", 1))
    assert not changed
    assert after.base().documents["D-1"].state == "approved"
    newer, changed = fold(facts, doc("D-1", "in_review", 9))
    assert changed and newer.base().documents["D-1"].state == "in_review"


def test_an_older_draft_of_the_same_invoice_changes_nothing() -> None:
    facts = folded([drafted(minutes=5, milestone="M3")])
    after, changed = fold(facts, drafted(minutes=1, milestone="M2"))
    assert not changed and after.drafts["INV-1"].milestone == "M3"
    after, changed = fold(facts, drafted("INV-2", 1))
    assert changed and set(after.drafts) == {"INV-1", "INV-2"}


def test_facts_of_another_project_change_nothing() -> None:
    facts = folded(EVENTS)
    for event in (doc("X-1", "approved", 9, project="P2"), InvoiceDrafted("INV-9", "P2", t(9))):
        after, changed = fold(facts, event)
        assert not changed and after.drafts == facts.drafts and after.base() == facts.base()


@settings(max_examples=200, deadline=None)
@given(st.permutations([*EVENTS, doc("D-1", "in_review", 0), doc("D-2", "approved", 4), drafted("INV-2", 1),
                        label("D-2", "EU-Deliverable-7y", 5), *EVENTS[:2]]))
def test_the_facts_are_the_same_in_any_order_and_survive_the_hash(events: list[Event]) -> None:
    ordered = folded(sorted(set(events), key=lambda e: str(e)))
    facts = folded(events)
    assert facts.drafts == ordered.drafts and facts.base() == ordered.base()
    kept: list[Event] = [*facts.drafts.values(), *facts.base().documents.values(), *facts.base().retention.values(),
                         *facts.base().envelopes.values()]
    assert project_facts("P1", stored(kept)) == facts


# ----------------------------------------------------------------------------------------- verdict


def test_the_expected_label_per_class_comes_from_the_retention_policy() -> None:
    labels = ME_ENGINEERING.label_for(POLICY)
    assert labels("deliverable") == ME_LABEL
    assert labels("service_report") == "ME-Service-10y"
    assert ProjectMeta("engineering", "EU", "DE", "ACME").label_for(POLICY)("deliverable") == "EU-Deliverable-7y"
    assert ProjectMeta("consulting", "EU", "DE", "ACME").label_for(POLICY)("sow") == "DE-Contract-10y"


def test_an_unknown_invoice_is_held_as_not_drafted() -> None:
    readiness = verdict(folded(EVENTS), "INV-404", POLICY, RULES)
    assert readiness.status == "held"
    assert codes(readiness) == [("INVOICE_NOT_DRAFTED", "INV-404")]
    assert "INV-404" in readiness.reasons[0].detail


def test_an_invoice_of_a_project_without_meta_is_held_as_not_drafted() -> None:
    readiness = verdict(folded(EVENTS, meta=None), "INV-1", POLICY, RULES)
    assert codes(readiness) == [("INVOICE_NOT_DRAFTED", "INV-1")]


def test_a_drafted_invoice_gets_the_checklist_verdict() -> None:
    assert verdict(folded(EVENTS), "INV-1", POLICY, RULES) == Readiness("ready")
    held = verdict(folded([*EVENTS, doc("D-2", "in_review", 4)]), "INV-1", POLICY, RULES)
    assert codes(held) == [("DELIVERABLE_NOT_APPROVED", "D-2")]
    other_milestone = verdict(folded([*EVENTS, doc("D-3", "in_review", 4, milestone="M9")]), "INV-1", POLICY, RULES)
    assert other_milestone == Readiness("ready")


def test_a_deliverable_with_another_jurisdictions_label_is_held() -> None:
    readiness = verdict(folded([*EVENTS, label("D-1", "EU-Deliverable-7y", 9)]), "INV-1", POLICY, RULES)
    assert codes(readiness) == [("RETENTION_LABEL_MISSING", "D-1")]
    assert ME_LABEL in readiness.reasons[0].detail
    unlabelled = verdict(folded([drafted(), doc("D-1", "approved", 1)]), "INV-1", POLICY, RULES)
    assert codes(unlabelled) == [("RETENTION_LABEL_MISSING", "D-1")]


def test_the_verdict_follows_the_projects_engagement_type() -> None:
    consulting = ProjectMeta("consulting", "EU", "DE", "ACME")
    events: list[Event] = [drafted(milestone=None), doc("SOW-1", "in_review", 1, cls="sow", milestone=None)]
    assert codes(verdict(folded(events, consulting), "INV-1", POLICY, RULES)) == [("SOW_NOT_SIGNED", "sow")]
    events.append(EnvelopeChanged("ENV-1", "P1", "sow", t(2)))
    assert verdict(folded(events, consulting), "INV-1", POLICY, RULES) == Readiness("ready")
    events.append(doc("CO-1", "draft", 3, cls="change_order", milestone=None))
    assert codes(verdict(folded(events, consulting), "INV-1", POLICY, RULES)) == [("UNSIGNED_CHANGE_ORDER", "CO-1")]


def test_the_verdict_read_from_the_hash_is_the_folded_one() -> None:
    events = [*EVENTS, doc("D-2", "in_review", 4), drafted("INV-2", 1, milestone="M3")]
    from_hash = project_facts("P1", stored(events, as_bytes=True))
    for number in ("INV-1", "INV-2", "INV-3"):
        assert verdict(from_hash, number, POLICY, RULES) == verdict(folded(events), number, POLICY, RULES)


def test_each_invoice_sees_only_its_own_draft() -> None:
    facts = folded([*EVENTS, drafted("INV-2", 1, milestone="M3")])
    assert facts.for_invoice("INV-2").milestone == "M3"
    assert facts.for_invoice("INV-1").milestone == "M2"
    assert facts.for_invoice("INV-1").engagement_type == "engineering"
    assert apply_all(InvoiceFacts.start("INV-1", "P1", "engineering"), EVENTS) == facts.for_invoice("INV-1")


# ---------------------------------------------------------------------------------- stored verdicts


@pytest.mark.parametrize("readiness", [
    Readiness("ready"),
    Readiness.of([HoldReason("DELIVERABLE_NOT_APPROVED", "D-2", "deliverable D-2 is in_review, needs approved"),
                  HoldReason("RETENTION_LABEL_MISSING", "D-1")]),
])
def test_a_verdict_round_trips_through_its_record(readiness: Readiness) -> None:
    stored_verdict = Verdict(readiness, 7)
    assert Verdict.of_record(stored_verdict.record()) == stored_verdict
    raw = stored_verdict.dump()
    assert Verdict.load(raw) == stored_verdict
    assert Verdict.load(raw.encode()) == stored_verdict
    assert json.loads(raw)["status"] == readiness.status and json.loads(raw)["seq"] == 7


def test_no_stored_verdict_loads_as_none() -> None:
    assert Verdict.load(None) is None


def test_the_same_verdict_dumps_the_same() -> None:
    reasons = [HoldReason("SOW_NOT_SIGNED", "sow"), HoldReason("INVOICE_NOT_DRAFTED", "INV-1")]
    assert Verdict(Readiness.of(reasons), 1).dump() == Verdict(Readiness.of(reversed(reasons)), 1).dump()


# ------------------------------------------------------------------------------------ the answer


def test_the_answer_of_a_held_invoice_forbids_finalising() -> None:
    readiness = verdict(folded([*EVENTS, doc("D-2", "in_review", 4)]), "INV-1", POLICY, RULES)
    assert readiness_body("INV-1", "P1", readiness) == {
        "invoice_number": "INV-1", "project_code": "P1", "status": "held", "may_finalize": False,
        "hold_reasons": [{"code": "DELIVERABLE_NOT_APPROVED", "artefact": "D-2",
                          "detail": "deliverable D-2 is in_review, needs approved", "name": None, "owner": "pmo"}],
    }


def test_the_answer_of_a_ready_invoice_allows_finalising() -> None:
    assert readiness_body("INV-1", "P1", Readiness("ready")) == {
        "invoice_number": "INV-1", "project_code": "P1", "status": "ready", "may_finalize": True,
        "hold_reasons": []}


def test_the_answer_for_an_unknown_invoice_has_no_project() -> None:
    body = readiness_body("INV-404", None, verdict(ProjectFacts("P1"), "INV-404", POLICY, RULES))
    assert body["project_code"] is None and body["may_finalize"] is False
    assert [r["code"] for r in body["hold_reasons"]] == ["INVOICE_NOT_DRAFTED"]


def test_a_timestamp_survives_the_hash_to_the_millisecond() -> None:
    moment = datetime(1987, 5, 13, 21, 16, 38, 336000, tzinfo=UTC)  # float milliseconds truncate this one
    event = DocumentStateChanged("D-1", "P-1", "deliverable", "approved", moment)
    assert load_event(field_of(event), dump_event(event)) == event
