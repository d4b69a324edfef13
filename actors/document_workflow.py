"""Document-triggered workflow: a contract document reaching a state updates the ERP as the policy's
``documents`` rules say (contract terms, milestones, matter opening, time entry, billing codes, filing
the signed document, reporting). The ERP comes first, so billing does not wait for the document platform.

Triggers are a completed e-signature envelope (the document is signed) and a document platform state
change. Each action is an "ensure" against the ERP's current record, under a lease per project, so
duplicates and replays change nothing. Contract terms and milestones are order-independent: the ERP
project keeps, per field and per milestone, the time of the document that set it
(``custom_fields.terms_as_of`` and ``custom_fields.milestones_as_of``), and an older document never
overwrites a newer one. A document in draft or review matches no rule: an unsigned SOW enables nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import dramatiq
from dramatiq.errors import Retry
from dramatiq.middleware import CurrentMessage

from actors.provisioning_plan import workspace_path
from connectors.docusign.client import DocuSignClient
from connectors.erp.client import ErpClient, Money
from connectors.erp.client import Project as ErpProject
from connectors.sharepoint.client import GraphClient
from hub.errors import NEVER_RETRIED
from hub.events import from_message_body, make_event, validate_event
from hub.idempotency import side_effect_key
from hub.policy import Policy, fill
from hub.policy_documents import DocumentAction
from hub.runtime import Runtime
from hub.store import RedisLocks
from observability.logging import get_logger

ACTOR_NAME = "document_workflow"
SOURCE = "hub://document-workflow"
TRIGGERS = ("esign.envelope.completed.v1", "dms.document.state_changed.v1")
_LOCK_TTL_MS = 60_000
_NAMESPACE = uuid.UUID("8d2f6a41-7c3e-4b59-a1d8-5e0f9b3c2a76")
log = get_logger(__name__)


# ------------------------------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class SignedDocument:
    """A trigger, whatever system it came from: a document of a class reaching a state at a time."""

    ref: str  # envelope id or document id
    origin: str  # "esign" (the document is on the e-signature platform) or "dms"
    project_code: str
    document_class: str
    state: str
    at: datetime
    name: str | None = None
    value: Mapping[str, Any] | None = None
    start_date: date | None = None
    end_date: date | None = None
    milestones: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    @property
    def at_ms(self) -> int:
        """The document's time in epoch milliseconds."""
        return round(self.at.timestamp() * 1000)

    @classmethod
    def from_event(cls, event_type: str, record: Mapping[str, Any]) -> SignedDocument:
        """The trigger of an ``esign.envelope.completed.v1`` or ``dms.document.state_changed.v1`` record."""
        if event_type == "esign.envelope.completed.v1":
            return cls(str(record["envelope_id"]), "esign", str(record["project_code"]),
                       str(record["document_class"]), "signed", record["completed_at"], record.get("document_name"),
                       record.get("value"), record.get("start_date"), record.get("end_date"),
                       tuple(record.get("milestones") or ()))
        return cls(str(record["document_id"]), "dms", str(record["project_code"]), str(record["document_class"]),
                   str(record["state"]), record["changed_at"], record.get("name"), record.get("value"), None, None,
                   tuple(record.get("milestones") or ()))


def _newer(at_ms: int, ref: str, as_of: object) -> bool:
    """Whether a document at ``at_ms`` beats the stored ``[ms, ref]`` (ties: the greater ref wins)."""
    if not isinstance(as_of, list) or len(as_of) != 2:
        return True
    return (at_ms, ref) > (int(as_of[0]), str(as_of[1]))


