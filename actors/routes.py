"""The routing table: which actors receive which event types. The one place it lives."""

from __future__ import annotations

from hub.dispatch import ALL_TYPES

#: Actor names (see each actor module's ``ACTOR_NAME``) per event type; ``"*"`` is every type.
ROUTES: dict[str, tuple[str, ...]] = {
    ALL_TYPES: ("fanout",),
    "erp.client.upserted.v1": ("master_data",),
    "erp.project.created.v1": ("provisioning", "master_data"),
    "erp.project.updated.v1": ("provisioning", "master_data", "invoice_readiness"),
    "dms.workspace.provisioned.v1": ("master_data",),
    "dms.change.notified.v1": ("master_data", "document_intake"),
    "esign.envelope.completed.v1": ("document_workflow", "invoice_readiness"),
    "dms.document.state_changed.v1": ("document_workflow", "invoice_readiness"),
    "dms.document.retention_applied.v1": ("invoice_readiness",),
    "erp.invoice.drafted.v1": ("invoice_readiness",),
}
