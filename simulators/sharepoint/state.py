"""The Graph simulator's state: the drive tree (:mod:`simulators.sharepoint.drive`) with what Graph layers
on its items: permissions, retention labels, list-item fields, subscriptions and their change
notifications, and the admin views.

Every change to an item hands one change notification per matching live subscription to the ``notify``
sink. Deliberate simplifications: no permission inheritance, and every ``invite`` records a new
permission even for a group that already holds one (SharePoint would merge them), so a client that
grants twice leaves a visible duplicate.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from simulators.sharepoint.drive import DriveTree
from simulators.sharepoint.model import GraphError, Group, Item, Json, NotifySink, Permission, Subscription, iso, now


class GraphState(DriveTree):
    """Every drive, item and subscription of one simulator, behind one lock."""

    def __init__(self, *, drives: Iterable[str], groups: Iterable[Group], web_base: str, tenant_id: str,
                 retention_labels: frozenset[str] | None, notify: NotifySink) -> None:
        self._groups = tuple(groups)
        self._tenant_id = tenant_id
        self._labels = retention_labels
        self._notify = notify
        super().__init__(drives=drives, web_base=web_base)

    def reset(self) -> None:
        """Forget every item, subscription and counter; recreate the drives' roots."""
        with self._lock:
            self.subscriptions: dict[str, Subscription] = {}
            self.invites: Counter[str] = Counter()
            self.calls: Counter[str] = Counter()
            super().reset()

    def _changed(self, item: Item) -> None:
        """Hand one notification per live subscription covering ``item`` to the sink."""
        instant = now()
        for sub in self.subscriptions.values():
            if sub.expiration <= instant or sub.drive_id != item.drive_id or not self._is_within(item, sub.item_id):
                continue
            self._notify(sub.notification_url, {"value": [{
                "subscriptionId": sub.id, "clientState": sub.client_state,
                "changeType": "updated", "resource": sub.resource, "tenantId": self._tenant_id,
                "subscriptionExpirationDateTime": iso(sub.expiration),
                # As SharePoint's driveItem notifications: no notification id, no item id (delta finds it).
                "resourceData": {"@odata.type": "#Microsoft.Graph.DriveItem"},
            }]})

    # -- permissions --------------------------------------------------------------------------

    def _group_for(self, recipient: Any) -> Group:
        if not isinstance(recipient, dict):
            raise GraphError(400, "invalidRequest", "each recipient must be a driveRecipient object")
        for group in self._groups:
            if group.matches(recipient):
                return group
        raise GraphError(400, "invalidRequest", f"One or more users could not be resolved: {recipient}")

    def invite(self, drive_id: str, item_id: str, body: Json) -> list[Permission]:
        """Grant ``roles`` on the item to every recipient (each must be a known group)."""
        roles, recipients = body.get("roles"), body.get("recipients")
        if not isinstance(roles, list) or not roles or any(r not in {"read", "write"} for r in roles):
            raise GraphError(400, "invalidRequest", "roles must be a non-empty list of 'read' or 'write'")
        if not isinstance(recipients, list) or not recipients:
            raise GraphError(400, "invalidRequest", "recipients must be a non-empty list")
        groups = [self._group_for(r) for r in recipients]
        with self._lock:
            item = self.item(drive_id, item_id)
            if item.parent_id is None:
                raise GraphError(403, "accessDenied", "permissions of a drive's root cannot be changed")
            granted = [Permission(id=uuid.uuid4().hex, group=g, roles=sorted(set(roles)),
                                  sign_in_required=bool(body.get("requireSignIn", True))) for g in groups]
            for permission in granted:
                item.permissions[permission.id] = permission
            self.invites[f"{drive_id}/{self.path_of(item)}"] += len(granted)
            self._touch(item)
            return granted

    def permissions(self, drive_id: str, item_id: str) -> list[Permission]:
        """The item's permissions in grant order."""
        with self._lock:
            return list(self.item(drive_id, item_id).permissions.values())

    def permission(self, drive_id: str, item_id: str, permission_id: str) -> Permission:
        """One permission, else 404 ``itemNotFound``."""
        with self._lock:
            found = self.item(drive_id, item_id).permissions.get(permission_id)
            if found is None:
                raise GraphError(404, "itemNotFound", "The permission could not be found.")
            return found

    def delete_permission(self, drive_id: str, item_id: str, permission_id: str) -> None:
        """Remove one permission, else 404 ``itemNotFound``."""
        with self._lock:
            self.permission(drive_id, item_id, permission_id)
            item = self.item(drive_id, item_id)
            del item.permissions[permission_id]
            self._touch(item)

    # -- retention labels and fields ----------------------------------------------------------

    def label(self, drive_id: str, item_id: str) -> Json:
        """The item's ``itemRetentionLabel`` (``name`` null when none is applied)."""
        with self._lock:
            found = self.item(drive_id, item_id).label
            return dict(found) if found else {"name": None, "isLabelAppliedExplicitly": False}

    def set_label(self, drive_id: str, item_id: str, name: Any) -> tuple[Json, bool]:
        """Apply a retention label; returns it and whether the item had none (Graph answers 201)."""
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "invalidRequest", "name must be a non-empty string")
        if self._labels is not None and name not in self._labels:
            raise GraphError(400, "invalidRequest", f"retention label {name!r} does not exist")
        with self._lock:
            item = self.item(drive_id, item_id)
            first = item.label is None
            item.label = {"name": name, "isLabelAppliedExplicitly": True, "labelAppliedDateTime": iso(now()),
                          "labelAppliedBy": {"application": {"displayName": "graph-simulator"}},
                          "retentionSettings": {"behaviorDuringRetentionPeriod": "retain",
                                                "isDeleteAllowed": False, "isRecordLocked": False}}
            self._touch(item)
            return dict(item.label), first

    def remove_label(self, drive_id: str, item_id: str) -> None:
        """Remove the item's retention label (a no-op when it has none)."""
        with self._lock:
            item = self.item(drive_id, item_id)
            if item.label is not None:
                item.label = None
                self._touch(item)

    def fields_of(self, drive_id: str, item_id: str) -> Json:
        """The item's list-item ``fieldValueSet``."""
        with self._lock:
            item = self.item(drive_id, item_id)
            return {"@odata.etag": item.etag, "id": item.list_item_id, **item.fields}

    def patch_fields(self, drive_id: str, item_id: str, values: Json) -> Json:
        """Merge ``values`` into the item's fields; read-only names are refused."""
        bad = sorted(k for k in values if k in {"id", "@odata.etag"} or not k or k.startswith("@"))
        if bad:
            raise GraphError(400, "invalidRequest", f"field(s) not updatable: {', '.join(bad)}")
        with self._lock:
            item = self.item(drive_id, item_id)
            item.fields.update(values)
            self._touch(item)
            return self.fields_of(drive_id, item_id)

    # -- subscriptions ------------------------------------------------------------------------

    def subscription_target(self, resource: str) -> tuple[str, str]:
        """The (drive id, item id) a subscription ``resource`` names, else 400/404."""
        parts = [p for p in resource.strip("/").split("/") if p]
        if len(parts) == 3 and parts[0] == "drives" and parts[2] == "root":
            with self._lock:
                return parts[1], self._root(parts[1]).id
        # As SharePoint: a drive's root only, never a folder or file below it.
        raise GraphError(400, "InvalidRequest", f"resource {resource!r} is not supported.")

    def add_subscription(self, subscription: Subscription) -> None:
        """Record a subscription whose endpoint has been validated."""
        with self._lock:
            self.subscriptions[subscription.id] = subscription

    def subscription(self, subscription_id: str) -> Subscription:
        """One subscription, else 404."""
        with self._lock:
            found = self.subscriptions.get(subscription_id)
            if found is None:
                raise GraphError(404, "ResourceNotFound", f"subscription {subscription_id!r} does not exist")
            return found

    def list_subscriptions(self) -> list[Subscription]:
        """Every subscription, live or expired."""
        with self._lock:
            return list(self.subscriptions.values())

    def renew_subscription(self, subscription_id: str, expiration: datetime) -> Subscription:
        """Move a subscription's expiration, else 404."""
        with self._lock:
            found = self.subscription(subscription_id)
            found.expiration = expiration
            return found

    def delete_subscription(self, subscription_id: str) -> None:
        """Forget one subscription, else 404."""
        with self._lock:
            self.subscription(subscription_id)
            del self.subscriptions[subscription_id]

    # -- admin views --------------------------------------------------------------------------

    def count_call(self, key: str) -> None:
        """Count one authorised Graph call (``METHOD /route/template``)."""
        with self._lock:
            self.calls[key] += 1

    def snapshot(self) -> Json:
        """Every drive's items by path (kind, size, mimeType, permissions, label, fields), its change
        position and deleted item ids; and every subscription."""
        with self._lock:
            drives: Json = {}
            for drive_id, root_id in self.roots.items():
                items: Json = {}
                for item in self.items.values():
                    if item.drive_id != drive_id or item.id == root_id:
                        continue
                    items[self.path_of(item)] = {
                        "id": item.id, "name": item.name, "parentId": item.parent_id, "eTag": item.etag,
                        "kind": "file" if item.is_file else "folder", "size": self.size_of(item),
                        "mimeType": item.mime_type,
                        "webUrl": self.web_url(drive_id, self.path_of(item)),
                        "permissions": [{"id": p.id, "group": p.group.name, "roles": list(p.roles)}
                                        for p in item.permissions.values()],
                        "retentionLabel": item.label["name"] if item.label else None,
                        "fields": dict(item.fields),
                    }
                drives[drive_id] = {"rootId": root_id, "webUrl": self.web_url(drive_id, ""),
                                    "items": dict(sorted(items.items())), "changeSeq": self._seqs[drive_id],
                                    "deleted": sorted(t.id for t in self.tombstones.values()
                                                      if t.drive_id == drive_id)}
            return {"drives": drives, "groups": [g.identity() for g in self._groups],
                    "subscriptions": [s.to_json() for s in self.subscriptions.values()]}

    def request_counts(self) -> Json:
        """Committed folder creates, 409 conflicts, file uploads (creates and replacements) and deletes
        per path; invites per item path; calls."""
        with self._lock:
            return {"creates": dict(self.creates), "conflicts": dict(self.conflicts),
                    "invites": dict(self.invites), "uploads": dict(self.uploads), "deletes": dict(self.deletes),
                    "calls": dict(self.calls)}
