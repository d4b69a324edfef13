"""The held invoices at a glance, as ``hub readiness list --held``, its API (``GET /v1/invoices/held``) and the
console show them."""

from __future__ import annotations

from typing import Any

from actors.invoice_readiness.store import HeldInvoice


def held_body(invoice: HeldInvoice) -> dict[str, Any]:
    """One held invoice: its codes, every reason (the artefact it waits for, by name, and its owner), since when."""
    return {"invoice_number": invoice.invoice_number, "project_code": invoice.project_code,
            "since": invoice.since.isoformat(), "codes": list(invoice.codes), "owners": list(invoice.owners),
            "hold_reasons": [{"code": r.code, "artefact": r.artefact, "name": r.name, "owner": r.owner,
                              "detail": r.detail} for r in invoice.reasons]}
