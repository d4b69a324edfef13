"""The gate knows what it expects: the ERP's draft invoice states what it bills (the milestone's deliverables, the
period's change records, the service report), and an artefact billed that was never uploaded holds the invoice,
named by its business number. On the real servers and the simulators."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import hub_settings
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario

pytestmark = pytest.mark.integration


def _holds(scenario: Scenario, number: str) -> list[tuple[str, str]]:
    body: dict[str, Any] = scenario.readiness(number).json()
    return sorted((r["code"], r["artefact"]) for r in body.get("hold_reasons") or [])


def _provisioned(scenario: Scenario, code: str) -> bool:
    return scenario.erp_project(code).get("custom_fields", {}).get("workspace_status") == "provisioned"


def test_a_change_record_and_a_deliverable_the_invoice_bills_hold_it_until_they_are_in_the_workspace(
        prefix: str) -> None:
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        project = acme_project(code="MS-ACME-0009", name="ACME cloud operations", engagement_type="managed_services",
                               practice="CloudOps", region="EU", country="DE", billing_model="subscription")
        code = str(project["code"])
        scenario.create_project(**project)
        assert wait_until(lambda: _provisioned(scenario, code), timeout=60)
        sandbox, base = scenario.sandbox, f"Engagements/ACME/{code}"
        link = {"ProjectCode": code, "InvoiceNumber": "INV-M-9"}
        sandbox.put_document(f"{base}/Service Reports", "March report.pdf",
                             fields={"DocumentClass": "service_report", "DocumentState": "approved", **link})
        sandbox.put_document(f"{base}/Customer Approvals", "March sign-off.pdf",
                             fields={"DocumentClass": "customer_approval", "DocumentState": "approved", **link})
        sandbox.put_document(f"{base}/Change Records", "CHG-1001 firewall.pdf", fields={
            "DocumentClass": "change_record", "DocumentState": "approved", "Reference": "CR-1001", **link})
        sandbox.draft_invoice(code, number="INV-M-9", amount_minor=2_500_000, currency="EUR", period="2027-03",
                              bills=[("change_record", "CR-1001"), ("change_record", "CR-1002"),
                                     ("deliverable", "Capacity plan")])
        # Every document there is approved: the holds are for what was billed and never uploaded.
        assert wait_until(lambda: _holds(scenario, "INV-M-9") == [
            ("CHANGE_RECORD_MISSING", "CR-1002"), ("DELIVERABLE_NOT_APPROVED", "Capacity plan")], timeout=60), \
            _holds(scenario, "INV-M-9")
        detail = {r["artefact"]: r for r in scenario.readiness("INV-M-9").json()["hold_reasons"]}
        assert detail["CR-1002"]["detail"] == \
            "change_record 'CR-1002', billed by invoice INV-M-9, is not in the workspace"
        assert detail["CR-1002"]["owner"] == "pmo"
        assert sandbox.finalize_invoice("INV-M-9").status_code == 409
        sandbox.put_document(f"{base}/Change Records", "CHG-1002 vpn.pdf", fields={
            "DocumentClass": "change_record", "DocumentState": "approved", "Reference": "CR-1002", "ProjectCode": code})
        sandbox.put_document(base, "Capacity plan.docx", fields={
            "DocumentClass": "deliverable", "DocumentState": "approved", "ProjectCode": code})
        assert wait_until(lambda: scenario.readiness("INV-M-9").json()["status"] == "ready", timeout=60), \
            _holds(scenario, "INV-M-9")
        assert sandbox.finalize_invoice("INV-M-9").status_code == 200
