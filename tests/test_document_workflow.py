"""Document-triggered workflow and the invoice-readiness gate end to end: DocuSign simulator -> Connect
-> ingress -> workers -> ERP and SharePoint simulators; SharePoint change notifications -> intake ->
document events -> the gate; the ERP simulator asking the hard-stop check before it finalises.
Real RabbitMQ, Redis and HTTP.

Past 400 lines on purpose: each scenario of the workflow end to end, on the one running sandbox they share.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader

from actors.invoice_readiness.facts import ProjectFacts
from actors.invoice_readiness.store import SqlReadinessStore
from hub.platforms import PlatformName
from hub.redaction import Redactions
from tests.conftest import hub_settings
from tests.support.platforms import on_each_platform
from tests.support.rabbit import queue_depth, wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.support.signals import published, settled

pytestmark = pytest.mark.integration

CODE = "ENG-ACME-0001"
WS = f"Engagements/ACME/{CODE}"


def _provisioned(scenario: Scenario, code: str) -> bool:
    return scenario.erp_project(code).get("custom_fields", {}).get("workspace_status") == "provisioned"


def _status(scenario: Scenario, number: str) -> dict[str, Any]:
    response = scenario.readiness(number)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _gate_facts(scenario: Scenario, code: str) -> ProjectFacts:
    """What the invoice-readiness gate holds of a project, read with its own store."""
    return SqlReadinessStore(scenario.runtime.db).load(code)


def _gate_documents(scenario: Scenario, code: str) -> set[str]:
    """The documents of a project whose state the gate holds."""
    return set(_gate_facts(scenario, code).base().documents)


def _codes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["code"], r["artefact"]) for r in body["hold_reasons"]]


def _box_policies(scenario: Scenario, path: str) -> list[str]:
    """The retention policies assigned to the Box folder at ``path``."""
    state = scenario.sandbox.box_state()
    folder = state["items"].get(path, {}).get("id")
    return sorted(a["retention_policy"]["policy_name"] for a in state["assignments"]
                  if a["assigned_to"]["id"] == folder)


def _box_file(scenario: Scenario, path: str) -> str:
    """The id of the Box file at ``path``."""
    return str(scenario.sandbox.box_state()["items"][path]["id"])


def _filed(scenario: Scenario, path: str, envelope: str) -> bool:
    """Whether the envelope's document is filed at ``path`` to its last step: its fields and its label."""
    filed = scenario.folder(path)
    return filed is not None and filed.fields.get("EnvelopeId") == envelope and filed.label is not None


