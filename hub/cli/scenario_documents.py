"""The demo's second half: documents drive the ERP and the invoice-readiness gate.

Consulting: time entry is refused until the SOW is signed; DocuSign's completion files the signed SOW in
the workspace, writes its value and dates to the ERP and opens time entry and billing. Engineering: a
milestone invoice stays held until both deliverables are approved and carry the Middle East retention
label. Managed services: a monthly invoice is released once the service report, the customer's approval
and the change records are in its billing package. Every readiness transition is printed with its
reasons, as it arrives on ``hub.events``; the ERP's finalisation asks the hub's hard-stop check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hub.registry import SchemaRegistry
from hub.topics import Receive

Echo = Callable[[str], None]


class Transitions:
    """Readiness transitions from ``hub.events``, printed as they come, with document names for ids."""

    def __init__(self, receive: Receive, registry: SchemaRegistry, echo: Echo) -> None:
        self.receive, self.registry, self.echo = receive, registry, echo
        self.names: dict[str, str] = {}
        self.last: dict[str, tuple[str, frozenset[str]]] = {}

    def wait(self, number: str, status: str, codes: set[str] | None = None, timeout_s: float = 60.0) -> bool:
        """Print transitions until ``number`` reaches ``status`` (with exactly ``codes``); False on timeout."""
        deadline = time.monotonic() + timeout_s

        def reached() -> bool:
            last = self.last.get(number)
            return last is not None and last[0] == status and (codes is None or last[1] == codes)

        while not reached():
            remaining = deadline - time.monotonic()
            delivery = self.receive(max(remaining, 0.1)) if remaining > 0 else None
            if delivery is None:
                return False
            data = self.registry.decode(delivery.routing_key, delivery.body)
            self.last[data["invoice_number"]] = (data["status"], frozenset(r["code"] for r in data["hold_reasons"]))
            reasons = "; ".join(f"{r['code']} ({self.names.get(r['artefact'] or '', r['artefact'])})"
                                for r in data["hold_reasons"])
            self.echo(f"   readiness {data['invoice_number']}: {data['status'].upper()}"
                      + (f" - {reasons}" if reasons else ""))
        return True


def _wait(predicate: Callable[[], bool], timeout_s: float = 30.0, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def _finalize(sandbox: Any, number: str, echo: Echo) -> int:
    response = sandbox.finalize_invoice(number)
    body = response.json()
    if response.status_code == 200:
        echo(f"   ERP finalise {number}: HTTP 200, invoice {body['status']}")
    else:
        codes = ", ".join(sorted({r["code"] for r in body.get("hold_reasons", [])}))
        echo(f"   ERP finalise {number}: HTTP {response.status_code} {body.get('error')} ({codes})")
    return int(response.status_code)


def consulting(sandbox: Any, code: str, echo: Echo) -> bool:
    """Signature enables billing."""
    entry = {"date": "2027-01-05", "hours": 7.5, "billing_code": f"{code}-FEES", "person": "a.berg@example-firm.com"}
    with sandbox.erp() as erp:
        refused = erp.post(f"/projects/{code}/time-entries", json=entry)
    echo(f"6. before the SOW is signed, time entry is refused: HTTP {refused.status_code} {refused.json()['error']}")
    envelope = sandbox.send_for_signature(code, "sow", "ACME SOW 2027.pdf", fields={
        "contract_value": "520,000.00", "contract_currency": "EUR", "start_date": "2027-01-04",
        "end_date": "2027-06-30"})
    signed_at = time.monotonic()
    sandbox.sign_envelope(envelope)
    echo(f"7. the client signed the SOW in DocuSign (envelope {envelope}); Connect notified the hub (HMAC-signed)")

    def enabled() -> bool:
        with sandbox.erp() as erp:
            project = erp.get(f"/projects/{code}").json()
        return bool(project["time_entry_enabled"] and project["billing_codes_active"])

    if not _wait(enabled, interval_s=0.02):
        echo("FAILED: time entry and billing were not enabled within 30 s")
        return False
    took_ms = (time.monotonic() - signed_at) * 1000
    with sandbox.erp() as erp:
        project = erp.get(f"/projects/{code}").json()
        codes = [b["code"] for b in erp.get(f"/projects/{code}/billing-codes").json()["items"] if b["active"]]
        accepted = erp.post(f"/projects/{code}/time-entries", json=entry)

    def filed_sow() -> tuple[str, dict[str, Any]] | None:  # billing does not wait for the platform: filed later
        items = sandbox.graph_state()["drives"][sandbox.drive_id]["items"]
        return next(((path, item) for path, item in items.items() if path.endswith("/SOWs/ACME SOW 2027.pdf")), None)

    _wait(lambda: filed_sow() is not None)
    filed = filed_sow()
    value = project["value"]
    echo(f"   ERP: value {value['amount_minor'] / 100:,.2f} {value['currency']}, {project['start_date']} to "
         f"{project['end_date']}, time entry enabled, billing codes {', '.join(sorted(codes))}")
    if filed:
        echo(f"   SharePoint: {filed[0]} (label {filed[1]['retentionLabel']})")
    else:
        echo("FAILED: the signed SOW was not filed in the workspace within 30 s")
    echo(f"   billing enabled {took_ms:.0f} ms after the signature; time entry now accepted: "
         f"HTTP {accepted.status_code}")
    return accepted.status_code == 201 and filed is not None


def engineering(sandbox: Any, transitions: Transitions, echo: Echo, create_project: Callable[..., str]) -> bool:
    """A milestone invoice held until its deliverables are approved and labelled."""
    code = create_project(code="ENG-ME-0007", name="Riyadh depot design", engagement_type="engineering",
                          practice="Infrastructure", region="ME", country="SA", billing_model="milestone")
    with sandbox.erp() as erp:
        milestone = erp.post(f"/projects/{code}/milestones", json={
            "name": "M1 Design package", "amount": {"amount_minor": 9_000_000, "currency": "EUR"}}).json()
    folder = f"Engagements/ACME/{code}/Deliverables"
    docs = {}
    for name in ("Structural calculations.pdf", "Drainage plan.pdf"):
        docs[name] = sandbox.put_document(folder, name, fields={
            "DocumentClass": "deliverable", "DocumentState": "in_review", "ProjectCode": code,
            "Milestone": "M1 Design package"})
        transitions.names[docs[name]] = name
    echo(f"8. engineering project {code} (ME, SA): two deliverables in review for milestone M1; "
         "the ERP drafts the milestone invoice INV-E-1")
    sandbox.draft_invoice(code, number="INV-E-1", amount_minor=9_000_000, currency="EUR", period="2027-03",
                          milestone_id=milestone["id"])
    if not transitions.wait("INV-E-1", "held"):
        return False
    first = "Structural calculations.pdf"
    if _finalize(sandbox, "INV-E-1", echo) != 409:
        return False
    echo(f"   {first} approved (no retention label yet)")
    sandbox.set_document(docs[first], fields={"DocumentState": "approved"})
    if not transitions.wait("INV-E-1", "held", {"DELIVERABLE_NOT_APPROVED", "RETENTION_LABEL_MISSING"}):
        return False
    echo(f"   {first} labelled ME-Deliverable-10y; Drainage plan.pdf approved and labelled")
    sandbox.set_document(docs[first], label="ME-Deliverable-10y")
    sandbox.set_document(docs["Drainage plan.pdf"], fields={"DocumentState": "approved"}, label="ME-Deliverable-10y")
    if not transitions.wait("INV-E-1", "ready"):
        return False
    return _finalize(sandbox, "INV-E-1", echo) == 200


def managed_services(sandbox: Any, transitions: Transitions, echo: Echo, create_project: Callable[..., str]) -> bool:
    """A monthly invoice released by its billing package."""
    code = create_project(code="MS-ACME-0003", name="ACME cloud operations", engagement_type="managed_services",
                          practice="CloudOps", region="EU", country="DE", billing_model="subscription")
    number = "INV-M-2027-02"
    echo(f"9. managed-services contract {code}: the ERP drafts the February invoice {number}")
    sandbox.draft_invoice(code, number=number, amount_minor=2_500_000, currency="EUR", period="2027-02")
    transitions.names.update({"service_report": "service report", "customer_approval": "customer approval",
                              "change_record": "change records"})
    if not transitions.wait(number, "held"):
        return False
    base = f"Engagements/ACME/{code}"
    link = {"ProjectCode": code, "InvoiceNumber": number}
    echo("   the service report, the customer's approval and change record CHG-1001 join the billing package")
    sandbox.put_document(f"{base}/Service Reports", "February report.pdf",
                         fields={"DocumentClass": "service_report", "DocumentState": "approved", **link})
    sandbox.put_document(f"{base}/Customer Approvals", "February sign-off.pdf",
                         fields={"DocumentClass": "customer_approval", "DocumentState": "approved", **link})
    sandbox.put_document(f"{base}/Change Records", "CHG-1001.pdf",
                         fields={"DocumentClass": "change_record", "DocumentState": "approved", **link})
    if not transitions.wait(number, "ready"):
        return False
    return _finalize(sandbox, number, echo) == 200
