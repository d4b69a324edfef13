"""The document half of the policy (``documents`` rules, ``invoice_readiness`` checklists) and the pure
decisions of the document workflow: contract terms and milestones, latest document wins in any order.

Past 400 lines on purpose: the rules and their properties share their generators, which live here with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actors
from actors import load_policy
from actors.document_workflow.decisions import SignedDocument, filed_name, milestone_updates, terms_patch
from actors.document_workflow.rules import ACTION_ORDER, DocumentAction, DocumentRule, RuleMatch
from actors.invoice_readiness.logic import default_rules
from actors.invoice_readiness.rules import ReadinessRules
from connectors.erp.client import Project as ErpProject
from hub.errors import ConfigurationError
from hub.policy import DOCUMENT_STATES, ENGAGEMENT_TYPES, fill

POLICY = load_policy(actors.DEFAULT_POLICY)
DEFAULT_TEXT = actors.DEFAULT_POLICY.read_text(encoding="utf-8")
T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def altered(old: str, new: str) -> str:
    """The default policy with the only occurrence of ``old`` replaced by ``new``."""
    assert DEFAULT_TEXT.count(old) == 1, old
    return DEFAULT_TEXT.replace(old, new)


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message
    return message


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def names(rules: tuple[DocumentRule, ...]) -> list[str]:
    return [rule.name for rule in rules]


# ------------------------------------------------------------------------------------ default policy


def test_the_default_policy_states_the_default_readiness_rules() -> None:
    assert POLICY.invoice_readiness == default_rules()
    assert set(POLICY.invoice_readiness.checklists) == set(ENGAGEMENT_TYPES)


def test_an_engagement_type_without_a_checklist_gets_an_empty_one() -> None:
    checklist = ReadinessRules().checklist_for("consulting")
    assert checklist.requirements == () and checklist.must_be_signed == ("change_order",)


def test_a_signed_sow_on_a_consulting_project_matches_the_signed_sow_rule() -> None:
    rules = POLICY.documents.rules_for("sow", "signed", "consulting")
    assert names(rules) == ["signed-sow"]
    assert rules[0].actions() == ("write_contract_terms", "enable_time_entry", "activate_billing_codes",
                                  "file_document")  # the ERP first: billing does not wait for SharePoint


@pytest.mark.parametrize("state", [s for s in DOCUMENT_STATES if s != "signed"])
def test_an_unsigned_sow_enables_nothing(state: str) -> None:
    for engagement_type in ENGAGEMENT_TYPES:
        assert POLICY.documents.rules_for("sow", state, engagement_type) == ()


def test_the_sow_rule_is_not_for_legal_matters() -> None:
    assert POLICY.documents.rules_for("sow", "signed", "legal") == ()
    for engagement_type in ("consulting", "engineering", "managed_services"):
        assert names(POLICY.documents.rules_for("sow", "signed", engagement_type)) == ["signed-sow"]


def test_the_engagement_letter_rule_is_for_legal_matters_only() -> None:
    rules = POLICY.documents.rules_for("engagement_letter", "signed", "legal")
    assert names(rules) == ["signed-engagement-letter"]
    assert rules[0].actions() == ("write_contract_terms", "open_matter", "enable_time_entry",
                                  "activate_billing_codes", "file_document", "notify_reporting")
    for engagement_type in ("consulting", "engineering", "managed_services"):
        assert POLICY.documents.rules_for("engagement_letter", "signed", engagement_type) == ()
    assert POLICY.documents.rules_for("engagement_letter", "approved", "legal") == ()


@pytest.mark.parametrize("engagement_type", ENGAGEMENT_TYPES)
def test_the_change_order_rule_applies_approved_or_signed_on_every_engagement_type(engagement_type: str) -> None:
    for state in ("approved", "signed"):
        rules = POLICY.documents.rules_for("change_order", state, engagement_type)
        assert names(rules) == ["approved-change-order"]
        assert rules[0].actions() == ("write_contract_terms", "update_milestones", "file_document")
    for state in ("draft", "in_review", "rejected", "superseded"):
        assert POLICY.documents.rules_for("change_order", state, engagement_type) == ()


def test_classes_without_a_rule_match_nothing() -> None:
    for cls in ("contract", "deliverable", "service_report", "customer_approval", "change_record"):
        for engagement_type in ENGAGEMENT_TYPES:
            for state in DOCUMENT_STATES:
                assert POLICY.documents.rules_for(cls, state, engagement_type) == ()


def test_rules_for_keeps_file_order_when_several_rules_apply() -> None:
    first = DocumentRule(name="b-second-in-name", when=RuleMatch(document_class="sow"), do=("notify_reporting",))
    second = DocumentRule(name="a-first-in-name", when=RuleMatch(document_class="sow", engagement_types=frozenset(
        {"legal"})), do=("open_matter",))
    documents = POLICY.documents.model_copy(update={"rules": (first, second)})
    assert names(documents.rules_for("sow", "signed", "legal")) == ["b-second-in-name", "a-first-in-name"]
    assert names(documents.rules_for("sow", "signed", "consulting")) == ["b-second-in-name"]
    assert RuleMatch(document_class="sow").states == frozenset({"signed"})  # a rule's default state


def test_billing_codes_fill_from_the_project() -> None:
    project = ErpProject.model_validate({
        "code": "ENG-1", "client_id": "ACME", "name": "Plant", "engagement_type": "engineering",
        "practice": "Energy", "region": "ME", "country": "AE", "partner": "p@firm.example",
        "billing_model": "milestone", "status": "planned", "version": 1, "updated_at": "2027-01-01T00:00:00Z"})
    values = project.template_values()
    assert values["project_code"] == "ENG-1" and values["region"] == "ME" and values["status"] == "planned"
    assert [fill(t, values) for t in POLICY.documents.billing_codes["engineering"]] == [
        "ENG-1-MILESTONES", "ENG-1-EXPENSES"]


def test_actions_run_in_action_order_whatever_order_do_lists() -> None:
    rule = DocumentRule(name="r", when=RuleMatch(document_class="change_order"),
                        do=("notify_reporting", "update_milestones", "file_document", "open_matter"))
    assert rule.actions() == ("update_milestones", "open_matter", "file_document", "notify_reporting")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(ACTION_ORDER), min_size=1, unique=True))
def test_actions_are_the_listed_subset_in_action_order(listed: list[DocumentAction]) -> None:
    rule = DocumentRule(name="r", when=RuleMatch(document_class="sow"), do=tuple(listed))
    assert rule.actions() == tuple(sorted(listed, key=ACTION_ORDER.index))
    assert set(rule.actions()) == set(listed) and len(rule.actions()) == len(listed)


# ------------------------------------------------------------------------------- refused policy files


def test_an_unknown_action_is_refused_at_its_line(tmp_path: Path) -> None:
    text = altered("do: [file_document, write_contract_terms, update_milestones]",
                   "do: [file_document, write_contract_terms, update_milestones, send_invoice]")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'send_invoice')}, field documents.rules[2].do[3]: Input should be" in message
    assert "'notify_reporting'" in message


def test_an_action_listed_twice_is_refused(tmp_path: Path) -> None:
    text = altered("do: [file_document, write_contract_terms, update_milestones]",
                   "do: [file_document, write_contract_terms, file_document]")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'name: approved-change-order')}, field documents.rules[2]:" in message
    assert "an action is listed twice" in message


def test_a_rule_without_actions_is_refused(tmp_path: Path) -> None:
    text = altered("do: [file_document, write_contract_terms, update_milestones]", "do: []")
    assert "field documents.rules[2].do:" in error_of(tmp_path, text)


def test_two_rules_with_one_name_are_refused(tmp_path: Path) -> None:
    text = altered("- name: approved-change-order", "- name: signed-sow")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'documents:')}, field documents: Value error, rule name(s) used twice: signed-sow" \
        in message


def test_a_rule_name_must_be_a_slug(tmp_path: Path) -> None:
    text = altered("- name: approved-change-order", "- name: Approved Change Order")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'Approved Change Order')}, field documents.rules[2].name:" in message


def test_an_unknown_billing_code_placeholder_is_refused(tmp_path: Path) -> None:
    text = altered('"{project_code}-SERVICE"', '"{project}-SERVICE"')
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, '{project}-SERVICE')}, field documents.billing_codes.managed_services[0]:" \
        in message
    assert "unknown placeholder(s) project" in message


def test_a_billing_code_placeholder_with_a_format_spec_is_refused(tmp_path: Path) -> None:
    text = altered('"{project_code}-SERVICE"', '"{project_code!r:>20}-SERVICE"')
    assert "placeholders take no conversion or format spec" in error_of(tmp_path, text)


def test_a_checklist_flag_must_be_a_boolean_not_a_word(tmp_path: Path) -> None:
    text = altered("code: CHANGE_RECORD_MISSING, every_document: true",
                   "code: CHANGE_RECORD_MISSING, every_document: yes")
    message = error_of(tmp_path, text)
    assert "field invoice_readiness.checklists.managed_services.requirements[2].every_document" in message


def test_a_billing_code_for_an_unknown_engagement_type_is_refused(tmp_path: Path) -> None:
    text = altered('    legal: ["{project_code}-FEES"', '    litigation: ["{project_code}-FEES"')
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'litigation:')}, field documents.billing_codes.litigation" in message


def test_an_unknown_hold_code_is_refused(tmp_path: Path) -> None:
    text = altered("code: SERVICE_REPORT_MISSING", "code: REPORT_MISSING")
    message = error_of(tmp_path, text)
    assert (f"line {line_of(text, 'REPORT_MISSING}')}, "
            "field invoice_readiness.checklists.managed_services.requirements[0].code: Input should be") in message


def test_an_unknown_document_class_is_refused_in_a_rule(tmp_path: Path) -> None:
    text = altered("when: {document_class: change_order,", "when: {document_class: purchase_order,")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'purchase_order')}, field documents.rules[2].when.document_class:" in message


def test_an_unknown_document_class_is_refused_in_a_checklist(tmp_path: Path) -> None:
    text = altered("- {document_class: customer_approval,", "- {document_class: approval,")
    message = error_of(tmp_path, text)
    assert (f"line {line_of(text, 'document_class: approval,')}, "
            "field invoice_readiness.checklists.managed_services.requirements[1].document_class:") in message


def test_an_unknown_state_and_a_class_that_cannot_be_signed_are_refused(tmp_path: Path) -> None:
    text = altered("states: [approved, signed]}", "states: [approved, countersigned]}")
    assert "field documents.rules[2].when.states" in error_of(tmp_path, text)
    text = DEFAULT_TEXT.replace("must_be_signed: [change_order]", "must_be_signed: [deliverable]", 1)
    assert "field invoice_readiness.checklists.engineering.must_be_signed[0]" in error_of(tmp_path, text)


def test_every_problem_of_the_document_sections_is_listed(tmp_path: Path) -> None:
    text = altered("code: SERVICE_REPORT_MISSING", "code: REPORT_MISSING").replace(
        "update_milestones]", "update_milestones, send_invoice]")
    message = error_of(tmp_path, text)
    assert "documents.rules[2].do[3]" in message
    assert "invoice_readiness.checklists.managed_services.requirements[0].code" in message


# ------------------------------------------------------------------------------- contract terms


def signed(ref: str, minutes: int, *, value: int | None = None, start: date | None = None,
           end: date | None = None, milestones: tuple[Mapping[str, Any], ...] = ()) -> SignedDocument:
    money = None if value is None else {"amount_minor": value, "currency": "EUR"}
    return SignedDocument(ref, "esign", "P1", "change_order", "signed", T0 + timedelta(minutes=minutes),
                          value=money, start_date=start, end_date=end, milestones=milestones)


def ms(minutes: int) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)


class FakeErp:
    """The ERP project's terms, with ``custom_fields`` merged key by key as the ERP does."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.custom_fields: dict[str, Any] = {}
        self.milestones: dict[str, Mapping[str, Any]] = {}

    def write_terms(self, doc: SignedDocument) -> dict[str, Any]:
        patch = terms_patch(doc, self.custom_fields)
        self.custom_fields = {**self.custom_fields, **patch.get("custom_fields", {})}
        self.fields.update({k: v for k, v in patch.items() if k != "custom_fields"})
        return patch

    def update_milestones(self, doc: SignedDocument) -> list[Mapping[str, Any]]:
        updates = milestone_updates(doc, self.custom_fields)
        for milestone in updates:
            self.milestones[str(milestone["name"])] = milestone
        if updates:
            as_of = dict(self.custom_fields.get("milestones_as_of") or {})
            as_of.update({str(m["name"]): [doc.at_ms, doc.ref] for m in updates})
            self.custom_fields = {**self.custom_fields, "milestones_as_of": as_of}
        return updates