@on_each_platform
def test_a_signed_sow_enables_time_entry_and_billing_and_releases_the_invoice(
        prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), documents=True, platform=platform) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _provisioned(scenario, CODE), timeout=60)
        sandbox = scenario.sandbox
        # An unsigned SOW in review reaches the hub and enables nothing.
        draft_id = scenario.put_document(f"{WS}/SOWs", "SOW draft.docx", fields={
            "DocumentClass": "sow", "DocumentState": "in_review", "ProjectCode": CODE})
        sandbox.draft_invoice(CODE, number="INV-C-1", amount_minor=4_000_000, currency="EUR", period="2027-01")
        assert wait_until(lambda: _codes(_status(scenario, "INV-C-1")) == [("SOW_NOT_SIGNED", "sow")], timeout=30)
        assert wait_until(lambda: draft_id in _gate_documents(scenario, CODE), timeout=30)  # seen the draft SOW...
        assert _codes(_status(scenario, "INV-C-1")) == [("SOW_NOT_SIGNED", "sow")]  # ...which changes nothing
        project = scenario.erp_project(CODE)
        assert project["time_entry_enabled"] is False and project["billing_codes_active"] is False
        refused = sandbox.finalize_invoice("INV-C-1")
        assert refused.status_code == 409 and refused.json()["error"] == "invoice_held"
        assert [r["code"] for r in refused.json()["hold_reasons"]] == ["SOW_NOT_SIGNED"]

        envelope = sandbox.send_for_signature(CODE, "sow", "ACME SOW 2027.pdf", fields={
            "contract_value": "520,000.00", "contract_currency": "EUR", "start_date": "2027-01-04",
            "end_date": "2027-06-30"})
        sandbox.sign_envelope(envelope)
        assert wait_until(lambda: scenario.erp_project(CODE)["time_entry_enabled"], timeout=30)
        assert wait_until(lambda: scenario.erp_project(CODE)["billing_codes_active"], timeout=30)
        project = scenario.erp_project(CODE)
        assert project["value"] == {"amount_minor": 52_000_000, "currency": "EUR"}
        assert (project["start_date"], project["end_date"]) == ("2027-01-04", "2027-06-30")
        # Filing is upload, then fields, then label (SharePoint; on Box a file is kept under its folder's policy):
        # wait for the last step before reading the others.
        assert wait_until(lambda: _filed(scenario, f"{WS}/SOWs/ACME SOW 2027.pdf", envelope), timeout=30)
        filed = scenario.folder(f"{WS}/SOWs/ACME SOW 2027.pdf")
        assert filed is not None and filed.label == "DE-Contract-10y"
        assert filed.fields["DocumentClass"] == "sow" and filed.fields["DocumentState"] == "signed"
        assert wait_until(lambda: _status(scenario, "INV-C-1")["status"] == "ready", timeout=30)
        final = sandbox.finalize_invoice("INV-C-1")
        assert final.status_code == 200 and final.json()["status"] == "final"


def _project(scenario: Scenario, **fields: Any) -> str:
    project = acme_project(**fields)
    scenario.create_project(**project)
    assert wait_until(lambda: _provisioned(scenario, project["code"]), timeout=60)
    return str(project["code"])


def _transitions(scenario: Scenario, receive: Any, number: str, until: str, timeout: float = 30.0
                 ) -> list[dict[str, Any]]:
    """Readiness events of ``number`` from hub.events until one has status ``until``."""
    seen: list[dict[str, Any]] = []
    while True:
        delivery = receive(timeout)
        assert delivery is not None, f"no readiness event for {number}; saw {seen}"
        data = scenario.runtime.registry.decode(delivery.routing_key, delivery.body)
        if data["invoice_number"] != number:
            continue
        seen.append(data)
        if data["status"] == until:
            return seen


