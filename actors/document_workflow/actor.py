"""Document-triggered workflow: a contract document reaching a state updates the ERP as the policy's
``documents`` rules say (contract terms, milestones, matter opening, time entry, billing codes, filing
the signed document, reporting). The ERP comes first, so billing does not wait for the document platform.

Triggers are a completed e-signature envelope (the document is signed) and a document platform state
change. Each action is an "ensure" against the ERP's current record, under a lease per project, so
duplicates and replays change nothing. Contract terms and milestones are order-independent: the ERP
project keeps, per field and per milestone, the time of the document that set it
(``custom_fields.terms_as_of`` and ``custom_fields.milestones_as_of``), and an older document never
overwrites a newer one (:mod:`actors.document_workflow.decisions`). A document in draft or review
matches no rule: an unsigned SOW enables nothing.

Sources deliver in any order: an envelope may complete before the ERP knows its project, or before the project's
workspace is provisioned. Both are a wait (:class:`~hub.errors.NotYet`), retried with backoff up to the hub's
horizon and then raised to the workflow's owner, not a failure: the ERP actions run again as the ensures they are,
and the signed document is filed once its folder exists. A document the envelope no longer has, or a drive that
refuses the upload, is a failure.

Signed documents are filed on the platform the policy keeps the project's workspace on, through the
:class:`connectors.platform.DocumentPlatform` (SharePoint or Box alike): uploaded into the class's folder, the
document columns set as the file's metadata, the drafts it supersedes marked or deleted as the policy says, and
the file put under its retention label (Box retains it under its folder's policy, which provisioning gave the
class folder). A label the platform cannot apply (the tenant does not publish it; on Box, the folder is not under
the policy) leaves the filed document without it: records management gets an exception naming the label and the
document's class, and the other actions go on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC

from actors.document_workflow.decisions import SignedDocument, filed_name, milestone_updates, terms_patch
from actors.document_workflow.rules import DocumentAction, DocumentPolicy
from connectors.docusign.client import DocuSignClient
from connectors.erp.client import ErpClient, Money, ProjectNotFound
from connectors.erp.client import Project as ErpProject
from connectors.platform import DocumentPlatform, ItemGone, PlatformItem, Platforms, RetentionNotPublished
from hub.actor import ActorContext, ActorSpec
from hub.errors import NotYet
from hub.idempotency import side_effect_key
from hub.policy import Policy, file_stem, fill
from hub.store import Locks, holding
from observability.logging import get_logger
from observability.metrics import SIGNATURE_TO_BILLING

#: A completed envelope (the document is signed) or a document platform state change.
SPEC = ActorSpec(name="document_workflow", triggers=("esign.envelope.completed.v1", "dms.document.state_changed.v1"),
                 workflow="document_intake", lock_ttl_ms=60_000)
_NAMESPACE = uuid.UUID("8d2f6a41-7c3e-4b59-a1d8-5e0f9b3c2a76")
log = get_logger(__name__)


class DocumentWorkflow:
    """Applies the policy's document rules to the document an event is about."""

    def __init__(self, *, spec: ActorSpec = SPEC, policy: Policy, rules: DocumentPolicy, erp: ErpClient,
                 platforms: Platforms, docusign: DocuSignClient, locks: Locks) -> None:
        """``platforms``: where signed documents are filed, the policy's choice of platform per project."""
        self.spec = spec
        self.policy, self.rules = policy, rules
        self.erp, self.platforms, self.docusign, self.locks = erp, platforms, docusign, locks

    def handle(self, context: ActorContext) -> None:
        """Apply the rules that match the document's class, state and the project's engagement type."""
        doc = SignedDocument.from_event(context.event.get_type(), context.data)
        project = self._project(doc.project_code)
        rules = self.rules.rules_for(doc.document_class, doc.state, project.engagement_type)
        if not rules:
            log.debug("no document rule applies", document_class=doc.document_class, state=doc.state,
                      engagement_type=project.engagement_type)
            return
        with holding(self.locks, f"project:{doc.project_code}", ttl_ms=self.spec.lock_ms,
                     busy=f"project {doc.project_code} is being updated by another worker"):
            actions = tuple(dict.fromkeys(a for rule in rules for a in rule.actions()))
            names = ", ".join(rule.name for rule in rules)
            self._run(context, doc, self._project(doc.project_code), actions, names)

    def _project(self, code: str) -> ErpProject:
        """The project as the ERP holds it now; a project it does not know yet is waited for."""
        try:
            return self.erp.get_project(code)
        except ProjectNotFound:
            raise NotYet(f"project {code} is not known to the ERP yet", prerequisite="erp_project") from None

    def _run(self, context: ActorContext, doc: SignedDocument, project: ErpProject,
             actions: Sequence[DocumentAction], rules: str) -> None:
        def key(step: str) -> str:
            return side_effect_key(context.event.get_id(), self.spec.name, step)

        erp = self.erp
        done: list[str] = []
        codes: list[str] = []
        values = project.template_values()
        if "write_contract_terms" in actions:
            patch = terms_patch(doc, project.custom_fields)
            if patch:
                project = erp.update_project(project.code, patch, idempotency_key=key("terms"))
                done.append("write_contract_terms")
        if "update_milestones" in actions:
            updates = milestone_updates(doc, project.custom_fields)
            for milestone in updates:
                amount = milestone["amount"]
                erp.ensure_milestone(project.code, str(milestone["name"]),
                                     Money(amount_minor=int(amount["amount_minor"]), currency=str(amount["currency"])),
                                     milestone.get("due_date"), idempotency_key=key(f"milestone:{milestone['name']}"))
            if updates:
                as_of = dict(project.custom_fields.get("milestones_as_of") or {})
                as_of.update({str(m["name"]): [doc.at_ms, doc.ref] for m in updates})
                project = erp.update_project(project.code, {"custom_fields": {"milestones_as_of": as_of}},
                                             idempotency_key=key("milestones-as-of"))
                done.append("update_milestones")
        if "open_matter" in actions and project.status == "planned":
            project = erp.update_project(project.code, {"status": "active"}, idempotency_key=key("open"))
            done.append("open_matter")
        if "enable_time_entry" in actions and not project.time_entry_enabled:
            project = erp.enable_time_entry(project.code, idempotency_key=key("time-entry"))
            done.append("enable_time_entry")
        if "activate_billing_codes" in actions:
            codes = [fill(template, values) for template in self.rules.billing_codes.get(project.engagement_type, ())]
            active = {code.code for code in erp.billing_codes(project.code) if code.active}
            if not project.billing_codes_active or not set(codes) <= active:
                project = erp.activate_billing_codes(project.code, codes, idempotency_key=key("billing-codes"))
                done.append("activate_billing_codes")
                signed = context.event.get_time()
                if doc.origin == "esign" and signed is not None:
                    SIGNATURE_TO_BILLING.observe(max((context.now() - signed).total_seconds(), 0.0))
        if "file_document" in actions and doc.origin == "esign":
            done += self._file(context, doc, project)
        if "notify_reporting" in actions and done:  # a re-run that changed nothing has nothing to report
            self._notify(context, doc, project, rules, codes)
        log.info("document rules applied", rules=rules, project_code=project.code, document=doc.ref,
                 document_class=doc.document_class, state=doc.state, changed=done)

    def _file(self, context: ActorContext, doc: SignedDocument, project: ErpProject) -> list[str]:
        """File the envelope's signed documents into the class's folder on the project's platform, with metadata and
        label (a label the platform cannot apply is left off, and raised to records management)."""
        envelope = self.docusign.get_envelope(doc.ref, include=("documents",))
        documents = [d for d in envelope.get("envelopeDocuments") or [] if d.get("type", "content") == "content"]
        if not documents:
            return []
        workspace = self.policy.workspace_path(project.template_values())
        folder = next((f.path for f in self.policy.folders_for(project.engagement_type)
                       if f.document_class == doc.document_class), None)
        target = f"{workspace}/{folder}" if folder else workspace
        label = self.policy.retention.label_for(region=project.region, country=project.country,
                                                client_id=project.client_id, engagement_type=project.engagement_type,
                                                document_class=doc.document_class)  # type: ignore[arg-type]
        platform = self.platforms.for_project(project.template_values())
        destination = platform.find_folder(target)
        if destination is None:
            raise self._no_folder(project, target)
        unpublished = False
        for document in documents:
            content = self.docusign.download_document(doc.ref, str(document["documentId"]))
            name = filed_name(str(document.get("name") or doc.name or ""), doc.ref)
            try:
                item = platform.upload(destination.id, name, content)
            except ItemGone:  # removed since it was found: provisioning puts it back
                raise self._no_folder(project, target) from None
            platform.set_metadata(item.id, {
                "DocumentClass": doc.document_class, "DocumentState": "signed", "ProjectCode": project.code,
                "EnvelopeId": doc.ref, "SignedAt": doc.at.astimezone(UTC).isoformat()}, kind="file")
            self._supersede_drafts(platform, destination, item, doc)
            if unpublished:
                continue
            try:
                platform.apply_retention(item.id, label, kind="file")
            except RetentionNotPublished:
                unpublished = True
        if unpublished:
            self._raise_missing_label(context, doc, project, label, target)
        return ["file_document"]

    def _supersede_drafts(self, platform: DocumentPlatform, folder: PlatformItem, signed: PlatformItem,
                          doc: SignedDocument) -> None:
        """The drafts the signed copy supersedes (beside it, of its class, of its name but for the extension, not
        signed yet) are marked superseded or deleted, as the policy says: the readiness gate stops holding the
        invoice for them without anyone touching the workspace. A draft of the signed copy's own name was replaced
        by the upload itself (the same item)."""
        name = file_stem(signed.name).casefold()
        for child in platform.files(folder.id):
            if child.id == signed.id or file_stem(child.name).casefold() != name:
                continue
            fields = platform.metadata(child.id, kind="file")
            if fields.get("DocumentClass") != doc.document_class or \
                    fields.get("DocumentState") in ("signed", "superseded"):
                continue
            if self.rules.supersede_drafts == "replace":
                platform.delete(child.id)
            else:
                platform.set_metadata(child.id, {"DocumentState": "superseded", "SupersededBy": signed.name},
                                      kind="file")
            log.info("draft superseded by its signed copy", draft=child.id, how=self.rules.supersede_drafts,
                     document=doc.ref, document_class=doc.document_class)

    @staticmethod
    def _no_folder(project: ErpProject, folder: str) -> NotYet:
        return NotYet(f"folder {folder} of project {project.code}'s workspace does not exist yet (provisioning "
                      "creates it)", prerequisite="workspace")

    def _raise_missing_label(self, context: ActorContext, doc: SignedDocument, project: ErpProject, label: str,
                             folder: str) -> None:
        """The platform refused the label: the document stays filed without it, and records management is told
        (one case per envelope and label, whatever the redeliveries)."""
        log.warning("retention label not applicable on the platform; document filed without it", label=label,
                    document=doc.ref, document_class=doc.document_class)
        context.raise_exception(
            "records_management", kind="document_workflow.retention_label_missing",
            id=str(uuid.uuid5(_NAMESPACE, f"label-missing:{doc.ref}:{label}")), subject=project.code,
            detail=f"retention label {label!r} is not published by the tenant; the signed {doc.document_class} "
                   f"of envelope {doc.ref} is filed in {folder} without it until it is published",
            project_code=project.code)

    def _notify(self, context: ActorContext, doc: SignedDocument, project: ErpProject, rules: str,
                codes: list[str]) -> None:
        data = {
            "project_code": project.code, "engagement_type": project.engagement_type, "rule": rules,
            "document_class": doc.document_class, "document_ref": doc.ref,
            "matter_opened": project.status == "active", "time_entry_enabled": project.time_entry_enabled,
            "billing_codes": codes, "notify": ["reporting"],
            "value": project.value.model_dump() if project.value is not None else None,
            "activated_at": context.now(),
        }
        context.emit("hub.engagement.activated.v1", data,
                     id=str(uuid.uuid5(_NAMESPACE, f"{project.code}:{rules}:{doc.ref}")), subject=project.code,
                     partitionkey=f"project:{project.code}")