def terms_patch(doc: SignedDocument, custom_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ERP project PATCH that writes the document's value and dates where it is the latest document
    to state them (empty when nothing changes)."""
    as_of = dict(custom_fields.get("terms_as_of") or {})
    stated: dict[str, Any] = {}
    if doc.value is not None:
        stated["value"] = {"amount_minor": int(doc.value["amount_minor"]), "currency": str(doc.value["currency"])}
    if doc.start_date is not None:
        stated["start_date"] = doc.start_date.isoformat()
    if doc.end_date is not None:
        stated["end_date"] = doc.end_date.isoformat()
    patch = {name: value for name, value in stated.items() if _newer(doc.at_ms, doc.ref, as_of.get(name))}
    if not patch:
        return {}
    as_of.update({name: [doc.at_ms, doc.ref] for name in patch})
    return {**patch, "custom_fields": {"terms_as_of": as_of}}


def milestone_updates(doc: SignedDocument, custom_fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The document's milestones it is the latest document to state."""
    as_of = custom_fields.get("milestones_as_of") or {}
    return [m for m in doc.milestones if _newer(doc.at_ms, doc.ref, as_of.get(str(m["name"])))]


def project_values(project: ErpProject) -> dict[str, str]:
    """Template values of the project (billing codes, the workspace path)."""
    return {"project_code": project.code, "client_id": project.client_id, "engagement_type": project.engagement_type,
            "practice": project.practice, "region": project.region, "country": project.country,
            "name": project.name, "partner": project.partner, "status": project.status}


def filed_name(name: str | None, ref: str) -> str:
    """The file name a signed document gets in the workspace: characters SharePoint refuses replaced,
    and ``.pdf`` (what DocuSign returns) added unless the name ends in an extension."""
    base = re.sub(r'[\\/:*?"<>|#%\x00-\x1f]', "-", (name or "").strip()).strip(" .")
    if not base:
        base = f"signed-{ref}"
    return base if re.search(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", base) else f"{base}.pdf"


# ---------------------------------------------------------------------------------------------- actor


def register(runtime: Runtime, *, policy: Policy, erp: ErpClient, graph: GraphClient,
             docusign: DocuSignClient, max_attempts: int) -> Any:
    """Declare the document-workflow actor."""
    prefix = runtime.queue_prefix
    locks = RedisLocks(runtime.redis, prefix=prefix)

    @dramatiq.actor(broker=runtime.broker, actor_name=ACTOR_NAME, queue_name=f"{prefix}.{ACTOR_NAME}",
                    throws=NEVER_RETRIED, max_retries=max(max_attempts - 1, 0), on_dead_letter="exceptions")
    def document_workflow(event_body: dict[str, Any]) -> None:
        """Apply the policy's document rules to the document the event is about."""
        event = from_message_body(event_body)
        record = validate_event(event, runtime.registry)
        doc = SignedDocument.from_event(event.get_type(), record)
        project = erp.get_project(doc.project_code)
        rules = policy.documents.rules_for(doc.document_class, doc.state, project.engagement_type)
        if not rules:
            log.debug("no document rule applies", document_class=doc.document_class, state=doc.state,
                      engagement_type=project.engagement_type)
            return
        lease = locks.acquire(f"project:{doc.project_code}", ttl_ms=_LOCK_TTL_MS)
        if lease is None:
            raise Retry(f"project {doc.project_code} is being updated by another worker", delay=300)
        try:
            actions = tuple(dict.fromkeys(a for rule in rules for a in rule.actions()))
            names = ", ".join(rule.name for rule in rules)
            _run(event.get_id(), doc, erp.get_project(doc.project_code), actions, names)
        finally:
            locks.release(f"project:{doc.project_code}", lease)

    def _run(event_id: str, doc: SignedDocument, project: ErpProject, actions: Sequence[DocumentAction],
             rules: str) -> None:
        def key(step: str) -> str:
            return side_effect_key(event_id, ACTOR_NAME, step)

        done: list[str] = []
        codes: list[str] = []
        values = project_values(project)
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
            codes = [fill(template, values) for template in policy.documents.billing_codes.get(
                project.engagement_type, ())]
            active = {code.code for code in erp.billing_codes(project.code) if code.active}
            if not project.billing_codes_active or not set(codes) <= active:
                project = erp.activate_billing_codes(project.code, codes, idempotency_key=key("billing-codes"))
                done.append("activate_billing_codes")
        if "file_document" in actions and doc.origin == "esign":
            done += _file(doc, project)
        if "notify_reporting" in actions and done:  # a re-run that changed nothing has nothing to report
            _notify(doc, project, rules, codes)
        log.info("document rules applied", rules=rules, project_code=project.code, document=doc.ref,
                 document_class=doc.document_class, state=doc.state, changed=done)

    def _file(doc: SignedDocument, project: ErpProject) -> list[str]:
        """File the envelope's signed documents into the class's folder, with metadata and label."""
        envelope = docusign.get_envelope(doc.ref)
        documents = [d for d in envelope.get("envelopeDocuments") or [] if d.get("type", "content") == "content"]
        values = project_values(project)
        workspace = workspace_path(policy, values)
        folder = next((f.path for f in policy.folders_for(project.engagement_type)
                       if f.document_class == doc.document_class), None)
        target = f"{workspace}/{folder}" if folder else workspace
        label = policy.retention.label_for(region=project.region, country=project.country,
                                           client_id=project.client_id, engagement_type=project.engagement_type,
                                           document_class=doc.document_class)  # type: ignore[arg-type]
        for document in documents:
            content = docusign.download_document(doc.ref, str(document["documentId"]))
            name = filed_name(str(document.get("name") or doc.name or ""), doc.ref)
            item = graph.upload(target, name, content, content_type="application/pdf")
            graph.ensure_fields(item.id, {
                "DocumentClass": doc.document_class, "DocumentState": "signed", "ProjectCode": project.code,
                "EnvelopeId": doc.ref, "SignedAt": doc.at.astimezone(UTC).isoformat(),
            })
            graph.ensure_retention_label(item.id, label)
        return ["file_document"] if documents else []

    def _notify(doc: SignedDocument, project: ErpProject, rules: str, codes: list[str]) -> None:
        data = {
            "project_code": project.code, "engagement_type": project.engagement_type, "rule": rules,
            "document_class": doc.document_class, "document_ref": doc.ref,
            "matter_opened": project.status == "active", "time_entry_enabled": project.time_entry_enabled,
            "billing_codes": codes, "notify": ["reporting"],
            "value": project.value.model_dump() if project.value is not None else None,
            "activated_at": datetime.now(UTC),
        }
        emitted = make_event(runtime.registry, type="hub.engagement.activated.v1", source=SOURCE,
                             id=str(uuid.uuid5(_NAMESPACE, f"{project.code}:{rules}:{doc.ref}")),
                             subject=project.code, data=data, partitionkey=f"project:{project.code}")
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(emitted, parent=CurrentMessage.get_current_message())

    return document_workflow