@on_each_platform
def test_an_engineering_milestone_invoice_is_held_until_every_deliverable_is_approved_and_labelled(
        prefix: str, platform: PlatformName) -> None:
    """On SharePoint a document carries its own retention label, applied by hand here; on Box a file is kept under
    its folder's policies, which provisioning assigned to the Deliverables folder: approved is labelled there."""
    with running_scenario(hub_settings(prefix), documents=True, platform=platform) as scenario, \
            scenario.runtime.subscription("hub.invoice.readiness_changed.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario, code="ENG-ME-0007", name="Riyadh metro depot design", engagement_type="engineering",
                        practice="Infrastructure", region="ME", country="SA", billing_model="milestone")
        sandbox = scenario.sandbox
        with sandbox.erp() as erp:
            milestone = erp.post(f"/projects/{code}/milestones", json={
                "name": "M1 Design package", "amount": {"amount_minor": 9_000_000, "currency": "EUR"}}).json()
        folder = f"Engagements/ACME/{code}/Deliverables"
        docs = {name: scenario.put_document(folder, f"{name}.pdf", fields={
            "DocumentClass": "deliverable", "DocumentState": "in_review", "ProjectCode": code,
            "Milestone": "M1 Design package"}) for name in ("Structural calcs", "Drainage plan")}
        sandbox.draft_invoice(code, number="INV-E-1", amount_minor=9_000_000, currency="EUR", period="2027-03",
                              milestone_id=milestone["id"])
        first = _transitions(scenario, receive, "INV-E-1", "held")[-1]
        assert {(r["code"], r["artefact"]) for r in first["hold_reasons"]} <= {
            ("DELIVERABLE_NOT_APPROVED", docs["Structural calcs"]), ("DELIVERABLE_NOT_APPROVED", docs["Drainage plan"]),
            ("INVOICE_NOT_DRAFTED", "INV-E-1"),
            ("DELIVERABLE_NOT_APPROVED", "deliverable")}  # the draft may reach the gate before the documents
        assert wait_until(lambda: sorted(_codes(_status(scenario, "INV-E-1"))) == sorted(
            ("DELIVERABLE_NOT_APPROVED", d) for d in docs.values()), timeout=30)
        assert sandbox.finalize_invoice("INV-E-1").status_code == 409
        scenario.set_document(docs["Structural calcs"], fields={"DocumentState": "approved"})
        if platform == "sharepoint":  # approved, but not yet labelled: the hold names the label now
            assert wait_until(lambda: sorted(_codes(_status(scenario, "INV-E-1"))) == sorted([
                ("DELIVERABLE_NOT_APPROVED", docs["Drainage plan"]),
                ("RETENTION_LABEL_MISSING", docs["Structural calcs"])]), timeout=30)
            detail = {r["artefact"]: r["detail"] for r in _status(scenario, "INV-E-1")["hold_reasons"]}
            assert "ME-Deliverable-10y" in detail[docs["Structural calcs"]]
            sandbox.set_document(docs["Structural calcs"], label="ME-Deliverable-10y")
            sandbox.set_document(docs["Drainage plan"], label="ME-Deliverable-10y")
        else:  # the folder's policy is the file's: approved is enough
            assert wait_until(lambda: _codes(_status(scenario, "INV-E-1")) == [
                ("DELIVERABLE_NOT_APPROVED", docs["Drainage plan"])], timeout=30)
            deliverables = scenario.folder(f"{folder}/Structural calcs.pdf")
            assert deliverables is not None and deliverables.label == "ME-Deliverable-10y"
        scenario.set_document(docs["Drainage plan"], fields={"DocumentState": "approved"})
        seen = _transitions(scenario, receive, "INV-E-1", "ready")
        assert seen[-1]["hold_reasons"] == []
        assert _status(scenario, "INV-E-1")["may_finalize"] is True
        final = sandbox.finalize_invoice("INV-E-1")
        assert final.status_code == 200 and final.json()["status"] == "final"


@on_each_platform
def test_a_managed_services_invoice_needs_its_report_approval_and_change_records(
        prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), documents=True, platform=platform) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario, code="MS-ACME-0003", name="ACME cloud operations", engagement_type="managed_services",
                        practice="CloudOps", region="EU", country="DE", billing_model="subscription")
        sandbox = scenario.sandbox
        base = f"Engagements/ACME/{code}"
        sandbox.draft_invoice(code, number="INV-M-2027-02", amount_minor=2_500_000, currency="EUR", period="2027-02")
        assert wait_until(lambda: sorted(c for c, _ in _codes(_status(scenario, "INV-M-2027-02"))) == [
            "CHANGE_RECORD_MISSING", "CUSTOMER_APPROVAL_MISSING", "SERVICE_REPORT_MISSING"], timeout=30)
        link = {"ProjectCode": code, "InvoiceNumber": "INV-M-2027-02"}
        scenario.put_document(f"{base}/Service Reports", "February report.pdf",
                              fields={"DocumentClass": "service_report", "DocumentState": "approved", **link})
        change = scenario.put_document(f"{base}/Change Records", "CHG-1001.pdf",
                                       fields={"DocumentClass": "change_record", "DocumentState": "in_review", **link})
        assert wait_until(lambda: sorted(_codes(_status(scenario, "INV-M-2027-02"))) == [
            ("CHANGE_RECORD_MISSING", change), ("CUSTOMER_APPROVAL_MISSING", "customer_approval")], timeout=30)
        refused = sandbox.finalize_invoice("INV-M-2027-02")
        assert refused.status_code == 409
        assert {r["code"] for r in refused.json()["hold_reasons"]} == {"CHANGE_RECORD_MISSING",
                                                                       "CUSTOMER_APPROVAL_MISSING"}
        scenario.set_document(change, fields={"DocumentState": "approved"})
        scenario.put_document(f"{base}/Customer Approvals", "February sign-off.pdf",
                              fields={"DocumentClass": "customer_approval", "DocumentState": "approved", **link})
        assert wait_until(lambda: _status(scenario, "INV-M-2027-02")["status"] == "ready", timeout=30)
        assert sandbox.finalize_invoice("INV-M-2027-02").json()["status"] == "final"


