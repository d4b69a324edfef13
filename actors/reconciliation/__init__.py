"""Batch reconciliation: the systems of record compared, every difference classified with a stable code, the safe
ones repaired through the actors, the rest routed to their owners, and each run's report kept."""

from pathlib import Path

from actors.reconciliation.classes import BY_CODE, CLASSES, DriftClass, drift_class
from actors.reconciliation.contract import COMPLETED, REPAIR_REQUESTED, SCOPES, SPEC, ReconciliationBusy
from actors.reconciliation.run import Reconciler
from actors.reconciliation.store import ReconciliationStore, Run, SqlReconciliationStore

#: The migrations of its tables (Alembic branch ``reconciliation``).
MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = ["BY_CODE", "CLASSES", "COMPLETED", "MIGRATIONS", "REPAIR_REQUESTED", "SCOPES", "SPEC", "DriftClass",
           "Reconciler", "ReconciliationBusy", "ReconciliationStore", "Run", "SqlReconciliationStore", "drift_class"]