def test_a_first_document_writes_its_value_and_dates_with_their_time() -> None:
    doc = signed("ENV-1", 0, value=52_000_000, start=date(2027, 1, 4), end=date(2027, 6, 30))
    patch = terms_patch(doc, {"workspace_url": "https://x"})
    assert patch == {
        "value": {"amount_minor": 52_000_000, "currency": "EUR"}, "start_date": "2027-01-04",
        "end_date": "2027-06-30",
        "custom_fields": {"terms_as_of": {name: [ms(0), "ENV-1"] for name in ("value", "start_date", "end_date")}},
    }
    assert doc.at_ms == ms(0)


def test_a_document_stating_nothing_patches_nothing() -> None:
    assert terms_patch(signed("ENV-1", 0), {}) == {}


def test_an_older_document_does_not_overwrite_a_newer_one() -> None:
    erp = FakeErp()
    erp.write_terms(signed("ENV-NEW", 10, value=600, end=date(2027, 12, 31)))
    assert erp.write_terms(signed("ENV-OLD", 5, value=500, end=date(2027, 6, 30))) == {}
    assert erp.fields == {"value": {"amount_minor": 600, "currency": "EUR"}, "end_date": "2027-12-31"}


def test_an_older_document_still_writes_a_field_only_it_states() -> None:
    erp = FakeErp()
    erp.write_terms(signed("ENV-NEW", 10, value=600))
    patch = erp.write_terms(signed("ENV-OLD", 5, value=500, start=date(2027, 2, 1)))
    assert patch == {"start_date": "2027-02-01", "custom_fields": {"terms_as_of": {
        "value": [ms(10), "ENV-NEW"], "start_date": [ms(5), "ENV-OLD"]}}}
    assert erp.fields["value"] == {"amount_minor": 600, "currency": "EUR"}