@on_each_platform
def test_a_signed_engagement_letter_opens_the_matter_and_tells_reporting(prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), documents=True, platform=platform) as scenario, \
            scenario.runtime.subscription("hub.engagement.activated.v1") as receive:
        scenario.create_client("GLOBEX", "Globex Inc", "US")
        code = _project(scenario, code="MAT-GLOBEX-0042", client_id="GLOBEX", name="Globex v. Initech",
                        engagement_type="legal", practice="Litigation", region="NA", country="US",
                        billing_model="time_and_materials")
        assert scenario.erp_project(code)["status"] == "planned"
        envelope = scenario.sandbox.send_for_signature(code, "engagement letter", "Engagement letter.pdf")
        scenario.sandbox.sign_envelope(envelope)
        delivery = receive(30.0)
        assert delivery is not None
        # A legal matter is behind the wall: reporting, outside it, reads the event without its protected fields.
        assert delivery.headers["ce-redacted"] == "true"
        on_the_bus = scenario.runtime.policy.ethical_walls.on_the_bus
        assert on_the_bus is not None
        redacted = Redactions(scenario.runtime.registry, on_the_bus.protected_fields)
        payload = delivery.event().get_data()
        assert isinstance(payload, bytes)
        data = schemaless_reader(io.BytesIO(payload), parse_schema(redacted.schema(delivery.routing_key)[1]), None)
        assert isinstance(data, dict)
        assert data["project_code"] == code and data["rule"] == "signed-engagement-letter"
        assert data["matter_opened"] and data["time_entry_enabled"] and data["notify"] == ["reporting"]
        assert "billing_codes" not in data and "document_ref" not in data
        project = scenario.erp_project(code)
        assert project["status"] == "active" and project["time_entry_enabled"] and project["billing_codes_active"]
        with scenario.sandbox.erp() as erp:
            active = {b["code"] for b in erp.get(f"/projects/{code}/billing-codes").json()["items"] if b["active"]}
        assert active == {f"{code}-FEES", f"{code}-DISBURSEMENTS"}
        filed_path = f"Engagements/GLOBEX/{code}/Engagement Letters/Engagement letter.pdf"
        assert wait_until(lambda: _filed(scenario, filed_path, envelope), timeout=30)  # the label is the last step
        filed_copy = scenario.folder(filed_path)
        assert filed_copy is not None and filed_copy.label == "Client-GLOBEX-Matter-25y"
        # The filed copy coming back from the platform reports nothing new. It is back once the gate holds its
        # facts (the intake read it) and every journey that took a document change to the workflow settled.
        filed = filed_copy.id
        runtime = scenario.runtime

        def filed_copy_seen() -> bool:
            sent = published(runtime, "dms.document.state_changed.v1", actor="document_workflow")
            return filed in _gate_documents(scenario, code) and bool(sent) \
                and all(settled(runtime.flight, root) for root in {hop.root_id for hop in sent})

        assert wait_until(filed_copy_seen, timeout=30)
        assert len(published(runtime, "hub.engagement.activated.v1", actor="fanout")) == 1


