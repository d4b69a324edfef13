"""The invoice-readiness gate: an invoice is held until its required artefacts are in order."""

from actors.invoice_readiness.actor import SPEC, InvoiceReadiness
from actors.invoice_readiness.gate import ReadinessGate, Transition
from actors.invoice_readiness.rules import SECTION, ReadinessRules
from actors.invoice_readiness.store import MIGRATIONS, MemoryReadinessStore, ReadinessStore, SqlReadinessStore

__all__ = ["MIGRATIONS", "SECTION", "SPEC", "InvoiceReadiness", "MemoryReadinessStore", "ReadinessGate",
           "ReadinessRules", "ReadinessStore", "SqlReadinessStore", "Transition"]
