"""The users' side of the convergence scenarios (:mod:`tests.support.convergence`): what people do in the ERP,
DocuSign and SharePoint, with every webhook held, each step's webhooks captured as it ends.

The files people put in SharePoint go into folders they make themselves: the hub has provisioned nothing yet,
so provisioning later finds those folders there and makes the rest.
"""

from __future__ import annotations

from tests.support.convergence import Build, Captured
from tests.support.scenario import Scenario, acme_project


def consulting(scenario: Scenario) -> Captured:
    """Consulting: the engagement, its SOW and a change order signed in DocuSign, the change order's draft in the
    workspace (superseded by the signed copy), and an invoice."""
    sandbox, captured, code = scenario.sandbox, Captured(invoices=("INV-C-1",)), "ENG-ACME-0001"
    scenario.create_client("ACME", "ACME Corp", "DE")
    scenario.create_project(**acme_project())
    captured.take(scenario)
    workspace = f"Engagements/ACME/{code}"
    sandbox.make_folders(workspace)
    sandbox.put_document(workspace, "CO-1 Scope change.docx", fields={
        "DocumentClass": "change_order", "DocumentState": "in_review", "ProjectCode": code})
    captured.take(scenario)
    sow = sandbox.send_for_signature(code, "sow", "ACME SOW 2027.pdf", fields={
        "contract_value": "520,000.00", "contract_currency": "EUR", "start_date": "2027-01-04",
        "end_date": "2027-06-30"})
    sandbox.sign_envelope(sow)
    captured.names[sow] = "<envelope SOW>"
    captured.take(scenario)
    change = sandbox.send_for_signature(code, "change_order", "CO-1 Scope change.docx", fields={
        "contract_value": "560,000.00", "contract_currency": "EUR", "end_date": "2027-09-30",
        "milestone.1": "Phase 2 build;50000;2027-08-31", "milestone.2": "Handover;30000"})
    sandbox.sign_envelope(change)
    captured.names[change] = "<envelope CO-1>"
    captured.take(scenario)
    sandbox.draft_invoice(code, number="INV-C-1", amount_minor=4_000_000, currency="EUR", period="2027-01")
    captured.take(scenario)
    return captured


def engineering(scenario: Scenario) -> Captured:
    """Engineering: a Middle East project's milestone invoice and the two deliverables it bills, reviewed, then
    approved and labelled with the jurisdiction's label."""
    sandbox, captured, code = scenario.sandbox, Captured(invoices=("INV-E-1",)), "ENG-ME-0007"
    scenario.create_client("ACME", "ACME Corp", "DE")
    scenario.create_project(**acme_project(code=code, name="Riyadh depot design", engagement_type="engineering",
                                           practice="Infrastructure", region="ME", country="SA",
                                           billing_model="milestone"))
    with sandbox.erp() as erp:
        milestone = erp.post(f"/projects/{code}/milestones", json={
            "name": "M1 Design package", "amount": {"amount_minor": 9_000_000, "currency": "EUR"}}).json()
    captured.take(scenario)
    folder = f"Engagements/ACME/{code}/Deliverables"
    sandbox.make_folders(folder)
    docs = [sandbox.put_document(folder, name, fields={
        "DocumentClass": "deliverable", "DocumentState": "in_review", "ProjectCode": code,
        "Milestone": "M1 Design package"}) for name in ("Structural calculations.pdf", "Drainage plan.pdf")]
    captured.take(scenario)
    sandbox.draft_invoice(code, number="INV-E-1", amount_minor=9_000_000, currency="EUR", period="2027-03",
                          milestone_id=milestone["id"])
    captured.take(scenario)
    for doc in docs:
        sandbox.set_document(doc, fields={"DocumentState": "approved"}, label="ME-Deliverable-10y")
    captured.take(scenario)
    return captured


def managed_services(scenario: Scenario) -> Captured:
    """Managed services: a monthly invoice and its billing package (the service report, the customer's approval
    and a change record the invoice bills)."""
    sandbox, captured, code = scenario.sandbox, Captured(invoices=("INV-M-2027-02",)), "MS-ACME-0003"
    number = "INV-M-2027-02"
    scenario.create_client("ACME", "ACME Corp", "DE")
    scenario.create_project(**acme_project(code=code, name="ACME cloud operations", engagement_type="managed_services",
                                           practice="CloudOps", region="EU", country="DE",
                                           billing_model="subscription"))
    sandbox.draft_invoice(code, number=number, amount_minor=2_500_000, currency="EUR", period="2027-02",
                          bills=[("change_record", "CR-1001")])
    captured.take(scenario)
    base = f"Engagements/ACME/{code}"
    link = {"ProjectCode": code, "InvoiceNumber": number, "DocumentState": "approved"}
    for folder, name, fields in (
            ("Service Reports", "February report.pdf", {"DocumentClass": "service_report"}),
            ("Customer Approvals", "February sign-off.pdf", {"DocumentClass": "customer_approval"}),
            ("Change Records", "CHG-1001.pdf", {"DocumentClass": "change_record", "Reference": "CR-1001"})):
        sandbox.make_folders(f"{base}/{folder}")
        sandbox.put_document(f"{base}/{folder}", name, fields={**fields, **link})
        captured.take(scenario)
    return captured


def legal(scenario: Scenario) -> Captured:
    """Legal: a matter with an ethical wall that a later update extends to the practice's own group, and its
    engagement letter signed in DocuSign."""
    sandbox, captured, code = scenario.sandbox, Captured(), "MAT-GLOBEX-0042"
    scenario.create_client("GLOBEX", "Globex Inc", "US")
    scenario.create_project(**acme_project(code=code, client_id="GLOBEX", name="Globex v. Initech",
                                           engagement_type="legal", practice="Litigation", region="NA", country="US",
                                           billing_model="time_and_materials", conflicted_groups=["Corporate-NA"]))
    captured.take(scenario)
    letter = sandbox.send_for_signature(code, "engagement letter", "Engagement letter.pdf")
    sandbox.sign_envelope(letter)
    captured.names[letter] = "<envelope engagement letter>"
    captured.take(scenario)
    scenario.update_project(code, conflicted_groups=["Corporate-NA", "Litigation-NA"])
    captured.take(scenario)
    return captured


SCENARIOS: dict[str, Build] = {"consulting": consulting, "engineering": engineering,
                               "managed_services": managed_services, "legal": legal}