def test_a_replayed_document_changes_nothing() -> None:
    erp = FakeErp()
    doc = signed("ENV-1", 0, value=500, start=date(2027, 1, 4))
    assert erp.write_terms(doc)
    assert erp.write_terms(doc) == {}


def test_at_the_same_time_the_greater_ref_wins() -> None:
    erp = FakeErp()
    erp.write_terms(signed("ENV-B", 0, value=200))
    assert erp.write_terms(signed("ENV-A", 0, value=100)) == {}
    assert erp.write_terms(signed("ENV-C", 0, value=300))["value"] == {"amount_minor": 300, "currency": "EUR"}
    assert erp.custom_fields["terms_as_of"]["value"] == [ms(0), "ENV-C"]


def test_a_document_stating_only_its_value_leaves_the_dates_as_of_alone() -> None:
    erp = FakeErp()
    erp.write_terms(signed("ENV-1", 0, value=100, start=date(2027, 1, 4), end=date(2027, 6, 30)))
    patch = erp.write_terms(signed("ENV-2", 5, value=150))
    assert set(patch) == {"value", "custom_fields"}
    assert patch["custom_fields"]["terms_as_of"] == {
        "value": [ms(5), "ENV-2"], "start_date": [ms(0), "ENV-1"], "end_date": [ms(0), "ENV-1"]}
    assert erp.fields == {"value": {"amount_minor": 150, "currency": "EUR"}, "start_date": "2027-01-04",
                          "end_date": "2027-06-30"}


