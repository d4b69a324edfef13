"""The invoice-readiness gate: the invoice scenarios, hold codes, transitions, and order independence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import load_policy
from actors.invoice_readiness.logic import (
    Billed,
    DocumentStateChanged,
    EnvelopeChanged,
    Event,
    HoldReason,
    InvoiceDrafted,
    InvoiceFacts,
    Readiness,
    ReadinessRules,
    RetentionApplied,
    apply,
    apply_all,
    default_rules,
    evaluate,
    event_from_record,
    transition,
)
from hub.errors import InvalidEvent
from hub.policy import EngagementType

ROOT = Path(__file__).resolve().parent.parent
POLICY = load_policy(ROOT / "actors" / "default_policy.yaml")
RULES = default_rules()
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ME_LABEL = POLICY.retention.label_for(region="ME", country="AE", client_id="GULF", engagement_type="engineering",
                                      document_class="deliverable")
EU_LABEL = POLICY.retention.label_for(region="EU", country="DE", client_id="ACME",
                                      engagement_type="managed_services", document_class="service_report")


def t(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def doc(document_id: str, document_class: str, state: str, minutes: int, *, project: str = "P1",
        milestone: str | None = None, invoice: str | None = None) -> DocumentStateChanged:
    return DocumentStateChanged(document_id, project, document_class, state, t(minutes),  # type: ignore[arg-type]
                                milestone=milestone, invoice_number=invoice)


def drafted(minutes: int = 0, *, milestone: str | None = None) -> InvoiceDrafted:
    return InvoiceDrafted("INV-1", "P1", t(minutes), milestone)


def label(document_id: str, name: str, minutes: int) -> RetentionApplied:
    return RetentionApplied(document_id, "P1", name, "ME", t(minutes))


def run(engagement_type: EngagementType, events: list[Event], expected: str = ME_LABEL,
        rules: ReadinessRules = RULES) -> Readiness:
    facts = apply_all(InvoiceFacts.start("INV-1", "P1", engagement_type), events)
    return evaluate(facts, rules, expected_retention_label=expected)


def codes(readiness: Readiness) -> list[tuple[str, str]]:
    return [(r.code, r.artefact) for r in readiness.reasons]


# Engineering milestone in the Middle East: two deliverables, one approved without the label, one in review.
ENGINEERING: list[Event] = [
    drafted(0, milestone="M2"),
    doc("D-1", "deliverable", "in_review", 1, milestone="M2"),
    doc("D-2", "deliverable", "in_review", 2, milestone="M2"),
    doc("D-1", "deliverable", "approved", 3, milestone="M2"),
    label("D-1", ME_LABEL, 4),
    doc("D-2", "deliverable", "approved", 5, milestone="M2"),
    label("D-2", ME_LABEL, 6),
]
MANAGED: list[Event] = [
    drafted(0),
    doc("SR-1", "service_report", "approved", 1, invoice="INV-1"),
    doc("CR-1", "change_record", "approved", 2, invoice="INV-1"),
    doc("CR-2", "change_record", "in_review", 3, invoice="INV-1"),
    doc("CA-1", "customer_approval", "approved", 4, invoice="INV-1"),
    doc("CR-2", "change_record", "approved", 5, invoice="INV-1"),
    doc("CR-2", "change_record", "in_review", 5, invoice="INV-1"),  # same timestamp: the further state wins
]
CONSULTING: list[Event] = [
    drafted(0),
    doc("SOW-1", "sow", "in_review", 1),
    EnvelopeChanged("ENV-1", "P1", "sow", t(2)),
]
SCENARIOS: dict[EngagementType, list[Event]] = {
    "engineering": ENGINEERING, "managed_services": MANAGED, "consulting": CONSULTING,
}


def test_engineering_held_with_both_missing_pieces_then_ready_on_the_last() -> None:
    held = run("engineering", ENGINEERING[:5])
    assert held.status == "held"
    assert codes(held) == [("DELIVERABLE_NOT_APPROVED", "D-2")]
    both = run("engineering", [*ENGINEERING[:4], doc("D-2", "deliverable", "approved", 5, milestone="M2"),
                               label("D-2", ME_LABEL, 6)])
    assert codes(both) == [("RETENTION_LABEL_MISSING", "D-1")]
    missing = run("engineering", ENGINEERING[:4])
    assert codes(missing) == [("DELIVERABLE_NOT_APPROVED", "D-2"), ("RETENTION_LABEL_MISSING", "D-1")]
    assert all(r.detail for r in missing.reasons)
    verdicts = [run("engineering", ENGINEERING[:n]).status for n in range(1, len(ENGINEERING) + 1)]
    assert verdicts == ["held"] * (len(ENGINEERING) - 1) + ["ready"]


def test_engineering_wrong_jurisdiction_label_holds() -> None:
    events = [*ENGINEERING[:-1], label("D-2", "EU-Deliverable-7y", 6)]
    readiness = run("engineering", events)
    assert codes(readiness) == [("RETENTION_LABEL_MISSING", "D-2")]
    assert "EU-Deliverable-7y" in readiness.reasons[0].detail


def test_engineering_without_deliverables_names_the_class_and_ignores_other_milestones() -> None:
    readiness = run("engineering", [drafted(0, milestone="M2"), doc("D-9", "deliverable", "in_review", 1,
                                                                    milestone="M1")])
    assert codes(readiness) == [("DELIVERABLE_NOT_APPROVED", "deliverable")]


def test_managed_services_held_until_report_approval_and_change_records() -> None:
    first = run("managed_services", MANAGED[:1], EU_LABEL)
    assert codes(first) == [("CHANGE_RECORD_MISSING", "change_record"),
                            ("CUSTOMER_APPROVAL_MISSING", "customer_approval"),
                            ("SERVICE_REPORT_MISSING", "service_report")]
    assert codes(run("managed_services", MANAGED[:4], EU_LABEL)) == [
        ("CHANGE_RECORD_MISSING", "CR-2"), ("CUSTOMER_APPROVAL_MISSING", "customer_approval")]
    assert codes(run("managed_services", MANAGED[:5], EU_LABEL)) == [("CHANGE_RECORD_MISSING", "CR-2")]
    assert run("managed_services", MANAGED, EU_LABEL) == Readiness("ready")


def test_managed_services_documents_of_another_invoice_do_not_count() -> None:
    events: list[Event] = [drafted(0), doc("SR-9", "service_report", "approved", 1, invoice="INV-2")]
    assert ("SERVICE_REPORT_MISSING", "service_report") in codes(run("managed_services", events))


def test_consulting_needs_a_signed_sow_by_envelope_or_document_state() -> None:
    assert codes(run("consulting", CONSULTING[:2])) == [("SOW_NOT_SIGNED", "sow")]
    assert run("consulting", CONSULTING).status == "ready"
    assert run("consulting", [drafted(0), doc("SOW-1", "sow", "signed", 1)]).status == "ready"


def test_legal_needs_a_signed_engagement_letter() -> None:
    assert codes(run("legal", [drafted(0)])) == [("ENGAGEMENT_LETTER_NOT_SIGNED", "engagement_letter")]
    assert run("legal", [drafted(0), EnvelopeChanged("ENV-2", "P1", "engagement_letter", t(1))]).status == "ready"


def test_unsigned_change_order_and_undrafted_invoice_hold() -> None:
    readiness = run("consulting", [*CONSULTING[1:], doc("CO-1", "change_order", "in_review", 3)])
    assert codes(readiness) == [("INVOICE_NOT_DRAFTED", "INV-1"), ("UNSIGNED_CHANGE_ORDER", "CO-1")]
    signed = run("consulting", [*CONSULTING, doc("CO-1", "change_order", "in_review", 3),
                                doc("CO-1", "change_order", "signed", 4)])
    assert signed.status == "ready"


def _envelope(status: str, minutes: int, document_class: str = "change_order") -> EnvelopeChanged:
    return EnvelopeChanged("ENV-7", "P1", document_class, t(minutes), status,  # type: ignore[arg-type]
                           "CO-7 Scope change.pdf")


def test_a_change_order_out_for_signature_holds_until_its_envelope_completes_in_whatever_order_they_come() -> None:
    for status in ("sent", "delivered"):
        held = run("consulting", [*CONSULTING, _envelope(status, 3)])
        [reason] = held.reasons
        assert (reason.code, reason.artefact) == ("UNSIGNED_CHANGE_ORDER", "ENV-7")
        assert f"'CO-7 Scope change.pdf' is out for signature (envelope ENV-7, {status})" in reason.detail
    in_order = [_envelope("sent", 3), _envelope("delivered", 4), _envelope("completed", 5)]
    assert run("consulting", [*CONSULTING, *in_order]).status == "ready"
    # Connect delivers in any order, and again: completed is never undone by a sent or delivered that comes later.
    assert run("consulting", [*CONSULTING, *reversed(in_order), _envelope("sent", 3)]).status == "ready"


def test_a_sow_out_for_signature_is_not_a_signed_sow() -> None:
    assert codes(run("consulting", [drafted(0), _envelope("delivered", 1, "sow")])) == [("SOW_NOT_SIGNED", "sow")]
    assert run("consulting", [drafted(0), _envelope("completed", 1, "sow")]).status == "ready"


def test_the_envelope_events_are_read_with_their_own_instants() -> None:
    record = {"envelope_id": "ENV-7", "project_code": "P1", "document_class": "change_order",
              "document_name": "CO-7.pdf", "signers": [], "delivered_at": t(2)}
    event = event_from_record("esign.envelope.delivered.v1", record)
    assert event == EnvelopeChanged("ENV-7", "P1", "change_order", t(2), "delivered", "CO-7.pdf")
    with pytest.raises(InvalidEvent, match="sent_at"):
        event_from_record("esign.envelope.sent.v1", record)


def test_events_of_other_projects_or_invoices_change_nothing() -> None:
    facts = InvoiceFacts.start("INV-1", "P1", "consulting")
    assert apply(facts, doc("X", "sow", "signed", 1, project="P2")) is facts
    assert apply(facts, InvoiceDrafted("INV-2", "P1", t(0))) is facts


def test_a_stale_state_never_regresses_a_document() -> None:
    late = [doc("D-1", "deliverable", "approved", 5, milestone="M2"), doc("D-1", "deliverable", "in_review", 1,
                                                                          milestone="M2")]
    facts = apply_all(InvoiceFacts.start("INV-1", "P1", "engineering"), late)
    assert facts.documents["D-1"].state == "approved"


def test_transition_emits_only_on_change() -> None:
    held = Readiness.of([HoldReason("SOW_NOT_SIGNED", "sow")])
    assert transition(None, held)
    assert not transition(held, Readiness.of([HoldReason("SOW_NOT_SIGNED", "sow")] * 2))
    assert transition(held, Readiness.of([HoldReason("SOW_NOT_SIGNED", "sow"), HoldReason("INVOICE_NOT_DRAFTED",
                                                                                          "INV-1")]))
    assert transition(held, Readiness("ready"))
    assert held.reasons[0].to_record() == {"code": "SOW_NOT_SIGNED", "artefact": "sow", "detail": None,
                                           "name": None, "owner": None}


def test_events_from_records() -> None:
    event = event_from_record("dms.document.state_changed.v1", {
        "document_id": "D-1", "drive_id": "d", "item_id": "i", "project_code": "P1",
        "document_class": "deliverable", "state": "approved", "milestone": "M2",
        "changed_at": int(T0.timestamp() * 1000)})
    assert event == doc("D-1", "deliverable", "approved", 0, milestone="M2")
    with pytest.raises(InvalidEvent):
        event_from_record("erp.project.created.v1", {})
    with pytest.raises(InvalidEvent):
        event_from_record("erp.invoice.drafted.v1", {"invoice_number": "INV-1", "project_code": "P1",
                                                     "drafted_at": datetime(2025, 1, 1)})


def test_rules_are_data() -> None:
    again = ReadinessRules.model_validate(RULES.model_dump())
    assert again == RULES
    assert set(RULES.checklists) == {"engineering", "managed_services", "consulting", "legal"}


@st.composite
def shuffled(draw: st.DrawFn) -> tuple[EngagementType, list[Event]]:
    engagement_type: EngagementType = draw(st.sampled_from(sorted(SCENARIOS)))
    events = SCENARIOS[engagement_type]
    extra = draw(st.lists(st.sampled_from(events), max_size=len(events) * 2))
    return engagement_type, draw(st.permutations([*events, *extra]))


@settings(max_examples=300, deadline=None)
@given(shuffled())
def test_any_permutation_with_duplicates_reaches_the_ordered_verdict(case: tuple[EngagementType, list[Event]]) -> None:
    engagement_type, events = case
    start = InvoiceFacts.start("INV-1", "P1", engagement_type)
    expected = ME_LABEL if engagement_type == "engineering" else EU_LABEL
    assert apply_all(start, events) == apply_all(start, SCENARIOS[engagement_type])
    assert run(engagement_type, events, expected) == run(engagement_type, SCENARIOS[engagement_type], expected)
    assert run(engagement_type, events, expected).status == "ready"


@settings(max_examples=200, deadline=None)
@given(st.permutations(ENGINEERING[:5] + ENGINEERING[:3]))
def test_a_held_prefix_is_held_the_same_way_in_any_order(events: list[Event]) -> None:
    assert run("engineering", events) == run("engineering", ENGINEERING[:5])


def test_a_hold_names_the_document_by_its_file_name_and_says_who_takes_the_next_step() -> None:
    named = DocumentStateChanged("D-2", "P1", "deliverable", "in_review", t(2), milestone="M2",
                                 name="M2 pipeline drawings.pdf")
    held = run("engineering", [drafted(0, milestone="M2"), doc("D-1", "deliverable", "approved", 1, milestone="M2"),
                               named])
    by_code = {reason.code: reason for reason in held.reasons}
    review = by_code["DELIVERABLE_NOT_APPROVED"]
    assert (review.artefact, review.name, review.owner) == ("D-2", "M2 pipeline drawings.pdf", "pmo")
    assert review.detail == "deliverable 'M2 pipeline drawings.pdf' is in_review, needs approved"
    label = by_code["RETENTION_LABEL_MISSING"]  # D-1 has no name: a fact from before names were kept
    assert (label.artefact, label.name, label.owner) == ("D-1", None, "records_management")
    assert label.detail.startswith("deliverable D-1 has no label")
    missing = run("engineering", [drafted(0, milestone="M2")]).reasons
    assert [(r.code, r.owner) for r in missing] == [("DELIVERABLE_NOT_APPROVED", "pmo")]
    assert missing[0].detail == "no approved deliverable linked to milestone 'M2' or invoice INV-1"
    [undrafted] = run("consulting", [*CONSULTING[1:]]).reasons
    assert (undrafted.code, undrafted.owner) == ("INVOICE_NOT_DRAFTED", "finance")


def test_the_policy_may_say_who_owns_a_hold() -> None:
    rules = ReadinessRules(checklists=RULES.checklists, owners={"DELIVERABLE_NOT_APPROVED": "finance"})
    held = run("engineering", [drafted(0, milestone="M2"), doc("D-2", "deliverable", "in_review", 1, milestone="M2")],
               rules=rules)
    assert [(r.code, r.owner) for r in held.reasons] == [("DELIVERABLE_NOT_APPROVED", "finance")]
    assert rules.owner_of("RETENTION_LABEL_MISSING") == "records_management"  # the others keep their default
    assert POLICY.section("invoice_readiness", ReadinessRules).owner_of("SOW_NOT_SIGNED") == "pmo"


# -- what the invoice bills, as the ERP states it ------------------------------------------------------


def _named(document_id: str, document_class: str, state: str, minutes: int, *, name: str | None = None,
           reference: str | None = None, milestone: str | None = None) -> DocumentStateChanged:
    return DocumentStateChanged(document_id, "P1", document_class, state, t(minutes),  # type: ignore[arg-type]
                                milestone=milestone, name=name, reference=reference)


def _billing(*bills: tuple[str, str], milestone: str | None = None) -> InvoiceDrafted:
    return InvoiceDrafted("INV-1", "P1", t(0), milestone, tuple(Billed(c, r) for c, r in bills))  # type: ignore[arg-type]


def test_a_deliverable_the_milestone_bills_that_was_never_uploaded_holds_the_invoice() -> None:
    """Engineering, milestone M2 bills two deliverables; one is in the workspace, approved and labelled."""
    draft = _billing(("deliverable", "Pump design"), ("deliverable", "Pipe routing"), milestone="M2")
    pump = [_named("D-1", "deliverable", "approved", 1, name="Pump design.pdf"), label("D-1", ME_LABEL, 2)]
    held = run("engineering", [draft, *pump])
    [missing] = held.reasons
    assert (missing.code, missing.artefact, missing.owner) == ("DELIVERABLE_NOT_APPROVED", "Pipe routing", "pmo")
    assert missing.detail == "deliverable 'Pipe routing', billed by invoice INV-1, is not in the workspace"
    # Uploaded under another file name, its Reference column names it; in review first, then approved.
    routing = _named("D-9", "deliverable", "in_review", 3, name="PR-final-v3.pdf", reference="pipe ROUTING")
    [review] = run("engineering", [draft, *pump, routing]).reasons
    assert (review.code, review.artefact, review.name) == ("DELIVERABLE_NOT_APPROVED", "D-9", "PR-final-v3.pdf")
    approved = _named("D-9", "deliverable", "approved", 4, name="PR-final-v3.pdf", reference="pipe ROUTING")
    ready = run("engineering", [draft, *pump, routing, approved, label("D-9", ME_LABEL, 5)])
    assert ready.status == "ready"


def test_the_change_records_and_service_report_of_the_period_are_each_expected() -> None:
    draft = _billing(("change_record", "CR-12"), ("change_record", "CR-13"), ("service_report", "SR 2027-03"))
    present = [_named("CR-a", "change_record", "approved", 1, reference="CR-12"),
               _named("SR-a", "service_report", "approved", 2, name="SR 2027-03.pdf"),
               doc("CA-1", "customer_approval", "approved", 3, invoice="INV-1")]
    held = run("managed_services", [draft, *present], expected=EU_LABEL)
    assert codes(held) == [("CHANGE_RECORD_MISSING", "CR-13")]  # not a generic "no change record"
    with_it = run("managed_services", [draft, *present, _named("CR-b", "change_record", "approved", 4,
                                                                 reference="CR-13")], expected=EU_LABEL)
    assert with_it.status == "ready"
    withdrawn = _named("CR-b", "change_record", "superseded", 5, reference="CR-13")
    assert codes(run("managed_services", [draft, *present, withdrawn], expected=EU_LABEL)) == [
        ("CHANGE_RECORD_MISSING", "CR-13")]


def test_an_artefact_billed_whose_class_the_checklist_does_not_ask_for_is_expected_all_the_same() -> None:
    draft = _billing(("deliverable", "Market study"))
    held = run("consulting", [draft, *CONSULTING[1:]])
    assert codes(held) == [("DELIVERABLE_NOT_APPROVED", "Market study")]
    study = _named("D-5", "deliverable", "in_review", 5, name="Market study.docx")
    assert codes(run("consulting", [draft, *CONSULTING[1:], study])) == [("DELIVERABLE_NOT_APPROVED", "D-5")]
    approved = _named("D-5", "deliverable", "approved", 6, name="Market study.docx")
    assert run("consulting", [draft, *CONSULTING[1:], study, approved]).status == "ready"


def test_the_bills_are_read_from_the_drafted_event_and_a_stored_fact_without_them_bills_nothing() -> None:
    record = {"invoice_number": "INV-1", "project_code": "P1", "drafted_at": int(T0.timestamp() * 1000),
              "milestone": "M2", "bills": [{"document_class": "deliverable", "reference": "Pump design"},
                                           {"document_class": "deliverable", "reference": "Pump design"}]}
    event = event_from_record("erp.invoice.drafted.v1", record)
    assert isinstance(event, InvoiceDrafted) and event.bills == (Billed("deliverable", "Pump design"),)
    del record["bills"]
    assert event_from_record("erp.invoice.drafted.v1", record).bills == ()  # type: ignore[union-attr]
    with pytest.raises(InvalidEvent, match="reference"):
        event_from_record("erp.invoice.drafted.v1", {**record, "bills": [{"document_class": "deliverable"}]})
