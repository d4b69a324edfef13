"""The Graph simulator's state: the drive tree (:mod:`simulators.sharepoint.drive`) with what Graph layers
on its items: permissions (inherited from the site until an ``invite``), retention labels, list-item fields
checked against the library's columns, subscriptions and their change notifications, the site, its
libraries and the directory's groups, and the admin views.

Every change to an item hands one change notification per matching live subscription to the ``notify``
sink.

Permissions: each library's root holds the site's Owners, Members and Visitors groups; every new item
inherits its parent's permissions, shown with ``inheritedFrom`` naming the item that holds them. An
``invite`` on an inheriting item breaks the inheritance first, as SharePoint does: the inherited grants
become direct ones (new ids), then the invited one is added. Inherited permissions cannot be deleted.
Deliberate simplification: every ``invite`` records a new permission even for a group that already holds
one (SharePoint would merge them), so a client that grants twice leaves a visible duplicate.

400 lines on purpose: the simulated tenant's state (site, drives, directory, labels, subscriptions) under one lock.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from simulators.sharepoint.drive import DriveTree
from simulators.sharepoint.model import (
    Column,
    GraphError,
    Group,
    Item,
    Json,
    NotifySink,
    Permission,
    Site,
    Subscription,
    iso,
    now,
)

#: Column type facets a ``columnDefinition`` may carry (exactly one).
COLUMN_TYPES = frozenset({"boolean", "calculated", "choice", "currency", "dateTime", "lookup", "number",
                          "personOrGroup", "text", "hyperlinkOrPicture", "term"})


class GraphState(DriveTree):
    """Every drive, item and subscription of one simulator, behind one lock."""

    def __init__(self, *, site: Site, groups: Iterable[Group], tenant_id: str,
                 retention_labels: frozenset[str] | None, columns: tuple[str, ...] | None,
                 notify: NotifySink) -> None:
        self.site = site
        self._groups = tuple(groups)
        self._tenant_id = tenant_id
        self._labels = retention_labels
        self._columns = columns
        self._notify = notify
        super().__init__(drives=[lib.drive_id for lib in site.libraries], web_base=site.web_url)

    def reset(self) -> None:
        """Forget every item, subscription, added column and counter; recreate the drives' roots, holding
        the site's groups."""
        with self._lock:
            self.subscriptions: dict[str, Subscription] = {}
            self.invites: Counter[str] = Counter()
            self.calls: Counter[str] = Counter()
            super().reset()
            self.columns: dict[str, dict[str, Column]] = {}
            for library in self.site.libraries:
                root = self.items[self.roots[library.drive_id]]
                root.inherits = False
                for site_group in self.site.groups:
                    permission = Permission(id=uuid.uuid4().hex, group=site_group, roles=[site_group.role],
                                            sign_in_required=True)
                    root.permissions[permission.id] = permission
                self.columns[library.drive_id] = {
                    name.casefold(): Column(id=str(uuid.uuid5(uuid.UUID(library.list_id), name)), name=name,
                                            definition={"text": {}}) for name in self._columns or ()}

    def drive_name(self, drive_id: str) -> str:
        """The name of the library whose drive this is (404 ``itemNotFound`` for an unknown drive)."""
        library = self.site.library(drive_id)
        if library is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        return library.name

    def web_url(self, drive_id: str, path: str) -> str:
        """``https://<host>/sites/<site>/<library>/<path>``, percent-encoded."""
        library = self.site.library(drive_id)
        base = f"{self.site.web_url}/{quote(library.name if library else drive_id, safe='')}"
        return f"{base}/{quote(path, safe='/')}" if path else base

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
        raise GraphError(400, "invalidRequest", "One or more users could not be resolved.")

    def drive_named(self, name: Any) -> str:
        """The drive id of the library named ``name`` (or with that drive id; ``None``: the first library)."""
        if name is None:
            return self.site.libraries[0].drive_id
        found = next((lib.drive_id for lib in self.site.libraries
                      if isinstance(name, str) and name.casefold() in {lib.drive_id.casefold(), lib.name.casefold()}),
                     None)
        if found is None:
            raise GraphError(404, "itemNotFound", f"drive {name!r} does not exist")
        return found

    def published_label_names(self) -> frozenset[str] | None:
        """The retention labels the tenant publishes (``None``: any name is taken)."""
        return self._labels

    @property
    def checks_columns(self) -> bool:
        """Whether a list-item field must be a column of the library."""
        return self._columns is not None

    def holder(self, item: Item) -> Item:
        """The item whose permissions ``item`` has: itself, or the nearest ancestor that does not inherit."""
        return self._holder(item)

    def _holder(self, item: Item) -> Item:
        """The item whose permissions ``item`` has: itself, or the nearest ancestor that does not inherit."""
        while item.inherits and item.parent_id is not None:
            item = self.items[item.parent_id]
        return item

    def _reference(self, item: Item) -> Json:
        path = self.path_of(item)
        return {"driveId": item.drive_id, "driveType": "documentLibrary", "id": item.id,
                "path": f"/drives/{item.drive_id}/root:" + (f"/{path}" if path else "")}

    def invite(self, drive_id: str, item_id: str, body: Json) -> list[Permission]:
        """Grant ``roles`` on the item to every recipient (each must be a known group); an item that
        inherits its permissions gets the inherited ones as direct ones first."""
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
            if item.inherits:
                inherited = list(self._holder(item).permissions.values())
                item.permissions = {}
                for permission in inherited:
                    copy = Permission(id=uuid.uuid4().hex, group=permission.group, roles=list(permission.roles),
                                      sign_in_required=permission.sign_in_required)
                    item.permissions[copy.id] = copy
                item.inherits = False
            granted = [Permission(id=uuid.uuid4().hex, group=g, roles=sorted(set(roles)),
                                  sign_in_required=bool(body.get("requireSignIn", True))) for g in groups]
            for permission in granted:
                item.permissions[permission.id] = permission
            self.invites[f"{self.drive_name(drive_id)}/{self.path_of(item)}"] += len(granted)
            self._touch(item)
            return granted

    def permissions(self, drive_id: str, item_id: str) -> list[Json]:
        """The item's permissions in grant order, as Graph shows them (``inheritedFrom`` on inherited ones)."""
        with self._lock:
            item = self.item(drive_id, item_id)
            holder = self._holder(item)
            source = None if holder is item else self._reference(holder)
            return [p.to_json(source) for p in holder.permissions.values()]

    def permission(self, drive_id: str, item_id: str, permission_id: str) -> Json:
        """One permission, else 404 ``itemNotFound``."""
        found = next((p for p in self.permissions(drive_id, item_id) if p["id"] == permission_id), None)
        if found is None:
            raise GraphError(404, "itemNotFound", "The permission could not be found.")
        return found

    def delete_permission(self, drive_id: str, item_id: str, permission_id: str) -> None:
        """Remove one direct permission; 404 ``itemNotFound`` when there is none, 400 when it is inherited."""
        with self._lock:
            found = self.permission(drive_id, item_id, permission_id)
            if "inheritedFrom" in found:
                raise GraphError(400, "invalidRequest", "Only permissions that are not inherited can be deleted; "
                                 "this one is inherited from " + str(found["inheritedFrom"]["path"]))
            item = self.item(drive_id, item_id)
            if item.parent_id is None:
                raise GraphError(403, "accessDenied", "permissions of a drive's root cannot be changed")
            del item.permissions[permission_id]
            self._touch(item)

    # -- directory groups, columns and published labels -----------------------------------------

    def groups(self) -> list[Group]:
        """Every group of the directory."""
        return list(self._groups)

    def group(self, group_id: str) -> Group:
        """One directory group by id, else 404 ``Request_ResourceNotFound``."""
        found = next((g for g in self._groups if g.id.casefold() == group_id.casefold()), None)
        if found is None:
            raise GraphError(404, "Request_ResourceNotFound",
                             f"Resource '{group_id}' does not exist or one of its queried reference-property "
                             "objects are not present.")
        return found

    def _library_columns(self, list_id: str) -> dict[str, Column]:
        library = next((lib for lib in self.site.libraries if lib.list_id.casefold() == list_id.casefold()), None)
        if library is None:
            raise GraphError(404, "itemNotFound", "The list could not be found.")
        return self.columns[library.drive_id]

    def list_columns(self, list_id: str) -> list[Column]:
        """The list's columns, built-in ones first."""
        with self._lock:
            return list(self._library_columns(list_id).values())

    def add_column(self, list_id: str, body: Json) -> Column:
        """Create a column from a ``columnDefinition``: a name of letters, digits and ``_``, one type facet."""
        name = body.get("name")
        if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() or name[0].isdigit():
            raise GraphError(400, "invalidRequest", "name must be letters, digits and '_', not starting with a digit")
        facets = sorted(k for k in body if k in COLUMN_TYPES)
        if len(facets) != 1 or not isinstance(body[facets[0]], dict):
            raise GraphError(400, "invalidRequest", "a column definition needs exactly one type facet, such as 'text'")
        with self._lock:
            columns = self._library_columns(list_id)
            if name.casefold() in columns:
                raise GraphError(400, "invalidRequest", f'A duplicate field name "{name}" was found.')
            display = body.get("displayName")
            column = Column(id=str(uuid.uuid4()), name=name, definition={
                facets[0]: dict(body[facets[0]]), "displayName": display if isinstance(display, str) else name,
                "description": str(body.get("description") or "")})
            columns[name.casefold()] = column
            return column

    def published_labels(self) -> list[Json]:
        """The tenant's retention labels (``security.retentionLabel``); 403 when the simulator was given none."""
        if self._labels is None:
            raise GraphError(403, "Forbidden", "The caller does not have permission to read retention labels "
                             "(RecordsManagement.Read.All, delegated).")
        return [{"id": str(uuid.uuid5(uuid.UUID(self._tenant_id), name)), "displayName": name,
                 "behaviorDuringRetentionPeriod": "retain", "actionAfterRetentionPeriod": "none",
                 "retentionTrigger": "dateLabeled", "defaultRecordBehavior": "startUnlocked", "isInUse": True,
                 "descriptionForUsers": None, "descriptionForAdmins": None}
                for name in sorted(self._labels)]

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
            raise GraphError(400, "invalidRequest", f"The retention label '{name}' is not published to this site.")
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
            columns = self.columns.get(drive_id, {})
            unknown = next((k for k in values if self._columns is not None and k.casefold() not in columns), None)
            if unknown is not None:
                raise GraphError(400, "invalidRequest", f"Field '{unknown}' is not recognized")
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
                                        for p in item.permissions.values() if isinstance(p.group, Group)],
                        "retentionLabel": item.label["name"] if item.label else None,
                        "fields": dict(item.fields),
                    }
                drives[drive_id] = {"rootId": root_id, "webUrl": self.web_url(drive_id, ""),
                                    "items": dict(sorted(items.items())), "changeSeq": self._seqs[drive_id],
                                    "deleted": sorted(t.id for t in self.tombstones.values()
                                                      if t.drive_id == drive_id)}
            return {"drives": drives, "groups": [g.identity() for g in self._groups],
                    "site": {**self.site.to_json(),
                             "groups": [g.identity() | {"role": g.role} for g in self.site.groups],
                             "drives": {lib.drive_id: lib.name for lib in self.site.libraries}},
                    "subscriptions": [s.to_json() for s in self.subscriptions.values()]}

    def request_counts(self) -> Json:
        """Committed folder creates, 409 conflicts, file uploads (creates and replacements) and deletes
        per path; invites per item path; calls."""
        with self._lock:
            return {"creates": self._named(self.creates), "conflicts": self._named(self.conflicts),
                    "invites": dict(self.invites), "uploads": self._named(self.uploads),
                    "deletes": self._named(self.deletes), "calls": dict(self.calls)}

    def _named(self, counts: Counter[str]) -> dict[str, int]:
        """Counts keyed ``<drive id>/<path>`` keyed ``<library name>/<path>`` instead."""
        names = {lib.drive_id: lib.name for lib in self.site.libraries}
        named: dict[str, int] = {}
        for key, count in counts.items():
            drive_id, sep, path = key.partition("/")
            named[f"{names.get(drive_id, drive_id)}{sep}{path}"] = count
        return named
