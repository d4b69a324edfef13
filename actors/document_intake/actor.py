"""Document intake: a document platform's change notification becomes the documents' state events.

A Graph notification says only that something in the drive changed (a Box webhook names a file, but the intake
reads the same way). The intake actor asks the :class:`connectors.platform.DocumentPlatform` of the notification's
name what changed since it last looked (:meth:`~connectors.platform.DocumentPlatform.changes`: SharePoint's drive
``delta``, Box's event stream, from the cursor kept in its store), reads each changed file as a document (its
columns and retention label, :meth:`~connectors.platform.DocumentPlatform.document`), and emits
``dms.document.state_changed.v1`` when a classified document's class, state, links or terms changed and
``dms.document.retention_applied.v1`` when its label did (:mod:`connectors.sharepoint.documents` reads the columns).

A deleted hub document is withdrawn: its last state event is emitted again as ``superseded``, so it
no longer satisfies (or holds) any checklist. Event ids derive from the item and its version, so a
replayed notification or a lost delta token re-emits the same ids, which the consumers drop; the
gate's fold makes any order safe.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from actors.document_intake.store import IntakeStore
from actors.document_intake.subscription import DriveSubscription
from connectors.erp.client import ErpClient, ProjectNotFound
from connectors.platform import ChangedItem, DocumentPlatform, Platforms, changes_key
from connectors.sharepoint.documents import DocumentView, column_text, document_events
from connectors.sharepoint.models import DriveItem
from hub.actor import ActorContext, ActorSpec
from hub.errors import ConfigurationError, InvalidEvent
from hub.store import Locks
from observability.logging import get_logger

#: The document platform's change notifications. One worker reads a platform's changes (SharePoint: a drive's) at
#: a time; the others leave a mark and return, so nothing waits on its lock.
#: Reconciliation found the drive's change subscription missing or about to expire: it is created or renewed.
REPAIR_REQUESTED = "hub.reconciliation.repair_requested.v1"
SPEC = ActorSpec(name="document_intake", triggers=("dms.change.notified.v1", REPAIR_REQUESTED),
                 workflow="document_intake", lock_ttl_ms=60_000)
STATE_CHANGED = "dms.document.state_changed.v1"
_NAMESPACE = uuid.UUID("3e1c9a7b-52d4-4c8f-a0b6-7d9e2f4a1c35")
log = get_logger(__name__)


def signature(event_type: str, data: Mapping[str, Any]) -> str:
    """What makes two emissions of a document's event the same news (not its timestamps)."""
    ignore = {"changed_at", "applied_at", "url", "name", "previous_state"}
    return event_type + json.dumps({k: v for k, v in data.items() if k not in ignore}, sort_keys=True, default=str)


