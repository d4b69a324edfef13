"""Change orders from both sides: a change order out for signature in DocuSign holds the invoice as a draft in the
workspace does; once signed, the signed copy is filed beside the draft, the draft is superseded as the policy says,
and the hold clears without anyone touching the workspace."""

from __future__ import annotations

from typing import Any

import pytest

import actors.document_workflow
from actors.document_workflow import DocumentPolicy, DocumentWorkflow
from connectors.platform import Platforms
from connectors.sharepoint.platform import GraphPlatform
from hub.actor import RecordingEmitter
from hub.store import MemoryLocks
from tests.conftest import hub_settings
from tests.support.fakes import FakeDocuSign, FakeErp, FakeGraph
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.test_actors_unit import POLICY, SPECS, context, envelope_completed, erp_project

PROJECT = erp_project("ENG-1", client_id="GULF", name="Gulf pipeline", engagement_type="engineering",
                      practice="Engineering", region="ME", country="AE", billing_model="fixed_fee", status="active")
FOLDER = f"{POLICY.workspace_path(PROJECT.template_values())}/Change Orders"
DRAFT = {"DocumentClass": "change_order", "DocumentState": "in_review", "ProjectCode": "ENG-1"}


def _workflow(graph: FakeGraph, supersede: str = "mark") -> DocumentWorkflow:
    rules = POLICY.section(actors.document_workflow.SECTION, DocumentPolicy).model_copy(
        update={"supersede_drafts": supersede})
    docusign = FakeDocuSign()
    docusign.add_envelope("env-7", [("1", "CO-7 Scope change.docx", b"%PDF signed change order")])
    return DocumentWorkflow(spec=SPECS["document_workflow"], policy=POLICY, rules=rules, erp=FakeErp(PROJECT),
                            platforms=Platforms([GraphPlatform(graph)]), docusign=docusign, locks=MemoryLocks())


def _signed(actor: DocumentWorkflow) -> None:
    actor.handle(context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
        "env-7", "ENG-1", "change_order", document_name="CO-7 Scope change.docx"), RecordingEmitter(),
        source="docusign://acme-firm", id="envelope:env-7"))


def _drafts(graph: FakeGraph) -> dict[str, str]:
    return {name: graph.add_file(FOLDER, name, fields=fields) for name, fields in (
        ("CO-7 Scope change.docx", DRAFT),                                    # the draft that was signed
        ("CO-8 Extra site visit.docx", DRAFT),                                # another change order
        ("CO-7 Scope change.xlsx", {**DRAFT, "DocumentClass": "deliverable"}),  # another class, the same name
    )}


def test_the_signed_copy_is_filed_beside_its_draft_and_the_draft_is_marked_superseded() -> None:
    graph = FakeGraph()
    drafts = _drafts(graph)
    actor = _workflow(graph)
    _signed(actor)
    signed = graph.held_fields(f"{FOLDER}/CO-7 Scope change.pdf")
    assert (signed["DocumentClass"], signed["DocumentState"], signed["EnvelopeId"]) == ("change_order", "signed",
                                                                                      "env-7")
    assert graph.held_fields(f"{FOLDER}/CO-7 Scope change.docx") == {
        **DRAFT, "DocumentState": "superseded", "SupersededBy": "CO-7 Scope change.pdf"}
    assert graph.held_fields(f"{FOLDER}/CO-8 Extra site visit.docx") == DRAFT
    assert graph.held_fields(f"{FOLDER}/CO-7 Scope change.xlsx")["DocumentState"] == "in_review"
    writes = len(graph.writes)
    _signed(actor)  # Connect delivers again: nothing more to supersede
    assert not [w for w in graph.writes[writes:] if w[1] == f"{FOLDER}/CO-7 Scope change.docx"]
    assert graph.get_by_path(f"{FOLDER}/CO-7 Scope change.docx").id == drafts["CO-7 Scope change.docx"]  # type: ignore[union-attr]


def test_a_policy_that_replaces_drafts_deletes_the_superseded_one() -> None:
    graph = FakeGraph()
    _drafts(graph)
    _signed(_workflow(graph, "replace"))
    assert graph.get_by_path(f"{FOLDER}/CO-7 Scope change.docx") is None
    assert ("delete_item", f"{FOLDER}/CO-7 Scope change.docx") in graph.writes
    assert graph.get_by_path(f"{FOLDER}/CO-7 Scope change.pdf") is not None
    assert graph.get_by_path(f"{FOLDER}/CO-8 Extra site visit.docx") is not None


def _held(scenario: Scenario, number: str) -> list[dict[str, Any]]:
    response = scenario.readiness(number)
    body: dict[str, Any] = response.json()
    return list(body.get("hold_reasons") or []) if body.get("status") == "held" else []


@pytest.mark.integration
def test_a_change_order_sent_signed_in_docusign_holds_the_invoice_until_signed_then_its_draft_is_superseded(
        prefix: str) -> None:
    """Consulting: the draft is in the workspace, then sent for signature in DocuSign. The invoice is held for
    both (the draft, the envelope out for signature) until the envelope completes; then the signed copy is filed,
    the draft superseded, and the invoice is ready, with no one touching SharePoint."""
    code, number = "ENG-ACME-0001", "INV-2027-001"
    workspace = "Engagements/ACME/ENG-ACME-0001"
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: scenario.workspace(workspace) is not None, timeout=60)
        sow = scenario.sandbox.send_for_signature(code, "sow", "ACME SOW 2027.pdf")
        scenario.sandbox.sign_envelope(sow)
        scenario.sandbox.put_document(workspace, "CO-1 Scope change.docx", fields={
            "DocumentClass": "change_order", "DocumentState": "in_review", "ProjectCode": code})
        scenario.sandbox.draft_invoice(code, number=number, amount_minor=1_000_000, currency="EUR", period="2027-03")
        assert wait_until(lambda: [h["code"] for h in _held(scenario, number)] == ["UNSIGNED_CHANGE_ORDER"],
                          timeout=60), _held(scenario, number)
        [draft_hold] = _held(scenario, number)  # named as people know it, with who acts next
        assert (draft_hold["name"], draft_hold["owner"]) == ("CO-1 Scope change.docx", "pmo")
        assert draft_hold["detail"] == "change_order 'CO-1 Scope change.docx' is in_review, not signed"
        envelope = scenario.sandbox.send_for_signature(code, "change_order", "CO-1 Scope change.docx")
        assert wait_until(lambda: {h["artefact"] for h in _held(scenario, number)} >= {envelope}, timeout=60), \
            _held(scenario, number)
        out = next(h for h in _held(scenario, number) if h["artefact"] == envelope)
        assert (out["code"], out["name"], out["owner"]) == ("UNSIGNED_CHANGE_ORDER", "CO-1 Scope change.docx", "pmo")
        scenario.sandbox.sign_envelope(envelope)
        assert wait_until(lambda: scenario.readiness(number).json().get("status") == "ready", timeout=60), \
            _held(scenario, number)
        draft = scenario.workspace(f"{workspace}/CO-1 Scope change.docx")
        signed = scenario.workspace(f"{workspace}/CO-1 Scope change.pdf")
        assert draft is not None and draft["fields"]["DocumentState"] == "superseded"
        assert draft["fields"]["SupersededBy"] == "CO-1 Scope change.pdf"
        assert signed is not None and signed["fields"]["DocumentState"] == "signed"
