"""The simulated Box enterprise: its folder tree and files, groups and collaborations, metadata templates and
instances, retention policies and their assignments, webhooks, and the event stream, behind one lock.

Every change is recorded once in the event stream (``GET /events``: the ``changes`` stream's event type and the
enterprise's ``admin_logs_streaming`` one) and offered to the webhooks whose target is the item or a folder
above it, with the matching V2 trigger (:mod:`simulators.box.webhooks` delivers them).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simulators.box.config import BoxSimConfig
from simulators.box.model import ROOT_ID, BoxError, Ids, Item, Json, User, bad_request, box_time, full, not_found

#: A webhook delivery to make: the webhook and the payload's source and trigger.
Deliver = Callable[["Webhook", str, Json], None]


@dataclass
class Webhook:
    """A V2 webhook on a folder or a file."""

    id: str
    target_type: str
    target_id: str
    address: str
    triggers: list[str]
    created_by: User
    created_at: str = field(default_factory=box_time)

    def to_json(self) -> Json:
        """As ``GET /webhooks/{id}`` answers."""
        return {"type": "webhook", "id": self.id, "target": {"type": self.target_type, "id": self.target_id},
                "created_by": self.created_by.mini(), "created_at": self.created_at, "address": self.address,
                "triggers": list(self.triggers)}


@dataclass
class Event:
    """One entry of the event stream, under both stream types' names."""

    position: int
    change_type: str
    admin_type: str
    created_by: User
    source: Json
    created_at: str = field(default_factory=box_time)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self, stream: str) -> Json:
        """As ``GET /events`` lists it for ``stream`` (``changes``/``all``/``sync`` or ``admin_logs*``)."""
        kind = self.admin_type if stream.startswith("admin_logs") else self.change_type
        return {"type": "event", "event_id": self.event_id, "created_by": self.created_by.mini(),
                "created_at": self.created_at, "recorded_at": self.created_at, "event_type": kind,
                "session_id": None, "source": self.source, "additional_details": None}


