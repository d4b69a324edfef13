"""Document intake: a document platform's change notification becomes the documents' state events.

A Graph notification says only that something in the drive changed. The intake actor asks the drive
what changed since it last looked (``delta`` with the token kept in Redis), reads each changed file's
list-item fields and retention label, and emits ``dms.document.state_changed.v1`` when a classified
document's class, state, links or terms changed and ``dms.document.retention_applied.v1`` when its label
did. A file is a hub document when its fields name a ``DocumentClass``; the columns are:

``DocumentClass`` (sow, contract, change_order, engagement_letter, deliverable, service_report,
customer_approval, change_record), ``DocumentState`` (draft, in_review, approved, signed, rejected,
superseded), ``ProjectCode``, and optionally ``Milestone``, ``InvoiceNumber`` (the billing package the
document belongs to), ``ContractValue`` with ``ContractCurrency``, and ``Milestones`` (one
``name;amount;due date`` per line, in ``ContractCurrency``).

A deleted hub document is withdrawn: its last state event is emitted again as ``superseded``, so it
no longer satisfies (or holds) any checklist. Event ids derive from the item and its version, so a
replayed notification or a lost delta token re-emits the same ids, which the consumers drop; the
gate's fold makes any order safe.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from connectors.erp.client import ErpClient, ProjectNotFound
from connectors.sharepoint.client import DeltaTokenExpired, DriveItem, GraphClient, RetentionLabel, Subscription
from hub.errors import NEVER_RETRIED, InvalidEvent
from hub.events import from_message_body, make_event, validate_event
from hub.money import milestone, minor_units
from hub.policy_documents import DOCUMENT_STATES
from hub.runtime import Runtime
from hub.store import RedisLocks, guarded
from observability.logging import get_logger

ACTOR_NAME = "document_intake"
SOURCE = "hub://document-intake"
TRIGGERS = ("dms.change.notified.v1",)
STATE_CHANGED = "dms.document.state_changed.v1"
CLASSES = ("sow", "contract", "change_order", "engagement_letter", "deliverable", "service_report",
           "customer_approval", "change_record")
_LOCK_TTL_MS = 60_000
_NAMESPACE = uuid.UUID("3e1c9a7b-52d4-4c8f-a0b6-7d9e2f4a1c35")
log = get_logger(__name__)


@dataclass(frozen=True)
class DocumentView:
    """A file on the platform as the hub reads it: the item, its list-item fields and retention label."""

    drive_id: str
    item: DriveItem
    fields: Mapping[str, Any]
    label: RetentionLabel | None

    @property
    def classified(self) -> bool:
        """Whether the file is a hub document (its fields name a class)."""
        return bool(self.fields.get("DocumentClass"))


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()


def _milestones(text: str | None, currency: str | None) -> list[dict[str, Any]]:
    if text is None:
        return []
    if currency is None:
        raise InvalidEvent("Milestones needs ContractCurrency", field="Milestones")
    try:
        return [milestone(line, currency) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise InvalidEvent(f"Milestones: {exc}", field="Milestones") from None


def document_events(view: DocumentView, *, region: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The state event of a classified file and, when it carries a retention label and the project's
    region is known, its retention event (event type and data). InvalidEvent names a bad column."""
    fields = view.fields
    cls = _text(fields, "DocumentClass")
    if cls is None:
        return []
    cls = cls.lower().replace(" ", "_").replace("-", "_")
    if cls not in CLASSES:
        raise InvalidEvent(f"DocumentClass {cls!r} is not one of {', '.join(CLASSES)}", field="DocumentClass")
    state = (_text(fields, "DocumentState") or "draft").lower().replace(" ", "_").replace("-", "_")
    if state not in DOCUMENT_STATES:
        raise InvalidEvent(f"DocumentState {state!r} is not one of {', '.join(DOCUMENT_STATES)}",
                           field="DocumentState")
    project = _text(fields, "ProjectCode")
    if project is None:
        raise InvalidEvent("a classified document needs a ProjectCode", field="ProjectCode")
    currency = (_text(fields, "ContractCurrency") or "").upper() or None
    value_text = _text(fields, "ContractValue")
    value = None
    if value_text is not None:
        if currency is None:
            raise InvalidEvent("ContractValue needs ContractCurrency", field="ContractCurrency")
        try:
            value = {"amount_minor": minor_units(value_text, currency), "currency": currency}
        except ValueError as exc:
            raise InvalidEvent(f"ContractValue: {exc}", field="ContractValue") from None
    item = view.item
    changed_at = item.modified or datetime.now(UTC)
    events: list[tuple[str, dict[str, Any]]] = [("dms.document.state_changed.v1", {
        "document_id": item.id, "drive_id": view.drive_id, "item_id": item.id, "project_code": project,
        "document_class": cls, "state": state, "previous_state": None, "name": item.name, "url": item.web_url,
        "milestone": _text(fields, "Milestone"), "invoice_number": _text(fields, "InvoiceNumber"),
        "changed_at": changed_at, "value": value,
        "milestones": _milestones(_text(fields, "Milestones"), currency),
    })]
    label = view.label
    if label is not None and label.name and region is not None:
        events.append(("dms.document.retention_applied.v1", {
            "document_id": item.id, "project_code": project, "retention_label": label.name,
            "jurisdiction": region, "country": None, "applied_at": label.label_applied or changed_at,
        }))
    return events