@on_each_platform
def test_a_signed_change_order_updates_the_value_and_milestones(prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), documents=True, platform=platform) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario)
        sandbox = scenario.sandbox
        sow = sandbox.send_for_signature(code, "sow", "SOW.pdf", fields={
            "contract_value": "480000", "contract_currency": "EUR", "start_date": "2027-01-04",
            "end_date": "2027-06-30"})
        sandbox.sign_envelope(sow)
        assert wait_until(lambda: scenario.erp_project(code)["time_entry_enabled"], timeout=30)
        change = sandbox.send_for_signature(code, "change order", "Change order 1.pdf", fields={
            "contract_value": "560,000.00", "contract_currency": "EUR", "end_date": "2027-09-30",
            "milestone.1": "Phase 2 build;50000;2027-08-31", "milestone.2": "Handover;30000"})
        sandbox.sign_envelope(change)
        assert wait_until(lambda: scenario.erp_project(code)["value"]["amount_minor"] == 56_000_000, timeout=30)
        project = scenario.erp_project(code)
        assert (project["start_date"], project["end_date"]) == ("2027-01-04", "2027-09-30")

        def milestones_now() -> dict[str, Any]:
            with sandbox.erp() as erp:
                return {m["name"]: m for m in erp.get(f"/projects/{code}/milestones").json()["items"]}

        # The terms are written first, then each milestone: wait for the last one.
        assert wait_until(lambda: {"Phase 2 build", "Handover"} <= set(milestones_now()), timeout=30)
        milestones = milestones_now()
        assert milestones["Phase 2 build"]["amount"] == {"amount_minor": 5_000_000, "currency": "EUR"}
        assert milestones["Phase 2 build"]["due_date"] == "2027-08-31"
        assert milestones["Handover"]["due_date"] is None
        # A second change order, approved on the platform with its terms in the document fields.
        scenario.put_document(f"Engagements/ACME/{code}/Contracts", "Change order 2.docx", fields={
            "DocumentClass": "Change Order", "DocumentState": "approved", "ProjectCode": code,
            "ContractValue": "600,000.00", "ContractCurrency": "EUR",
            "Milestones": "Handover;35,000;2027-10-15\nPhase 3 rollout;40000;2027-11-30"})
        assert wait_until(lambda: scenario.erp_project(code)["value"]["amount_minor"] == 60_000_000, timeout=30)
        assert wait_until(lambda: "Phase 3 rollout" in milestones_now(), timeout=30)  # written after the terms
        milestones = milestones_now()
        assert milestones["Handover"]["amount"]["amount_minor"] == 3_500_000  # the later document wins
        assert milestones["Handover"]["due_date"] == "2027-10-15"
        assert milestones["Phase 3 rollout"]["due_date"] == "2027-11-30"
        assert milestones["Phase 2 build"]["amount"]["amount_minor"] == 5_000_000  # not named again: kept
        assert scenario.erp_project(code)["end_date"] == "2027-09-30"  # no dates on it: the earlier ones stand


def test_a_docusign_notification_with_a_bad_signature_is_refused_and_changes_nothing(prefix: str) -> None:
    import httpx

    from simulators.docusign import connect_message, connect_signature

    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario)
        envelope_id = scenario.sandbox.send_for_signature(code, "sow", "SOW.pdf")
        with scenario.sandbox.docusign() as docusign:
            envelope = docusign.get(f"/envelopes/{envelope_id}",
                                    params={"include": "recipients,custom_fields,documents"}).json()
        envelope.update(status="completed", completedDateTime="2027-01-04T10:00:00.000Z")
        body = json.dumps(connect_message(envelope, generated_at="2027-01-04T10:00:01.000Z")).encode()
        before = scenario.erp_project(code)
        response = httpx.post(f"{scenario.ingress_url}/v1/webhooks/docusign/docusign-sim", content=body, headers={
            "content-type": "application/json", "x-docusign-signature-1": connect_signature("not-the-key", body)})
        assert response.status_code == 401
        assert response.json()["type"] == "urn:hub:problem:unauthenticated"
        assert scenario.erp_project(code) == before
        # The gate holds nothing of it: the envelope it knows of is the one sent for signature, not completed.
        assert all(e.status == "sent" for e in _gate_facts(scenario, code).base().envelopes.values())
        assert scenario.workspace(f"{WS}/SOWs/SOW.pdf") is None
        good = httpx.post(f"{scenario.ingress_url}/v1/webhooks/docusign/docusign-sim", content=body, headers={
            "content-type": "application/json",
            "x-docusign-signature-1": connect_signature(scenario.credentials.docusign_key, body)})
        assert good.status_code == 202  # the same body, signed with the key, is taken: the signature was the fault
        # ...and taken as new, not as a re-send: the ingress never accepted (so never published) the forged one.
        accepted = good.json()["accepted"]
        assert accepted and not any(event.get("resent") for event in accepted), accepted
        assert wait_until(lambda: scenario.erp_project(code)["time_entry_enabled"], timeout=30)