def test_terms_patch_does_not_change_the_custom_fields_it_reads() -> None:
    custom = {"terms_as_of": {"value": [ms(0), "ENV-1"]}}
    terms_patch(signed("ENV-2", 5, value=150, start=date(2027, 1, 4)), custom)
    assert custom == {"terms_as_of": {"value": [ms(0), "ENV-1"]}}


def test_a_stored_time_that_is_not_a_pair_is_overwritten() -> None:
    patch = terms_patch(signed("ENV-1", 0, value=1), {"terms_as_of": {"value": "garbage"}})
    assert patch["custom_fields"]["terms_as_of"]["value"] == [ms(0), "ENV-1"]


def test_the_latest_document_per_milestone_wins() -> None:
    def milestone(name: str, amount: int) -> dict[str, Any]:
        return {"name": name, "amount": {"amount_minor": amount, "currency": "EUR"}, "due_date": None}

    erp = FakeErp()
    new = signed("CO-2", 10, milestones=(milestone("Phase 2", 2_000), milestone("Phase 3", 3_000)))
    old = signed("CO-1", 5, milestones=(milestone("Phase 1", 1_000), milestone("Phase 2", 1_500)))
    assert [m["name"] for m in erp.update_milestones(new)] == ["Phase 2", "Phase 3"]
    assert [m["name"] for m in erp.update_milestones(old)] == ["Phase 1"]
    assert erp.update_milestones(new) == []
    assert {name: m["amount"]["amount_minor"] for name, m in erp.milestones.items()} == {
        "Phase 1": 1_000, "Phase 2": 2_000, "Phase 3": 3_000}
    assert erp.custom_fields["milestones_as_of"] == {
        "Phase 1": [ms(5), "CO-1"], "Phase 2": [ms(10), "CO-2"], "Phase 3": [ms(10), "CO-2"]}