def view_of(graph: GraphClient, item: DriveItem) -> DocumentView:
    """A file's fields and label, read now."""
    fields = graph.fields(item.id)
    label = graph.retention_label(item.id) if fields.get("DocumentClass") else None
    return DocumentView(graph.drive_id, item, fields, label)


def workspace_documents(graph: GraphClient, root: str) -> Iterator[DocumentView]:
    """Every classified file below the workspace folder ``root`` (depth first)."""
    folder = graph.get_by_path(root)
    if folder is None:
        return
    pending = [folder.id]
    while pending:
        for child in graph.children(pending.pop()):
            if child.is_folder:
                pending.append(child.id)
            elif child.is_file:
                view = view_of(graph, child)
                if view.classified:
                    yield view


def ensure_subscription(graph: GraphClient, notification_url: str, client_state: str, *,
                        lifetime: timedelta = timedelta(days=2)) -> Subscription:
    """Subscribe ``notification_url`` (the ingress's Graph webhook) to changes of the workspaces drive, or
    renew the subscription it has; run it again before the expiry (Graph drive subscriptions last days)."""
    resource = f"drives/{graph.drive_id}/root"
    expiration = datetime.now(UTC) + lifetime
    for subscription in graph.subscriptions():
        if subscription.resource == resource and subscription.notification_url == notification_url:
            return graph.renew_subscription(subscription.id, expiration)
    return graph.create_subscription(resource, notification_url, client_state, expiration)


def _signature(event_type: str, data: Mapping[str, Any]) -> str:
    """What makes two emissions of a document's event the same news (not its timestamps)."""
    ignore = {"changed_at", "applied_at", "url", "name", "previous_state"}
    return event_type + json.dumps({k: v for k, v in data.items() if k not in ignore}, sort_keys=True, default=str)