@on_each_platform
def test_a_burst_of_document_changes_reaches_the_gate_complete_and_nothing_is_dead_lettered(
        prefix: str, platform: PlatformName) -> None:
    from tests.support.rabbit import queue_depth

    with running_scenario(hub_settings(prefix), documents=True, platform=platform) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario, code="MS-BURST-1", engagement_type="managed_services", practice="CloudOps",
                        billing_model="subscription")
        folder = f"Engagements/ACME/{code}/Change Records"
        ids = [scenario.put_document(folder, f"CHG-{n:04d}.pdf", fields={
            "DocumentClass": "change_record", "DocumentState": "approved", "ProjectCode": code,
            "InvoiceNumber": "INV-B-1"}) for n in range(25)]
        assert wait_until(lambda: set(ids) <= _gate_documents(scenario, code), timeout=60)
        intake = scenario.runtime.actors["document_intake"].queue_name
        assert queue_depth(f"{intake}.XQ") == 0


def test_the_subscribe_command_creates_the_graph_subscription_once_and_then_renews_it(prefix: str) -> None:
    from click.testing import CliRunner

    from hub.cli import main
    from tests.conftest import worker_env

    with running_scenario(hub_settings(prefix)) as scenario:
        sandbox = scenario.sandbox
        url = scenario.graph_webhook_url  # https, as Graph requires
        env = worker_env(prefix, HUB_GRAPH_URL=sandbox.graph_url, HUB_GRAPH_DRIVE_ID=sandbox.drive_id,
                         HUB_GRAPH_CLIENT_STATE=scenario.credentials.graph_client_state)
        first = CliRunner().invoke(main, ["documents", "subscribe", url], env=env)
        assert first.exit_code == 0, first.output
        again = CliRunner().invoke(main, ["documents", "subscribe", url], env=env)
        assert again.exit_code == 0, again.output
        assert first.output.split()[1] == again.output.split()[1]  # the same subscription, renewed
        with sandbox.graph() as graph:
            subscriptions = graph.get("/subscriptions").json()["value"]
        assert [(s["resource"], s["notificationUrl"]) for s in subscriptions] == [
            (f"drives/{sandbox.drive_id}/root", url)]
        # and it works: a classified upload reaches the gate through the ingress
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario)
        doc = sandbox.put_document(f"Engagements/ACME/{code}/SOWs", "SOW.docx", fields={
            "DocumentClass": "sow", "DocumentState": "draft", "ProjectCode": code})
        assert wait_until(lambda: doc in _gate_documents(scenario, code), timeout=30)
        missing = CliRunner().invoke(main, ["documents", "subscribe", url], env={**env, "HUB_GRAPH_CLIENT_STATE": ""})
        assert missing.exit_code != 0


