"""The document workflow and the tenant's published retention labels: a signed document whose label the tenant
does not publish is filed without it, records management gets an exception, and the other actions go on (the
message is not dead-lettered)."""

from __future__ import annotations

import pytest

from hub.actor import RecordingEmitter
from tests.conftest import hub_settings
from tests.support.rabbit import queue_depth, wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.test_actors_unit import (
    MATTER,
    POLICY,
    REGISTRY,
    context,
    document_workflow,
    envelope_completed,
    signed_letter_setup,
)


def test_a_signed_letter_whose_label_is_not_published_is_filed_without_it_and_raised_to_records_management() -> None:
    erp, graph, docusign = signed_letter_setup()
    graph.labels = POLICY.retention.all_labels() - {"Client-GLOBEX-Matter-25y"}
    emitter = RecordingEmitter()
    actor = document_workflow(erp, graph, docusign)
    completed = context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
        "env-1", "MAT-1", "engagement_letter"), emitter, source="docusign://acme-firm", id="envelope:env-1")
    actor.handle(completed)
    filed = f"{MATTER}/Engagement Letters/Engagement letter.pdf"
    assert graph.get_by_path(filed) is not None and graph.held_label(filed) is None
    assert graph.held_fields(filed)["DocumentState"] == "signed"
    assert ("ensure_retention_label", filed, "Client-GLOBEX-Matter-25y") in graph.writes  # refused by SharePoint
    project = erp.get_project("MAT-1")
    assert project.status == "active" and project.time_entry_enabled and project.billing_codes_active
    assert [e.get_type() for e in emitter.events] == ["hub.exception.raised.v1", "hub.engagement.activated.v1"]
    raised = REGISTRY.decode("hub.exception.raised.v1", emitter.events[0].get_data())
    assert (raised["owner"], raised["kind"], raised["subject"]) == (
        "records_management", "document_workflow.retention_label_missing", "MAT-1")
    assert "'Client-GLOBEX-Matter-25y'" in raised["detail"] and "engagement_letter" in raised["detail"]
    assert "PDF" not in raised["detail"] and raised["project"]["code"] == "MAT-1"
    actor.handle(completed)  # redelivered, still unpublished: the same case, by id
    again = [e for e in emitter.events if e.get_type() == "hub.exception.raised.v1"]
    assert len(again) == 2 and len({e.get_id() for e in again}) == 1
    graph.labels = POLICY.retention.all_labels()  # published since: the next delivery applies it
    actor.handle(completed)
    assert graph.held_label(filed) == "Client-GLOBEX-Matter-25y"
    assert len([e for e in emitter.events if e.get_type() == "hub.exception.raised.v1"]) == 2


def _provisioned(scenario: Scenario, code: str) -> bool:
    return scenario.erp_project(code).get("custom_fields", {}).get("workspace_status") == "provisioned"


@pytest.mark.integration
def test_a_signed_sow_whose_label_the_tenant_does_not_publish_is_filed_without_it_and_billing_goes_on(
        prefix: str) -> None:
    code, sow = "ENG-ACME-0001", "Engagements/ACME/ENG-ACME-0001/SOWs/ACME SOW 2027.pdf"
    labels = POLICY.retention.all_labels() - {"DE-Contract-10y"}  # the label the policy gives a German SOW
    with running_scenario(hub_settings(prefix), labels=labels) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _provisioned(scenario, code), timeout=60)
        envelope = scenario.sandbox.send_for_signature(code, "sow", "ACME SOW 2027.pdf", content=b"%PDF SOW terms",
                                                       fields={"contract_value": "520,000.00",
                                                               "contract_currency": "EUR"})
        scenario.sandbox.sign_envelope(envelope)
        raised = scenario.raised(receive, "document_workflow.retention_label_missing")
        assert wait_until(lambda: scenario.erp_project(code)["billing_codes_active"], timeout=30)
        filed = scenario.workspace(sow)
        assert filed is not None and filed["fields"]["DocumentState"] == "signed"
        assert not filed.get("retentionLabel")
        assert scenario.erp_project(code)["time_entry_enabled"] is True
        queue = scenario.runtime.broker.get_actor("document_workflow").queue_name
        assert queue_depth(f"{queue}.XQ") == 0  # not dead-lettered
    assert (raised["owner"], raised["subject"]) == ("records_management", code)
    detail = str(raised["detail"])
    assert "'DE-Contract-10y'" in detail and "sow" in detail and envelope in detail and "SOW terms" not in detail