class DocumentIntake:
    """Reads what changed on a document platform since the last look and emits the documents' events."""

    def __init__(self, *, spec: ActorSpec = SPEC, platforms: Platforms, erp: ErpClient, locks: Locks,
                 store: IntakeStore, subscription: DriveSubscription | None = None) -> None:
        """``platforms``: the document platforms whose changes are read, by name; ``subscription``: the SharePoint
        drive's change subscription, when the hub keeps one (a repair creates or renews it)."""
        self.spec = spec
        self.platforms, self.erp, self.locks, self.store = platforms, erp, locks, store
        self.subscription = subscription

    def handle(self, context: ActorContext) -> None:
        """Coalesce notifications: each marks the platform's changes as unread; whoever holds the lease reads the
        changes until no mark is left, and a notification that finds the lease taken leaves its mark. A repair
        request naming this actor creates or renews the drive's change subscription."""
        if context.event.get_type() == REPAIR_REQUESTED:
            self._repair_subscription(context)
            return
        name = str(context.data.get("platform"))
        if name not in self.platforms:
            return
        platform = self.platforms.named(name)
        key = changes_key(platform)
        self.store.mark_changed(key)
        while True:
            lease = self.locks.acquire(f"intake:{key}", ttl_ms=self.spec.lock_ms)
            if lease is None:
                log.debug("the platform's changes are being read by another worker; it will see this change")
                return
            try:
                while self.store.take_changed(key):
                    self._read_changes(platform, key, context)
            finally:
                self.locks.release(f"intake:{key}", lease)
            if not self.store.changed(key):  # marked after the last read, before the release?
                return

    def _repair_subscription(self, context: ActorContext) -> None:
        """Graph's subscription lifecycle, not the platform's: the drive's subscription created or renewed."""
        if self.spec.name not in context.data["actors"]:
            return  # another actor's repair
        if self.subscription is None:
            raise ConfigurationError("asked to repair the drive's subscription, but HUB_GRAPH_NOTIFICATION_URL and "
                                     "HUB_GRAPH_CLIENT_STATE are not set in this worker")
        renewed = self.subscription.ensure()
        log.info("graph subscription repaired", subscription_id=renewed.id, expires=renewed.expiration.isoformat())

    def _read_changes(self, platform: DocumentPlatform, key: str, context: ActorContext) -> None:
        """The platform's changes since the intake's cursor (kept under ``key``): each changed file read once, as a
        document; a deleted one (or one gone since) withdrawn."""
        page = platform.changes(self.store.delta_token(key))
        regions: dict[str, str | None] = {}
        emitted, seen = 0, set()
        for changed in page.items:
            if changed.kind != "file" or changed.id in seen:
                continue
            seen.add(changed.id)
            view = None if changed.deleted else platform.document(changed.id)
            if view is None:  # deleted, or gone since
                emitted += self._withdraw(key, changed, context)
            elif view.classified:
                emitted += self._emit_document(key, view, regions, context)
        self.store.save_delta_token(key, page.cursor)
        log.info("document changes read", platform=platform.name, stream=key, items=len(page.items),
                 emitted=emitted)

    def _region(self, code: str, regions: dict[str, str | None]) -> str | None:
        if code not in regions:
            try:
                regions[code] = self.erp.get_project(code).region
            except ProjectNotFound:
                regions[code] = None
        return regions[code]

    def _emit_document(self, scope: str, view: DocumentView, regions: dict[str, str | None],
                       context: ActorContext) -> int:
        project = column_text(view.fields, "ProjectCode")
        try:
            events = document_events(view, region=self._region(project, regions) if project else None)
        except InvalidEvent as error:
            self._unreadable(view, str(error), context)
            return 0
        return sum(self._emit(scope, view.item, event_type, data, context) for event_type, data in events)

    def _emit(self, scope: str, item: DriveItem, event_type: str, data: dict[str, Any], context: ActorContext
              ) -> int:
        """Publish one document event unless it is the news last published for the item (in ``scope``: the
        platform's change stream, :func:`~connectors.platform.changes_key`)."""
        news = signature(event_type, data)
        if self.store.last_news(scope, item.id, event_type) == news:
            return 0
        moment = data.get("changed_at") or data.get("applied_at")
        # The id names this version of the item: a replay of it is a duplicate, while the same state
        # reached again later (approved, back in review, approved again) is new news.
        version = item.e_tag or (item.modified.isoformat() if item.modified else "")
        context.emit(event_type, data, id=str(uuid.uuid5(_NAMESPACE, f"{version}|{news}")), subject=item.id,
                     time=moment, partitionkey=f"project:{data['project_code']}")
        self.store.remember_news(scope, item.id, event_type, news)
        return 1

    def _withdraw(self, scope: str, changed: ChangedItem, context: ActorContext) -> int:
        """A deleted hub document leaves the picture: its last state again, as ``superseded`` (which
        neither satisfies nor holds a checklist)."""
        item = DriveItem.model_validate({"id": changed.id, "lastModifiedDateTime": changed.modified})
        last = self.store.last_news(scope, item.id, STATE_CHANGED)
        if last is None:
            return 0  # never a hub document
        data = json.loads(last.removeprefix(STATE_CHANGED))
        if data["state"] == "superseded":
            return 0
        milestones = [{**m, "due_date": date.fromisoformat(m["due_date"]) if m.get("due_date") else None}
                      for m in data.get("milestones") or []]
        withdrawn = {**data, "state": "superseded", "previous_state": data["state"], "name": None, "url": None,
                     "milestones": milestones, "changed_at": item.modified or context.now()}
        log.info("hub document deleted on the platform", item_id=item.id, project_code=data["project_code"])
        return self._emit(scope, item, STATE_CHANGED, withdrawn, context)

    def _unreadable(self, view: DocumentView, detail: str, context: ActorContext) -> None:
        """A classified file whose columns the hub cannot read goes to its owner, once per version."""
        log.warning("document columns unreadable", item_id=view.item.id, detail=detail)
        context.raise_exception(self.spec.owner, kind="document_intake.unreadable_columns",
                                id=str(uuid.uuid5(_NAMESPACE, f"unreadable:{view.item.id}:{view.item.e_tag}")),
                                subject=view.item.id, detail=f"{view.item.name}: {detail}")