class BoxState:
    """The enterprise's records; every public method takes the lock."""

    def __init__(self, config: BoxSimConfig, *, deliver: Deliver | None = None) -> None:
        self.config = config
        self.lock = threading.RLock()
        self._deliver = deliver
        self.account = User("31870000", f"AutomationUser_{config.client_id[:6]}",
                            f"AutomationUser_{config.client_id[:6]}@boxdevedition.com")
        self.reset()

    def reset(self) -> None:
        """Back to the enterprise as configured: an empty root, the groups and policies, nothing else."""
        with self.lock:
            self.ids = Ids()
            self.items: dict[str, Item] = {ROOT_ID: Item("folder", ROOT_ID, "All Files", None, self.account)}
            self.groups: dict[str, Json] = {}
            for name in self.config.groups:
                gid = self.ids.next("group")
                self.groups[gid] = {"type": "group", "id": gid, "name": name, "group_type": "managed_group"}
            self.collaborations: dict[str, Json] = {}
            self.templates: dict[str, Json] = {}
            self.instances: dict[tuple[str, str], Json] = {}
            self.policies: dict[str, Json] = {}
            for name in self.config.retention_policies:
                pid = self.ids.next("policy")
                self.policies[pid] = {"type": "retention_policy", "id": pid, "policy_name": name,
                                      "policy_type": "finite", "retention_length": _days(name),
                                      "disposition_action": "remove_retention", "retention_type": "modifiable",
                                      "status": "active", "description": "", "can_owner_extend_retention": False,
                                      "are_owners_notified": False, "custom_notification_recipients": [],
                                      "created_by": self.account.mini(), "created_at": box_time(),
                                      "modified_at": box_time()}
            self.assignments: dict[str, Json] = {}
            self.webhooks: dict[str, Webhook] = {}
            self.events: list[Event] = []
            #: Authorised API requests by method and path (``GET /2.0/folders/123/collaborations``).
            self.calls: Counter[str] = Counter()

    @contextmanager
    def locked(self) -> Iterator[BoxState]:
        """Hold the lock for a sequence of calls."""
        with self.lock:
            yield self

    # -- the tree -----------------------------------------------------------------------------

    def item(self, item_id: str, kind: str) -> Item:
        """The active item of ``kind`` with ``item_id``; 404 ``not_found`` otherwise."""
        found = self.items.get(item_id)
        if found is None or found.type != kind or found.item_status != "active":
            raise not_found()
        return found

    def render(self, item: Item) -> Json:
        """The item's standard fields."""
        return full(item, self.items)

    def children(self, folder_id: str) -> list[Item]:
        """A folder's active children as Box orders them by default: folders first, then by name."""
        self.item(folder_id, "folder")
        kids = [i for i in self.items.values() if i.parent_id == folder_id and i.item_status == "active"]
        return sorted(kids, key=lambda i: (i.type != "folder", i.name.casefold(), int(i.id)))

    def conflict(self, folder_id: str, name: str) -> Item | None:
        """The child of ``folder_id`` that ``name`` would clash with (Box compares names case-insensitively)."""
        return next((i for i in self.children(folder_id) if i.name.casefold() == name.casefold()), None)

    def check_name(self, name: str) -> None:
        """Box's own name rules: 1 to 255 characters, no ``/`` or ``\\``, no leading or trailing space, not
        ``.`` or ``..``."""
        if not name or len(name) > 255:
            raise BoxError(400, "item_name_too_long" if name else "bad_request",
                           "Item name too long" if name else "name is required")
        if "/" in name or "\\" in name or name != name.strip() or name in {".", ".."}:
            raise BoxError(400, "item_name_invalid", "Item name invalid")

    def name_in_use(self, existing: Item) -> BoxError:
        """409 ``item_name_in_use`` naming the existing item in ``context_info.conflicts``."""
        return BoxError(409, "item_name_in_use", "Item with the same name already exists",
                        context_info={"conflicts": [existing.mini()]})

    def create_folder(self, parent_id: str, name: str) -> Item:
        """A new folder; 404 for an unknown parent, 409 ``item_name_in_use`` for a taken name."""
        with self.lock:
            self.item(parent_id, "folder")
            self.check_name(name)
            existing = self.conflict(parent_id, name)
            if existing is not None:
                raise self.name_in_use(existing)
            folder = Item("folder", self.ids.next("folder"), name, parent_id, self.account)
            self.items[folder.id] = folder
            self.record("ITEM_CREATE", "UPLOAD", "FOLDER.CREATED", folder)
            return folder

    def store_file(self, parent_id: str, name: str, content: bytes) -> Item:
        """A new file; 409 ``item_name_in_use`` when the folder has an item of that name."""
        with self.lock:
            self.item(parent_id, "folder")
            self.check_name(name)
            existing = self.conflict(parent_id, name)
            if existing is not None:
                raise self.name_in_use(existing)
            item = Item("file", self.ids.next("file"), name, parent_id, self.account, content=content,
                        version_id=self.ids.next("version"))
            self.items[item.id] = item
            self.record("ITEM_UPLOAD", "UPLOAD", "FILE.UPLOADED", item)
            return item

    def new_version(self, file_id: str, content: bytes, name: str | None = None) -> Item:
        """New content for a file (and a new name when given): ``etag``/``sequence_id`` move on."""
        with self.lock:
            item = self.item(file_id, "file")
            if name is not None and name != item.name:
                self.check_name(name)
                existing = self.conflict(item.parent_id or ROOT_ID, name)
                if existing is not None and existing.id != item.id:
                    raise self.name_in_use(existing)
                item.name = name
            item.content, item.version_id = content, self.ids.next("version")
            item.touch()
            self.record("ITEM_UPLOAD", "UPLOAD", "FILE.UPLOADED", item)
            return item

    def trash(self, file_id: str) -> None:
        """Move a file to the trash (``ITEM_TRASH``, webhook trigger ``FILE.TRASHED``); 404 when there is none."""
        with self.lock:
            item = self.item(file_id, "file")
            item.item_status, item.trashed_at = "trashed", datetime.now(UTC)
            item.touch()
            self.record("ITEM_TRASH", "DELETE", "FILE.TRASHED", item)

    def trash_folder(self, folder_id: str, *, recursive: bool, etag: str | None = None) -> None:
        """Move a folder to the trash with everything in it, as ``DELETE /folders/{id}`` does: 412
        ``precondition_failed`` when ``etag`` (``If-Match``) is not its own, 400 ``folder_not_empty`` when it
        holds items and ``recursive`` is not set. Its collaborations, metadata and retention stay with it (Box
        restores them with it)."""
        with self.lock:
            if folder_id == ROOT_ID:
                raise BoxError(403, "access_denied_insufficient_permissions", "Access denied - insufficient permission")
            folder = self.item(folder_id, "folder")
            if etag is not None and etag != str(folder.sequence):
                raise BoxError(412, "precondition_failed", "The resource has been modified. Please retrieve the "
                                                           "resource again and retry")
            if self.children(folder_id) and not recursive:
                raise BoxError(400, "folder_not_empty", "Cannot delete - folder not empty")
            now, below = datetime.now(UTC), [folder]
            while below:
                current = below.pop()
                below += self.children(current.id) if current.type == "folder" else []
                current.item_status, current.trashed_at = "trashed", now
            self.record("ITEM_TRASH", "DELETE", "FOLDER.TRASHED", folder)

    # -- groups and collaborations ------------------------------------------------------------

    def collaboration(self, collaboration_id: str) -> Json:
        """A collaboration by id; 404 otherwise."""
        found = self.collaborations.get(collaboration_id)
        if found is None:
            raise not_found()
        return found

    def add_collaboration(self, item_type: str, item_id: str, grantee: Json, role: str) -> Json:
        """A group (or user) given ``role`` on an item; 400 ``user_already_collaborator`` when it has one."""
        with self.lock:
            item = self.item(item_id, item_type)
            if grantee.get("type") != "group":
                raise bad_request("accessible_by.type must be group in this simulator")
            group = self.groups.get(str(grantee.get("id")))
            if group is None:
                raise not_found("Group not found")
            if any(c["item"]["id"] == item.id and c["accessible_by"]["id"] == group["id"]
                   for c in self.collaborations.values()):
                raise BoxError(400, "user_already_collaborator", "User is already a collaborator")
            now = box_time()
            collab: Json = {"type": "collaboration", "id": self.ids.next("collaboration"), "item": item.mini(),
                            "accessible_by": {"type": "group", "id": group["id"], "name": group["name"],
                                              "group_type": group["group_type"]},
                            "role": role, "status": "accepted", "is_access_only": False, "acknowledged_at": now,
                            "created_by": self.account.mini(), "created_at": now, "modified_at": now,
                            "expires_at": None, "invite_email": None}
            self.collaborations[collab["id"]] = collab
            self.record("COLLAB_ADD_COLLABORATOR", "COLLABORATION_INVITE", "COLLABORATION.CREATED", item)
            return collab

    def update_collaboration(self, collaboration_id: str, role: str) -> Json:
        """A collaboration's new role."""
        with self.lock:
            collab = self.collaboration(collaboration_id)
            collab.update(role=role, modified_at=box_time())
            item = self.items[collab["item"]["id"]]
            self.record("COLLAB_ROLE_CHANGE", "COLLABORATION_ROLE_CHANGE", "COLLABORATION.UPDATED", item)
            return collab

    def remove_collaboration(self, collaboration_id: str) -> None:
        """Take a collaboration away; 404 when there is none."""
        with self.lock:
            collab = self.collaboration(collaboration_id)
            del self.collaborations[collaboration_id]
            item = self.items[collab["item"]["id"]]
            self.record("COLLAB_REMOVE_COLLABORATOR", "COLLABORATION_REMOVE", "COLLABORATION.REMOVED", item)

    # -- events and webhooks ------------------------------------------------------------------

    def count_call(self, key: str) -> None:
        """Count one authorised API request (``METHOD /path``)."""
        with self.lock:
            self.calls[key] += 1

    def record(self, change_type: str, admin_type: str, trigger: str | None, item: Item) -> None:
        """Append an event, and offer ``trigger`` to the webhooks on the item or a folder above it."""
        source = self.render(item)
        self.events.append(Event(len(self.events) + 1, change_type, admin_type, self.account, source))
        if trigger is None or self._deliver is None:
            return
        targets = {(item.type, item.id)}
        parent_id = item.parent_id
        while parent_id is not None:
            targets.add(("folder", parent_id))
            parent_id = self.items[parent_id].parent_id
        for hook in self.webhooks.values():
            if (hook.target_type, hook.target_id) in targets and trigger in hook.triggers:
                self._deliver(hook, trigger, source)

    def stream(self, position: str | None, limit: int) -> tuple[list[Event], int]:
        """Events after ``position`` (``now``: none; ``0`` or none: from the start), and the next position."""
        with self.lock:
            head = len(self.events)
            if position == "now":
                return [], head
            try:
                start = int(position or 0)
            except ValueError:
                raise bad_request("Invalid stream_position") from None
            if start < 0:
                raise bad_request("Invalid stream_position")
            start = min(start, head)  # a position past the head (from before a reset) reads from the head
            chunk = self.events[start:start + limit]
            return chunk, start + len(chunk)

    def snapshot(self) -> Json:
        """What the admin view shows: counts and the tree by path."""
        with self.lock:
            paths = {}
            for item in self.items.values():
                if item.id != ROOT_ID and item.item_status == "active":
                    paths[self._path(item)] = {"id": item.id, "type": item.type, "etag": str(item.sequence)}
            return {"items": dict(sorted(paths.items())), "collaborations": list(self.collaborations.values()),
                    "metadata": [{"item": k[0], "template": k[1], **v} for k, v in self.instances.items()],
                    "assignments": list(self.assignments.values()),
                    "webhooks": [w.to_json() for w in self.webhooks.values()], "events": len(self.events),
                    "templates": sorted(self.templates)}

    def _path(self, item: Item) -> str:
        names: list[str] = []
        current: Item | None = item
        while current is not None and current.id != ROOT_ID:
            names.insert(0, current.name)
            current = self.items.get(current.parent_id or "")
        return "/".join(names)


def _days(name: str) -> str:
    """A policy's ``retention_length`` in days, from a name ending in ``<years>y`` (else 7 years)."""
    tail = name.rsplit("-", 1)[-1]
    years = int(tail[:-1]) if tail.endswith("y") and tail[:-1].isdigit() else 7
    return str(years * 365)