@on_each_platform
def test_a_document_that_goes_back_and_forth_holds_and_releases_the_invoice_each_time(
        prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), documents=True, platform=platform) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario, code="MS-BACK-1", engagement_type="managed_services", practice="CloudOps",
                        billing_model="subscription")
        sandbox = scenario.sandbox
        base = f"Engagements/ACME/{code}"
        link = {"ProjectCode": code, "InvoiceNumber": "INV-BF-1"}
        sandbox.draft_invoice(code, number="INV-BF-1", amount_minor=100_000, currency="EUR", period="2027-02")
        for folder, cls in (("Service Reports", "service_report"), ("Customer Approvals", "customer_approval")):
            scenario.put_document(f"{base}/{folder}", f"{cls}.pdf",
                                  fields={"DocumentClass": cls, "DocumentState": "approved", **link})
        change = scenario.put_document(f"{base}/Change Records", "CHG-1.pdf",
                                       fields={"DocumentClass": "change_record", "DocumentState": "approved", **link})
        assert wait_until(lambda: _status(scenario, "INV-BF-1")["status"] == "ready", timeout=30)
        scenario.set_document(change, fields={"DocumentState": "in_review"})  # reopened...
        assert wait_until(lambda: _codes(_status(scenario, "INV-BF-1")) == [("CHANGE_RECORD_MISSING", change)],
                          timeout=30)
        scenario.set_document(change, fields={"DocumentState": "approved"})  # ...and approved again: new news
        assert wait_until(lambda: _status(scenario, "INV-BF-1")["status"] == "ready", timeout=30)
        scenario.delete_document(change)  # deleted from the billing package: withdrawn
        assert wait_until(lambda: _codes(_status(scenario, "INV-BF-1")) == [("CHANGE_RECORD_MISSING", "change_record")],
                          timeout=30)


@on_each_platform
def test_billing_does_not_wait_for_the_platform_and_the_signed_sow_is_filed_once_it_is_back(
        prefix: str, platform: PlatformName) -> None:
    from simulators.kit.faults import FaultPlan

    # The outage opens the Graph breaker (the provisioning and master-data re-runs of the ERP's updates fail
    # on it too) for its 10 s. A call it refuses is retried when it lets a trial through (the refusal's
    # retry_after, kept under max_backoff), so each open period costs the workflow one attempt, however the
    # machine's speed interleaves the failures.
    settings = hub_settings(prefix, min_backoff_ms=1000, max_backoff_ms=12_000)
    with running_scenario(settings, documents=True, platform=platform) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario)
        sandbox = scenario.sandbox
        scenario.set_platform_faults(FaultPlan(outage=True, retry_after_s=0))  # the platform goes down
        envelope = sandbox.send_for_signature(code, "sow", "SOW.pdf", fields={
            "contract_value": "480000", "contract_currency": "EUR"})
        sandbox.sign_envelope(envelope)
        assert wait_until(lambda: scenario.erp_project(code)["time_entry_enabled"], timeout=30)
        assert wait_until(lambda: scenario.erp_project(code)["billing_codes_active"], timeout=30)  # enabled after
        assert scenario.folder(f"{WS}/SOWs/SOW.pdf") is None  # not filed while the platform is down
        scenario.set_platform_faults(FaultPlan())
        assert wait_until(lambda: _filed(scenario, f"{WS}/SOWs/SOW.pdf", envelope), timeout=60)
        if platform == "sharepoint":
            assert sum(sandbox.graph_requests()["uploads"].values()) == 1  # filed once, not once per attempt
        else:  # one file in the folder, not one per attempt
            assert [p for p in sandbox.box_state()["items"] if p.startswith(f"{WS}/SOWs/")] == [f"{WS}/SOWs/SOW.pdf"]


