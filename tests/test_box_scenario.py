"""The hub on Box end to end: ERP simulator -> signed webhook -> ingress -> workers -> Box simulator, with the
link written back to the ERP. The example policy keeps Corporate legal matters on Box and everything else on
SharePoint: one hub, both platforms. Real RabbitMQ, Redis, PostgreSQL and HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors.invoice_readiness.logic import DocumentStateChanged, RetentionApplied
from actors.master_data import SqlMasterDataStore
from connectors.sharepoint.client import GraphClient
from hub.cli.compose import readiness_gate
from hub.cli.platforms import document_platforms
from hub.crosswalk import Identity, SqlCrosswalk
from tests.conftest import hub_settings
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.support.signals import erp_events_settled

pytestmark = pytest.mark.integration
MATTER = "MAT-GLOBEX-0077"
WORKSPACE = f"Engagements/GLOBEX/{MATTER}"


def corporate_matter(**fields: Any) -> dict[str, Any]:
    """A Corporate legal matter: the example policy puts it on Box."""
    return acme_project(code=MATTER, client_id="GLOBEX", name="Globex acquisition of Initech",
                        engagement_type="legal", practice="Corporate", region="NA", country="US",
                        billing_model="retainer", **fields)


def _provisioned(scenario: Scenario, code: str) -> bool:
    custom = scenario.erp_project(code).get("custom_fields", {})
    return bool(custom.get("workspace_status") == "provisioned")


def _collaborations(scenario: Scenario) -> dict[str, str]:
    folder = scenario.box_folder(WORKSPACE)
    return dict(folder["collaborations"]) if folder else {}


def test_a_corporate_matter_is_provisioned_on_box_beside_an_engagement_on_sharepoint_and_its_client_name_follows(
        prefix: str) -> None:
    with running_scenario(hub_settings(prefix)) as scenario:
        scenario.create_client("GLOBEX", "Globex", "US")
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**corporate_matter())
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _provisioned(scenario, MATTER) and _provisioned(scenario, "ENG-ACME-0001"),
                          timeout=60)
        folder = scenario.box_folder(WORKSPACE)
        assert folder is not None
        for name in ("Engagement Letters", "Pleadings", "Pleadings/Drafts", "Pleadings/Filed", "Correspondence",
                     "Billing"):
            assert scenario.box_folder(f"{WORKSPACE}/{name}") is not None
        assert folder["collaborations"] == {"Corporate-NA": "editor", "Finance-NA": "viewer",
                                            "Knowledge-NA": "viewer", "Records-NA": "viewer"}
        assert folder["retention"] == ["Client-GLOBEX-Matter-25y"]
        metadata = folder["metadata"]
        assert (metadata["ProjectCode"], metadata["ClientId"], metadata["Practice"], metadata["SearchKey"]) == (
            MATTER, "GLOBEX", "Corporate", f"GLOBEX/{MATTER}")
        url = f"https://app.box.com/folder/{folder['id']}"
        assert scenario.erp_project(MATTER)["custom_fields"]["workspace_url"] == url
        assert scenario.workspace(WORKSPACE) is None  # not on SharePoint
        assert scenario.box_folder("Engagements/ACME/ENG-ACME-0001") is None  # the engagement is on SharePoint
        assert scenario.workspace("Engagements/ACME/ENG-ACME-0001") is not None
        assert wait_until(lambda: (scenario.box_folder(WORKSPACE) or {}).get("metadata", {}).get("ClientName")
                          == "Globex", timeout=60)
        with scenario.sandbox.erp() as erp:
            erp.patch("/clients/GLOBEX", json={"name": "Globex Holdings"}).raise_for_status()
        assert wait_until(lambda: (scenario.box_folder(WORKSPACE) or {}).get("metadata", {}).get("ClientName")
                          == "Globex Holdings", timeout=60)
    crosswalk = SqlCrosswalk(scenario.runtime.db)
    project = crosswalk.resolve("project", "erp", MATTER)
    assert project is not None
    assert crosswalk.all_identities(project) == [Identity("box", folder["id"]), Identity("erp", MATTER)]


def test_a_box_matter_never_has_a_walled_group_as_collaborator_even_when_the_wall_comes_later(prefix: str) -> None:
    with running_scenario(hub_settings(prefix)) as scenario:
        scenario.create_client("GLOBEX", "Globex", "US")
        scenario.create_project(**corporate_matter(conflicted_groups=["Litigation-NA"]))
        assert wait_until(lambda: _provisioned(scenario, MATTER), timeout=60)
        held = _collaborations(scenario)
        assert "Corporate-NA" in held and "Litigation-NA" not in held
        # The ERP later records a conflict with precedents: Knowledge-NA must stop collaborating.
        scenario.update_project(MATTER, conflicted_groups=["Litigation-NA", "Knowledge-NA"])
        assert wait_until(lambda: "Knowledge-NA" not in _collaborations(scenario), timeout=60)
        # Once every event the ERP sent about the matter went through every actor, nothing granted it back.
        assert wait_until(lambda: erp_events_settled(scenario, MATTER), timeout=60)
        assert set(_collaborations(scenario)) == {"Corporate-NA", "Finance-NA", "Records-NA"}


def _status(scenario: Scenario, number: str) -> dict[str, Any]:
    response = scenario.readiness(number)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _codes(scenario: Scenario, number: str) -> list[tuple[str, str]]:
    return [(r["code"], r["artefact"]) for r in _status(scenario, number)["hold_reasons"]]


def test_an_engagement_letter_signed_in_box_reaches_the_hub_opens_the_matter_and_releases_its_invoice(
        prefix: str) -> None:
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        scenario.create_client("GLOBEX", "Globex", "US")
        scenario.create_project(**corporate_matter())
        assert wait_until(lambda: _provisioned(scenario, MATTER), timeout=60)
        sandbox = scenario.sandbox
        sandbox.draft_invoice(MATTER, number="INV-L-1", amount_minor=1_500_000, currency="USD", period="2027-01")
        assert wait_until(lambda: _codes(scenario, "INV-L-1") == [
            ("ENGAGEMENT_LETTER_NOT_SIGNED", "engagement_letter")], timeout=30)
        # A draft letter in Box's Engagement Letters folder, with the document columns as the template's fields.
        letter = sandbox.box_put_document(f"{WORKSPACE}/Engagement Letters", "Engagement letter.pdf", fields={
            "DocumentClass": "engagement_letter", "DocumentState": "in_review", "ProjectCode": MATTER})
        refused = sandbox.finalize_invoice("INV-L-1")
        assert refused.status_code == 409 and refused.json()["error"] == "invoice_held"
        assert scenario.erp_project(MATTER)["status"] == "planned"
        sandbox.box_set_document(letter, fields={"DocumentState": "signed"})  # Box notifies the hub (webhook V2)
        assert wait_until(lambda: _status(scenario, "INV-L-1")["status"] == "ready", timeout=30)
        # The gate's rebuild reads the matter's documents from Box: the facts it holds are the ones Box states.
        assert scenario.connections is not None
        graph = GraphClient.from_settings(scenario.connections.graph)
        platforms, closers = document_platforms(scenario.runtime.policy, scenario.connections, graph=graph)
        gate = readiness_gate(scenario.runtime, scenario.connections, platforms=platforms)
        try:
            derived = gate.derive(MATTER)
            stale = list(gate.stale())
        finally:
            for close in (gate.erp.close, graph.close, *closers):
                close()
        assert [(e.document_id, e.state) for e in derived if isinstance(e, DocumentStateChanged)] == [
            (letter, "signed")]
        assert [(e.document_id, e.retention_label) for e in derived if isinstance(e, RetentionApplied)] == [
            (letter, "Client-GLOBEX-Matter-25y")]
        assert stale == []
        assert sandbox.finalize_invoice("INV-L-1").json()["status"] == "final"
        assert wait_until(lambda: scenario.erp_project(MATTER)["billing_codes_active"], timeout=30)
        project = scenario.erp_project(MATTER)
        assert project["status"] == "active" and project["time_entry_enabled"]
        hooks = sandbox.box_state()["webhooks"]
        assert [h["address"].rsplit("/", 2)[-2:] for h in hooks] == [["box", "box-sim"]]


def test_an_engagement_letter_signed_in_docusign_is_filed_in_the_box_matter_and_its_draft_superseded(
        prefix: str) -> None:
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        scenario.create_client("GLOBEX", "Globex", "US")
        scenario.create_project(**corporate_matter())
        assert wait_until(lambda: _provisioned(scenario, MATTER), timeout=60)
        sandbox = scenario.sandbox
        folder = f"{WORKSPACE}/Engagement Letters"
        draft = sandbox.box_put_document(folder, "Engagement letter.docx", fields={
            "DocumentClass": "engagement_letter", "DocumentState": "in_review", "ProjectCode": MATTER})
        envelope = sandbox.send_for_signature(MATTER, "engagement_letter", "Engagement letter.pdf")
        sandbox.sign_envelope(envelope)
        assert wait_until(lambda: scenario.erp_project(MATTER)["billing_codes_active"], timeout=30)
        assert scenario.erp_project(MATTER)["status"] == "active"

        def filed() -> dict[str, Any] | None:
            state = sandbox.box_state()
            item = state["items"].get(f"{folder}/Engagement letter.pdf")
            return next((m for m in state["metadata"] if item and m["item"] == item["id"]), None)

        assert wait_until(lambda: (filed() or {}).get("EnvelopeId") == envelope, timeout=30)
        metadata = filed()
        assert metadata is not None and (metadata["DocumentClass"], metadata["DocumentState"]) == (
            "engagement_letter", "signed")

        def drafts() -> list[tuple[Any, Any]]:  # the draft is marked once the signed copy is filed
            return [(m.get("DocumentState"), m.get("SupersededBy")) for m in sandbox.box_state()["metadata"]
                    if m["item"] == draft]

        assert wait_until(lambda: drafts() == [("superseded", "Engagement letter.pdf")], timeout=30), drafts()
        assert scenario.workspace(f"{folder}/Engagement letter.pdf") is None  # nothing on SharePoint


def test_a_box_workspace_edited_by_hand_is_put_back_and_a_region_outside_the_taxonomy_raised(prefix: str) -> None:
    with running_scenario(hub_settings(prefix), documents=True) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.create_client("GLOBEX", "Globex", "US")
        scenario.create_project(**corporate_matter())
        assert wait_until(lambda: _provisioned(scenario, MATTER), timeout=60)

        def client_name() -> Any:
            return ((scenario.box_folder(WORKSPACE) or {}).get("metadata") or {}).get("ClientName")

        assert wait_until(lambda: client_name() == "Globex", timeout=60)
        folder = scenario.box_folder(WORKSPACE)
        assert folder is not None
        # Someone edits the workspace's metadata in Box: the client's name (the ERP's) and a region outside the
        # taxonomy. Box's webhook tells the hub; master data reads Box's event stream.
        with scenario.sandbox.box() as box:
            box.put(f"/folders/{folder['id']}/metadata/enterprise/hubWorkspace", headers={
                "content-type": "application/json-patch+json"}, content=json.dumps([
                    {"op": "replace", "path": "/ClientName", "value": "Globex (typo)"},
                    {"op": "replace", "path": "/Region", "value": "Amerika"}]).encode()).raise_for_status()
        raised = scenario.raised(receive, "master_data.taxonomy", timeout=30)
        assert raised["owner"] == "records_management" and "Amerika" in raised["detail"]
        assert wait_until(lambda: client_name() == "Globex", timeout=30)
    assert SqlMasterDataStore(scenario.runtime.db).ignored("box") >= 1
