"""The invoice-readiness gate's actor: every drafted invoice, document state, retention label and
completed envelope re-evaluates the invoices of its project (:mod:`actors.invoice_readiness.gate`), a
project update that states another engagement type or jurisdiction re-reads it from the ERP, and a workspace
provisioned again on a platform whose files are kept under their folder's retention (Box) has its documents read
again (their labels changed with their folders', and the platform sends no file event for it)."""

from __future__ import annotations

from actors.invoice_readiness.facts import ProjectMeta
from actors.invoice_readiness.gate import LOCK_TTL_MS, ReadinessGate, lock_name
from actors.invoice_readiness.logic import EVENT_TYPES, event_from_record
from hub.actor import ActorContext, ActorSpec
from hub.store import holding

#: A project's engagement type or jurisdiction may change: its checklist and expected labels with them.
PROJECT_UPDATED = "erp.project.updated.v1"
#: Reconciliation found a project's facts out of date with its documents: rebuilt from the ERP and the workspace.
REPAIR_REQUESTED = "hub.reconciliation.repair_requested.v1"
#: A workspace's folders may be under another retention now: on Box, their files with them.
WORKSPACE_PROVISIONED = "dms.workspace.provisioned.v1"
#: Drafted invoices, document states, retention labels, completed envelopes, project updates, provisioned
#: workspaces and repairs.
SPEC = ActorSpec(name="invoice_readiness",
                 triggers=(*EVENT_TYPES, PROJECT_UPDATED, WORKSPACE_PROVISIONED, REPAIR_REQUESTED),
                 workflow="invoice_readiness", lock_ttl_ms=LOCK_TTL_MS)


class InvoiceReadiness:
    """Folds each event into its project's facts, one project at a time, and publishes the verdicts it changed."""

    def __init__(self, *, spec: ActorSpec = SPEC, gate: ReadinessGate) -> None:
        """``gate``: the gate's state; a repair reads the workspaces through its platforms."""
        self.spec = spec
        self.gate = gate

    def handle(self, context: ActorContext) -> None:
        """Fold the event (or refresh the project's meta) under the project's lease."""
        record = context.data
        if context.event.get_type() == REPAIR_REQUESTED:
            self._repair(context)
            return
        if context.event.get_type() == WORKSPACE_PROVISIONED:
            self._provisioned(context)
            return
        code = str(record["project_code"])
        with holding(self.gate.locks, lock_name(code), ttl_ms=self.spec.lock_ms,
                     busy=f"readiness of project {code} is being updated"):
            if context.event.get_type() == PROJECT_UPDATED:
                self.gate.refresh(code, ProjectMeta(engagement_type=record["engagement_type"], region=record["region"],
                                                    country=record["country"], client_id=record["client_id"]), context)
            else:
                self.gate.apply(event_from_record(context.event.get_type(), record), context)
            # Publish the verdicts this message saved: now, or on its re-run (which finds nothing changed) if
            # the worker died first. Under the lease, so a project's verdicts usually go out in their order.
            context.flush(self.gate.store.outbox)

    def _repair(self, context: ActorContext) -> None:
        """Rebuild the project's facts (under its lease, taken by the gate) and publish the verdicts that changed."""
        code = context.data.get("project_code")
        if self.spec.name not in context.data["actors"] or not code:
            return  # another actor's repair
        self.gate.rebuild_project(str(code), context)

    def _provisioned(self, context: ActorContext) -> None:
        """A workspace provisioned (again): where its files are kept under their folder's retention, its documents
        are read again, so labels that came with a folder's new policy reach the gate."""
        code = str(context.data["project_code"])
        if self.gate.platforms is not None and self.gate.platform_for(code).retention_by_folder:
            self.gate.rebuild_project(code, context)