def test_a_project_moved_to_another_jurisdiction_needs_that_jurisdictions_label(prefix: str) -> None:
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario, code="ENG-MOVE-1", engagement_type="engineering", practice="Infrastructure",
                        region="ME", country="SA", billing_model="milestone")
        sandbox = scenario.sandbox
        doc = sandbox.put_document(f"Engagements/ACME/{code}/Deliverables", "Design.pdf", label="ME-Deliverable-10y",
                                   fields={"DocumentClass": "deliverable", "DocumentState": "approved",
                                           "ProjectCode": code, "InvoiceNumber": "INV-MV-1"})
        sandbox.draft_invoice(code, number="INV-MV-1", amount_minor=100_000, currency="EUR", period="2027-05")
        assert wait_until(lambda: _status(scenario, "INV-MV-1")["status"] == "ready", timeout=30)
        scenario.update_project(code, region="APAC", country="SG")  # delivery moves to Singapore
        assert wait_until(lambda: _codes(_status(scenario, "INV-MV-1")) == [("RETENTION_LABEL_MISSING", doc)],
                          timeout=30)
        assert "APAC-Deliverable-7y" in _status(scenario, "INV-MV-1")["hold_reasons"][0]["detail"]
        sandbox.set_document(doc, label="APAC-Deliverable-7y")
        assert wait_until(lambda: _status(scenario, "INV-MV-1")["status"] == "ready", timeout=30)


def test_a_box_project_moved_to_a_jurisdiction_with_shorter_retention_keeps_its_policy_and_records_management_decides(
        prefix: str) -> None:
    """On Box a file is kept under its folder's policies, and Box never lets a new policy shorten a folder's
    retention: moving from the Middle East (10 years) to Singapore (7) leaves the Deliverables folder under the
    Middle East's policy. Provisioning does the rest and tells records management, and the invoice that needs the
    Singapore label stays held until it decides. Once it lifts the old assignment, the next run assigns the new
    policy, and the gate reads the folder's files again (Box sends no file event for it): the invoice is ready."""
    with running_scenario(hub_settings(prefix), documents=True, platform="box") as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = _project(scenario, code="ENG-MOVE-2", engagement_type="engineering", practice="Infrastructure",
                        region="ME", country="SA", billing_model="milestone")
        folder = f"Engagements/ACME/{code}/Deliverables"
        scenario.put_document(folder, "Design.pdf", fields={
            "DocumentClass": "deliverable", "DocumentState": "approved", "ProjectCode": code,
            "InvoiceNumber": "INV-MV-2"})
        scenario.sandbox.draft_invoice(code, number="INV-MV-2", amount_minor=100_000, currency="EUR",
                                       period="2027-05")
        assert wait_until(lambda: _status(scenario, "INV-MV-2")["status"] == "ready", timeout=30)
        scenario.update_project(code, region="APAC", country="SG")  # delivery moves to Singapore
        refused = scenario.raised(receive, "provisioning.retention_refused", timeout=30)
        assert refused["owner"] == "records_management" and refused["subject"] == code
        assert wait_until(lambda: _codes(_status(scenario, "INV-MV-2")) == [
            ("RETENTION_LABEL_MISSING", _box_file(scenario, f"{folder}/Design.pdf"))], timeout=30)
        assert _box_policies(scenario, folder) == ["ME-Deliverable-10y"]
        assert wait_until(lambda: _provisioned(scenario, code), timeout=30)  # not dead-lettered: provisioned
        queue = scenario.runtime.actors["provisioning"].queue_name
        assert queue_depth(f"{queue}.XQ") == 0
        # Records management lifts the Middle East's assignment in Box's admin console; the project's next update
        # provisions the folder again.
        state = scenario.sandbox.box_state()
        held = state["items"][folder]["id"]
        with scenario.sandbox.box() as box:
            for assignment in state["assignments"]:
                if assignment["assigned_to"]["id"] == held:
                    box.delete(f"/retention_policy_assignments/{assignment['id']}").raise_for_status()
        scenario.update_project(code, partner="s.tan@example-firm.com")
        assert wait_until(lambda: _box_policies(scenario, folder) == ["APAC-Deliverable-7y"], timeout=30)
        assert wait_until(lambda: _status(scenario, "INV-MV-2")["status"] == "ready", timeout=30)
