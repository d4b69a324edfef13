"""The document flow in any order: a signed document that arrives before what it needs (the ERP's project, the
project's workspace) waits for it, and is filed once it exists; one whose prerequisite never comes is raised to
the workflow's owner, naming what is missing."""

from __future__ import annotations

import pytest

from hub.actor import RecordingEmitter
from hub.errors import NotYet
from tests.conftest import hub_settings
from tests.support.rabbit import queue_depth, wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.test_actors_unit import (
    MATTER,
    REGISTRY,
    context,
    document_workflow,
    envelope_completed,
    signed_letter_setup,
)

SOW = "Engagements/ACME/ENG-ACME-0001/SOWs/ACME SOW 2027.pdf"
CODE = "ENG-ACME-0001"


def test_a_letter_signed_before_its_workspace_exists_waits_for_it_with_the_erp_updated_then_is_filed() -> None:
    erp, graph, docusign = signed_letter_setup()
    graph = type(graph)()  # the same tenant before provisioning: no workspace at all
    emitter = RecordingEmitter()
    actor = document_workflow(erp, graph, docusign)
    completed = context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
        "env-1", "MAT-1", "engagement_letter"), emitter, source="docusign://acme-firm", id="envelope:env-1")
    with pytest.raises(NotYet, match=f"folder {MATTER}/Engagement Letters of project MAT-1's workspace") as waiting:
        actor.handle(completed)
    assert waiting.value.prerequisite == "workspace"
    project = erp.get_project("MAT-1")  # the ERP first: billing does not wait for the document platform
    assert project.status == "active" and project.time_entry_enabled and project.billing_codes_active
    assert graph.writes == [] and docusign.downloads == [] and emitter.events == []
    writes = len(erp.writes)
    graph.add_folder(f"{MATTER}/Engagement Letters")  # provisioned meanwhile
    actor.handle(completed)  # the retry
    filed = f"{MATTER}/Engagement Letters/Engagement letter.pdf"
    assert graph.get_by_path(filed) is not None and graph.held_label(filed) == "Client-GLOBEX-Matter-25y"
    assert len(erp.writes) == writes  # the ERP actions are ensures: nothing written twice
    [activated] = emitter.events
    assert REGISTRY.decode("hub.engagement.activated.v1", activated.get_data())["document_ref"] == "env-1"


def _sign_sow(scenario: Scenario) -> str:
    envelope = scenario.sandbox.send_for_signature(CODE, "sow", "ACME SOW 2027.pdf", content=b"%PDF SOW terms",
                                                   fields={"contract_value": "520,000.00", "contract_currency": "EUR"})
    scenario.sandbox.sign_envelope(envelope)
    return envelope


@pytest.mark.integration
def test_a_sow_signed_before_its_project_is_provisioned_is_filed_once_the_workspace_exists(prefix: str) -> None:
    """The ERP's project webhooks are held back: DocuSign's completed envelope reaches the hub first. The ERP is
    updated at once, the filing waits, and the SOW is in its folder once provisioning ran; nothing dead-lettered."""
    with running_scenario(hub_settings(prefix)) as scenario:
        scenario.sandbox.hold_erp_webhooks()
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        _sign_sow(scenario)
        # The ERP actions come before the filing, in the same run: the filing found no workspace to file into.
        assert wait_until(lambda: scenario.erp_project(CODE)["billing_codes_active"], timeout=30)
        assert scenario.workspace(SOW) is None and scenario.workspace("Engagements/ACME/ENG-ACME-0001") is None
        scenario.sandbox.release_erp_webhooks()
        # Uploaded, then given its fields: wait for both.
        assert wait_until(lambda: (scenario.workspace(SOW) or {}).get("fields", {}).get("DocumentState"),
                          timeout=60)
        filed = scenario.workspace(SOW)
        assert filed is not None and filed["fields"]["DocumentState"] == "signed"
        queue = scenario.runtime.broker.get_actor("document_workflow").queue_name
        assert queue_depth(f"{queue}.XQ") == 0
        assert scenario.sandbox.graph_requests()["uploads"] == {f"workspaces/{SOW}": 1}  # once, not per attempt


@pytest.mark.integration
def test_a_sow_whose_workspace_never_comes_is_raised_to_its_owner_naming_what_is_missing(prefix: str) -> None:
    with running_scenario(hub_settings(prefix, prerequisite_wait_s=2)) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.sandbox.hold_erp_webhooks()  # never released: provisioning never hears of the project
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        _sign_sow(scenario)
        raised = scenario.raised(receive, "document_workflow.prerequisite_missing")
        queue = scenario.runtime.broker.get_actor("document_workflow").queue_name
        assert wait_until(lambda: queue_depth(f"{queue}.XQ") == 1, timeout=30)  # replayable once it exists
    assert (raised["owner"], raised["subject"]) == ("records_management", CODE)
    detail = str(raised["detail"])
    assert detail.startswith("workspace still missing after ") and "(the horizon: 2000 ms)" in detail
    assert "Engagements/ACME/ENG-ACME-0001/SOWs" in detail and "SOW terms" not in detail
    assert raised["event_type"] == "esign.envelope.completed.v1" and raised["project"]["code"] == CODE