def register(runtime: Runtime, *, graph: GraphClient, erp: ErpClient, max_attempts: int, owner: str) -> Any:
    """Declare the document-intake actor."""
    prefix, client = runtime.queue_prefix, runtime.redis
    locks = RedisLocks(client, prefix=prefix)
    token_key = f"{prefix}:intake:delta:{graph.drive_id}"
    seen_key = f"{prefix}:intake:seen:{graph.drive_id}"
    dirty_key = f"{prefix}:intake:dirty:{graph.drive_id}"

    @dramatiq.actor(broker=runtime.broker, actor_name=ACTOR_NAME, queue_name=f"{prefix}.{ACTOR_NAME}",
                    throws=NEVER_RETRIED, max_retries=max(max_attempts - 1, 0), on_dead_letter="exceptions")
    def document_intake(event_body: dict[str, Any]) -> None:
        """Read what changed on the drive since the last look and emit the documents' events."""
        event = from_message_body(event_body)
        record = validate_event(event, runtime.registry)
        if record.get("platform") != "sharepoint":
            return
        # Notifications coalesce: each marks the drive as changed; whoever holds the lease reads the
        # changes until no mark is left, and a notification that finds the lease taken leaves its mark.
        guarded(lambda: client.set(dirty_key, "1"))
        while True:
            lease = locks.acquire(f"intake:{graph.drive_id}", ttl_ms=_LOCK_TTL_MS)
            if lease is None:
                log.debug("the drive is being read by another worker; it will see this change")
                return
            try:
                while guarded(lambda: client.getdel(dirty_key)) is not None:
                    _read_changes()
            finally:
                locks.release(f"intake:{graph.drive_id}", lease)
            if guarded(lambda: client.exists(dirty_key)) == 0:  # marked after the last read, before the release?
                return

    def _read_changes() -> None:
        raw: Any = guarded(lambda: client.get(token_key))
        token = raw.decode() if isinstance(raw, bytes) else raw
        try:
            changes = graph.delta(token)
        except DeltaTokenExpired:
            log.warning("delta token expired: reading the whole drive again", drive_id=graph.drive_id)
            changes = graph.delta(None)
        regions: dict[str, str | None] = {}
        emitted = 0
        for item in changes.items:
            if item.is_deleted:
                emitted += _withdraw(item)
                continue
            if not item.is_file:
                continue
            view = view_of(graph, item)
            if not view.classified:
                continue
            emitted += _emit_document(view, regions)
        guarded(lambda: client.set(token_key, changes.token))
        log.info("document changes read", drive_id=graph.drive_id, items=len(changes.items), emitted=emitted)

    def _region(code: str, regions: dict[str, str | None]) -> str | None:
        if code not in regions:
            try:
                regions[code] = erp.get_project(code).region
            except ProjectNotFound:
                regions[code] = None
        return regions[code]

    def _emit_document(view: DocumentView, regions: dict[str, str | None]) -> int:
        project = _text(view.fields, "ProjectCode")
        try:
            events = document_events(view, region=_region(project, regions) if project else None)
        except InvalidEvent as error:
            _raise_exception(view, str(error))
            return 0
        return sum(_emit(view.item, event_type, data) for event_type, data in events)

    def _seen(item_id: str, event_type: str) -> str | None:
        previous: Any = guarded(partial(client.hget, seen_key, f"{item_id}:{event_type}"))
        return previous.decode() if isinstance(previous, bytes) else previous

    def _emit(item: DriveItem, event_type: str, data: dict[str, Any]) -> int:
        """Publish one document event unless it is the news last published for the item."""
        signature = _signature(event_type, data)
        if _seen(item.id, event_type) == signature:
            return 0
        moment = data.get("changed_at") or data.get("applied_at")
        # The id names this version of the item: a replay of it is a duplicate, while the same state
        # reached again later (approved, back in review, approved again) is new news.
        version = item.e_tag or (item.modified.isoformat() if item.modified else "")
        emitted = make_event(runtime.registry, type=event_type, source=SOURCE, subject=item.id,
                             id=str(uuid.uuid5(_NAMESPACE, f"{version}|{signature}")), data=data, time=moment,
                             partitionkey=f"project:{data['project_code']}")
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(emitted, parent=CurrentMessage.get_current_message())
        guarded(partial(client.hset, seen_key, f"{item.id}:{event_type}", signature))
        return 1

    def _withdraw(item: DriveItem) -> int:
        """A deleted hub document leaves the picture: its last state again, as ``superseded`` (which
        neither satisfies nor holds a checklist)."""
        last = _seen(item.id, STATE_CHANGED)
        if last is None:
            return 0  # never a hub document
        data = json.loads(last.removeprefix(STATE_CHANGED))
        if data["state"] == "superseded":
            return 0
        milestones = [{**m, "due_date": date.fromisoformat(m["due_date"]) if m.get("due_date") else None}
                      for m in data.get("milestones") or []]
        withdrawn = {**data, "state": "superseded", "previous_state": data["state"], "name": None, "url": None,
                     "milestones": milestones, "changed_at": item.modified or datetime.now(UTC)}
        log.info("hub document deleted on the platform", item_id=item.id, project_code=data["project_code"])
        return _emit(item, STATE_CHANGED, withdrawn)

    def _raise_exception(view: DocumentView, detail: str) -> None:
        """A classified file whose columns the hub cannot read goes to its owner, once per version."""
        log.warning("document columns unreadable", item_id=view.item.id, detail=detail)
        data: dict[str, Any] = {
            "exception_id": str(uuid.uuid5(_NAMESPACE, f"unreadable:{view.item.id}:{view.item.e_tag}")),
            "owner": owner, "kind": "document_intake.unreadable_columns", "severity": "medium",
            "subject": view.item.id, "detail": f"{view.item.name}: {detail}",
            "project": None, "event_id": None, "event_type": None, "raised_at": datetime.now(UTC),
        }
        raised = make_event(runtime.registry, type="hub.exception.raised.v1", source=SOURCE,
                            id=data["exception_id"], subject=view.item.id, data=data)
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(raised, parent=CurrentMessage.get_current_message())

    return document_intake