def test_milestone_updates_without_stored_times_takes_every_milestone() -> None:
    doc = signed("CO-1", 0, milestones=({"name": "A", "amount": {"amount_minor": 1, "currency": "EUR"}},))
    assert milestone_updates(doc, {}) == list(doc.milestones)


def test_a_trigger_is_read_from_either_event() -> None:
    completed = {"envelope_id": "ENV-1", "project_code": "P1", "document_class": "sow", "completed_at": T0,
                 "document_name": "SOW.pdf", "value": {"amount_minor": 1, "currency": "EUR"},
                 "start_date": date(2027, 1, 4), "end_date": None, "milestones": []}
    doc = SignedDocument.from_event("esign.envelope.completed.v1", completed)
    assert (doc.ref, doc.origin, doc.state, doc.name, doc.start_date, doc.milestones) == (
        "ENV-1", "esign", "signed", "SOW.pdf", date(2027, 1, 4), ())
    changed = {"document_id": "D-1", "project_code": "P1", "document_class": "change_order", "state": "approved",
               "changed_at": T0, "name": "CO.docx", "value": None,
               "milestones": [{"name": "A", "amount": {"amount_minor": 1, "currency": "EUR"}, "due_date": None}]}
    doc = SignedDocument.from_event("dms.document.state_changed.v1", changed)
    assert (doc.ref, doc.origin, doc.state, doc.start_date, len(doc.milestones)) == ("D-1", "dms", "approved", None, 1)


MILESTONE_NAMES = ("Phase 1", "Phase 2", "Phase 3")


@st.composite
def documents(draw: st.DrawFn) -> list[SignedDocument]:
    count = draw(st.integers(min_value=1, max_value=6))
    docs = []
    for n in range(count):
        minutes = draw(st.integers(min_value=0, max_value=3))  # few distinct times: ties happen
        value = draw(st.none() | st.integers(min_value=0, max_value=10**9))
        start = draw(st.none() | st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)))
        end = draw(st.none() | st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)))
        named = draw(st.lists(st.sampled_from(MILESTONE_NAMES), unique=True))
        milestones = tuple({"name": name, "amount": {"amount_minor": draw(st.integers(0, 10**6)), "currency": "EUR"},
                            "due_date": None} for name in named)
        docs.append(signed(f"DOC-{n}", minutes, value=value, start=start, end=end, milestones=milestones))
    return docs


def run_all(docs: list[SignedDocument]) -> FakeErp:
    erp = FakeErp()
    for doc in docs:
        erp.write_terms(doc)
        erp.update_milestones(doc)
    return erp


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_order_of_documents_ends_in_the_ordered_runs_terms_and_milestones(data: st.DataObject) -> None:
    docs = data.draw(documents())
    shuffled = data.draw(st.permutations(docs))
    replays = data.draw(st.lists(st.sampled_from(docs), max_size=3))
    ordered = run_all(sorted(docs, key=lambda d: (d.at_ms, d.ref)))
    again = run_all([*shuffled, *replays])
    assert again.fields == ordered.fields
    assert again.milestones == ordered.milestones
    assert again.custom_fields == ordered.custom_fields
    for doc in docs:  # once every document is in, replaying any of them changes nothing
        assert terms_patch(doc, again.custom_fields) == {}
        assert milestone_updates(doc, again.custom_fields) == []
    # and the winner of each field is the latest document stating it
    for name in ("value", "start_date", "end_date"):
        stating = [d for d in docs if getattr(d, name) is not None]
        assert (name in ordered.fields) == bool(stating)
        if stating:
            latest = max(stating, key=lambda d: (d.at_ms, d.ref))
            assert ordered.custom_fields["terms_as_of"][name] == [latest.at_ms, latest.ref]
    for milestone in MILESTONE_NAMES:
        stating = [d for d in docs if any(m["name"] == milestone for m in d.milestones)]
        if stating:
            latest = max(stating, key=lambda d: (d.at_ms, d.ref))
            assert ordered.milestones[milestone] == next(m for m in latest.milestones if m["name"] == milestone)
        else:
            assert milestone not in ordered.milestones


# ------------------------------------------------------------------------------------- file names


@pytest.mark.parametrize(("name", "expected"), [
    ("SOW ACME.pdf", "SOW ACME.pdf"),
    ("SOW ACME", "SOW ACME.pdf"),
    ("  SOW ACME  ", "SOW ACME.pdf"),
    ("Contracts/2027/SOW", "Contracts-2027-SOW.pdf"),
    ("a\\b.docx", "a-b.pdf"),  # the signed copy of a Word draft is a PDF
    ("CO-7 Scope change.DOCX", "CO-7 Scope change.pdf"),
    (None, "signed-ENV-1.pdf"),
    ("", "signed-ENV-1.pdf"),
    ("   ", "signed-ENV-1.pdf"),
    ("Contract: final", "Contract- final.pdf"),  # SharePoint refuses ':' in a name
    ("Contract.", "Contract.pdf"),
    ("..", "signed-ENV-1.pdf"),
    ("Contract v1.2 draft", "Contract v1.2 draft.pdf"),
    ("Contract v1.2", "Contract v1.2.pdf"),  # '.2' is a version, not an extension
])
def test_filed_name(name: str | None, expected: str) -> None:
    assert filed_name(name, "ENV-1") == expected
