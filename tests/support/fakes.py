"""Fakes of the other companies' services the actors call, for the actors' unit tests: Microsoft Graph (one
SharePoint drive), the ERP and DocuSign.

Each implements the calls the hub's client of that service makes (:class:`~connectors.sharepoint.client.GraphClient`,
:class:`~connectors.erp.client.ErpClient`, :class:`~connectors.docusign.client.DocuSignClient`) with the same
signatures, return types and errors, over dicts; none speaks HTTP. Each keeps the writes an actor asks of it in
``writes``, so a test can say what the actor asked for. A test sets the world up with the other methods
(``add_file``, ``delete``, ``add_envelope``, ...), which record nothing.

Past 400 lines on purpose: the three services side by side, each fake beside the contract it keeps.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.docusign.client import EnvelopeNotFound
from connectors.erp.client import BillingCode, Milestone, Money, Project, ProjectNotFound
from connectors.sharepoint.client import (
    DeltaResult,
    DeltaTokenExpired,
    DriveItem,
    ItemNotFound,
    LabelNotPublished,
    Permission,
    RetentionLabel,
)
from hub.errors import UpstreamRejected

__all__ = ["FakeDocuSign", "FakeErp", "FakeGraph"]


def _key(path: str) -> str:
    """A drive path as SharePoint compares it: segments without empty ones, ignoring case."""
    return "/".join(s for s in path.split("/") if s).casefold()


class FakeGraph:
    """One SharePoint drive behind Microsoft Graph: folders, files, grants, retention labels, list-item fields
    and the change log ``delta`` reads.

    ``writes`` holds, in order: ``("create_folder", path)`` for each folder ``ensure_folder`` creates (ensuring
    one that exists is a lookup), and one entry per call of ``ensure_grant``, ``revoke_grant``,
    ``ensure_retention_label``, ``ensure_fields``, ``delete_item`` and ``upload`` (``upload_into`` too), naming the
    item by its path.
    """

    def __init__(self, *, drive_id: str = "workspaces", labels: frozenset[str] | None = None) -> None:
        self.drive_id = drive_id
        #: The tenant's published retention labels (None: they cannot be listed, and any label applies).
        self.labels = labels
        #: The library's columns (``ensure_columns`` adds to them; not a write the tests count).
        self.columns: set[str] = set()
        self.writes: list[tuple[Any, ...]] = []
        self.delta_reads = 0
        self._items: dict[str, dict[str, Any]] = {}  # id -> the driveItem as Graph answers it
        self._paths: dict[str, str] = {}  # _key(path) -> id
        self._path_of: dict[str, str] = {}
        self._grants: dict[str, dict[str, str]] = {}  # id -> group -> role
        self._labels: dict[str, RetentionLabel] = {}
        self._fields: dict[str, dict[str, Any]] = {}
        self._log: list[str] = []  # ids in the order they changed
        self._generation = 0  # delta tokens of an older generation have expired
        self._ids = itertools.count(1)
        self._ticks = itertools.count(1)

    # -- the service as the client calls it ---------------------------------------------------

    def get_by_path(self, path: str) -> DriveItem | None:
        """See :meth:`GraphClient.get_by_path`."""
        item_id = self._paths.get(_key(path))
        return None if item_id is None else self._item(item_id)

    def ensure_folder(self, path: str) -> DriveItem:
        """See :meth:`GraphClient.ensure_folder`."""
        return self._item(self._folders(path, record=True))

    def ensure_child_folder(self, parent_id: str, name: str, path: str) -> DriveItem:
        """See :meth:`GraphClient.ensure_child_folder`: the folder ``name`` in the folder ``parent_id``."""
        self._known(parent_id)
        return self._item(self._folders(f"{self.path_of(parent_id)}/{name}", record=True))

    def grants(self, item_id: str) -> list[Permission]:
        """See :meth:`GraphClient.grants`: one direct group permission per group."""
        self._known(item_id)
        return [self._permission(item_id, group, role) for group, role in self._grants.get(item_id, {}).items()]

    def ensure_grant(self, item_id: str, group: str, role: str) -> Permission:
        """See :meth:`GraphClient.ensure_grant`."""
        self.writes.append(("ensure_grant", self.path_of(item_id), group, role))
        held = self._grants.setdefault(item_id, {})
        for name in [name for name in held if name.casefold() == group.casefold()]:
            del held[name]
        held[group] = role
        return self._permission(item_id, group, role)

    def revoke_grant(self, item_id: str, group: str) -> int:
        """See :meth:`GraphClient.revoke_grant`."""
        self.writes.append(("revoke_grant", self.path_of(item_id), group))
        held = self._grants.get(item_id, {})
        own = [name for name in held if name.casefold() == group.casefold()]
        for name in own:
            del held[name]
        return len(own)

    def retention_label(self, item_id: str) -> RetentionLabel:
        """See :meth:`GraphClient.retention_label`."""
        self._known(item_id)
        return self._labels.get(item_id, RetentionLabel())

    def ensure_retention_label(self, item_id: str, label: str) -> RetentionLabel:
        """See :meth:`GraphClient.ensure_retention_label`: a label the tenant does not publish is refused."""
        self.writes.append(("ensure_retention_label", self.path_of(item_id), label))
        if self.labels is not None and label not in self.labels:
            raise LabelNotPublished(f"graph: the retention label {label!r} was refused: 400 invalidRequest")
        if self.retention_label(item_id).name != label:
            self._label(item_id, label)
        return self._labels[item_id]

    def published_labels(self, *, refresh: bool = False) -> frozenset[str] | None:
        """See :meth:`GraphClient.published_labels`."""
        return self.labels

    def ensure_columns(self, names: Sequence[str]) -> list[str]:
        """See :meth:`GraphClient.ensure_columns`."""
        created = [name for name in dict.fromkeys(names) if name not in self.columns]
        self.columns.update(created)
        return created

    def fields(self, item_id: str) -> dict[str, Any]:
        """See :meth:`GraphClient.fields`."""
        self._known(item_id)
        return dict(self._fields.get(item_id, {}))

    def ensure_fields(self, item_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """See :meth:`GraphClient.ensure_fields`."""
        self.writes.append(("ensure_fields", self.path_of(item_id), dict(fields)))
        self._set_fields(item_id, fields)
        return self.fields(item_id)

    def upload(self, folder_path: str, name: str, content: bytes, *,
               content_type: str = "application/octet-stream") -> DriveItem:
        """See :meth:`GraphClient.upload`: a file of that name is replaced, and stays the same item."""
        folder = self._paths.get(_key(folder_path))
        if folder is None or "folder" not in self._items[folder]:
            raise ItemNotFound(f"graph: no folder {folder_path!r}")
        path = f"{self.path_of(folder)}/{name}"
        self.writes.append(("upload", path))
        item_id = self._paths.get(_key(path)) or self._create(path, {"file": {"mimeType": content_type}})
        self._items[item_id]["size"] = len(content)
        self._touch(item_id)
        return self._item(item_id)

    def upload_into(self, folder_id: str, name: str, content: bytes, *,
                    content_type: str = "application/octet-stream") -> DriveItem:
        """See :meth:`GraphClient.upload_into`: :meth:`upload` into the folder of that id."""
        return self.upload(self.path_of(folder_id), name, content, content_type=content_type)

    def get_item(self, item_id: str) -> DriveItem:
        """See :meth:`GraphClient.get_item`."""
        self._known(item_id)
        return self._item(item_id)

    def children(self, item_id: str = "root", *, page_size: int | None = None) -> list[DriveItem]:
        """See :meth:`GraphClient.children`."""
        self._known(item_id)
        parent = self.path_of(item_id)
        return [self._item(i) for i in self._items if "deleted" not in self._items[i]
                and self.path_of(i).rpartition("/")[0] == parent and i != item_id]

    def delete_item(self, item_id: str) -> None:
        """See :meth:`GraphClient.delete_item`."""
        self.writes.append(("delete_item", self.path_of(item_id)))
        self.delete(item_id)

    def delta(self, token: str | None = None) -> DeltaResult:
        """See :meth:`GraphClient.delta`: no token reads every item there is; a token, every change after it
        (each changed item once, as it is now); a token older than :meth:`expire_delta_tokens` is refused."""
        self.delta_reads += 1
        if token is None:
            ids = [i for i in self._items if "deleted" not in self._items[i]]
        else:
            generation, _, position = token.partition(".")
            if int(generation) != self._generation:
                raise DeltaTokenExpired("graph: the delta token is no longer valid (410 resyncRequired)")
            ids = list(dict.fromkeys(reversed(self._log[int(position):])))[::-1]
        return DeltaResult(items=[self._item(i) for i in ids], token=f"{self._generation}.{len(self._log)}")

    # -- the world changing -------------------------------------------------------------------

    def add_folder(self, path: str) -> str:
        """A folder someone made (its parents too); its id."""
        return self._folders(path, record=False)

    def add_file(self, folder_path: str, name: str, *, fields: Mapping[str, Any] | None = None,
                 label: str | None = None) -> str:
        """A file someone put in the drive, with list-item fields and a retention label; its id."""
        self._folders(folder_path, record=False)
        item_id = self._create(f"{folder_path}/{name}", {"file": {"mimeType": "application/pdf"}})
        if fields:
            self._set_fields(item_id, fields)
        if label:
            self._label(item_id, label)
        return item_id

    def set_fields(self, item_id: str, fields: Mapping[str, Any]) -> None:
        """Someone edited the item's columns."""
        self._set_fields(item_id, fields)

    def grant(self, path: str, group: str, role: str) -> None:
        """A grant someone (or an earlier run) left on the folder at ``path``."""
        self._grants.setdefault(self._paths[_key(path)], {})[group] = role

    def delete(self, item_id: str) -> None:
        """Someone deleted the item: ``delta`` reports it with the ``deleted`` facet and without its name."""
        item = self._items[item_id]
        item["deleted"] = {"state": "deleted"}
        item.pop("name", None)
        del self._paths[_key(self._path_of[item_id])]
        self._touch(item_id)

    def expire_delta_tokens(self) -> None:
        """Every delta token given so far is refused from now on (Graph's 410 ``resyncRequired``)."""
        self._generation += 1

    # -- what the drive holds, for assertions ----------------------------------------------------

    def path_of(self, item_id: str) -> str:
        """The item's path below the drive root."""
        self._known(item_id)
        return self._path_of[item_id]

    def held_grants(self, path: str) -> dict[str, str]:
        """The direct grants on the folder at ``path``, group to role."""
        return dict(self._grants.get(self._paths[_key(path)], {}))

    def held_label(self, path: str) -> str | None:
        """The retention label of the item at ``path``."""
        return self._labels.get(self._paths[_key(path)], RetentionLabel()).name

    def held_fields(self, path: str) -> dict[str, Any]:
        """The list-item fields of the item at ``path``."""
        return dict(self._fields.get(self._paths[_key(path)], {}))

    def folders(self) -> list[str]:
        """Every folder's path, in the order they were made."""
        return [self._path_of[i] for i, item in self._items.items() if "folder" in item and "deleted" not in item]

    # -- plumbing -----------------------------------------------------------------------------

    def _known(self, item_id: str) -> None:
        if item_id not in self._items or "deleted" in self._items[item_id]:
            raise ItemNotFound(f"graph: no item {item_id!r}")

    def _item(self, item_id: str) -> DriveItem:
        return DriveItem.model_validate(self._items[item_id])

    def _folders(self, path: str, *, record: bool) -> str:
        names = [s for s in path.split("/") if s]
        item_id = ""
        for depth in range(1, len(names) + 1):
            here = "/".join(names[:depth])
            found = self._paths.get(_key(here))
            if found is None:
                if record:
                    self.writes.append(("create_folder", here))
                found = self._create(here, {"folder": {"childCount": 0}})
            elif "folder" not in self._items[found]:
                raise UpstreamRejected(f"graph: {here!r} exists but is not a folder")
            item_id = found
        return item_id

    def _create(self, path: str, facet: dict[str, Any]) -> str:
        item_id = f"01ITEM{next(self._ids):04d}"
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        self._items[item_id] = {
            "id": item_id, "name": path.rsplit("/", 1)[-1],
            "webUrl": f"https://contoso.sharepoint.com/sites/hub/{self.drive_id}/{path}",
            "parentReference": {"driveId": self.drive_id, "id": self._paths.get(_key(parent), "root")}, **facet}
        self._paths[_key(path)] = item_id
        self._path_of[item_id] = path
        self._touch(item_id)
        return item_id

    def _touch(self, item_id: str) -> None:
        """The item changed: a new eTag and modification time, and a place in the change log."""
        tick = next(self._ticks)
        item = self._items[item_id]
        item["eTag"] = f'"{{{item_id}}},{tick}"'
        item["lastModifiedDateTime"] = (datetime(2027, 2, 1, 9, tzinfo=UTC) + timedelta(seconds=tick)).isoformat()
        self._log.append(item_id)

    def _set_fields(self, item_id: str, fields: Mapping[str, Any]) -> None:
        current = self._fields.setdefault(item_id, {})
        if any(current.get(name) != value for name, value in fields.items()):
            current.update(fields)
            self._touch(item_id)

    def _label(self, item_id: str, label: str) -> None:
        self._labels[item_id] = RetentionLabel.model_validate({
            "name": label, "isLabelAppliedExplicitly": True,
            "labelAppliedDateTime": (datetime(2027, 2, 1, 9, tzinfo=UTC)
                                     + timedelta(seconds=next(self._ticks))).isoformat()})

    @staticmethod
    def _permission(item_id: str, group: str, role: str) -> Permission:
        return Permission.model_validate({"id": f"{item_id}:{group}", "roles": [role],
                                          "grantedToV2": {"group": {"displayName": group}}})


class FakeErp:
    """The ERP's projects, their billing codes and milestones.

    ``writes`` holds one entry per call of ``update_project`` (with the changes asked), ``enable_time_entry``,
    ``activate_billing_codes`` and ``ensure_milestone``; ``keys`` their idempotency keys, in the same order. A
    PATCH merges ``custom_fields`` key by key, as the ERP does.
    """

    def __init__(self, *projects: Project) -> None:
        self.projects = {project.code: project for project in projects}
        self.writes: list[tuple[Any, ...]] = []
        self.keys: list[str] = []
        self.codes: dict[str, dict[str, bool]] = {}
        self.milestone_rows: dict[str, list[Milestone]] = {}

    def get_project(self, code: str) -> Project:
        """See :meth:`ErpClient.get_project`."""
        if code not in self.projects:
            raise ProjectNotFound(f"erp: project {code!r} not found")
        return self.projects[code]

    def update_project(self, code: str, changes: Mapping[str, Any], *, idempotency_key: str,
                       if_match: int | None = None) -> Project:
        """See :meth:`ErpClient.update_project`."""
        self._asked(idempotency_key, "update_project", code, copy.deepcopy(dict(changes)))
        return self._patch(code, changes)

    def enable_time_entry(self, code: str, *, idempotency_key: str) -> Project:
        """See :meth:`ErpClient.enable_time_entry`."""
        self._asked(idempotency_key, "enable_time_entry", code)
        return self._patch(code, {"time_entry_enabled": True})

    def billing_codes(self, code: str) -> list[BillingCode]:
        """See :meth:`ErpClient.billing_codes`."""
        self.get_project(code)
        return [BillingCode(code=name, active=active) for name, active in self.codes.get(code, {}).items()]

    def activate_billing_codes(self, code: str, codes: Sequence[str], *, idempotency_key: str) -> Project:
        """See :meth:`ErpClient.activate_billing_codes`."""
        self._asked(idempotency_key, "activate_billing_codes", code, tuple(codes))
        self.get_project(code)
        self.codes.setdefault(code, {}).update(dict.fromkeys(codes, True))
        return self._patch(code, {"billing_codes_active": True})

    def ensure_milestone(self, code: str, name: str, amount: Money, due_date: date | None, *,
                         idempotency_key: str) -> Milestone:
        """See :meth:`ErpClient.ensure_milestone`."""
        self._asked(idempotency_key, "ensure_milestone", code, name, amount.amount_minor, due_date)
        rows = self.milestone_rows.setdefault(self.get_project(code).code, [])
        index = next((i for i, m in enumerate(rows) if m.name == name), None)
        milestone = Milestone(id=rows[index].id if index is not None else f"MS-{len(rows) + 1}", name=name,
                              amount=amount, due_date=due_date)
        if index is None:
            rows.append(milestone)
        else:
            rows[index] = milestone
        return milestone

    def _asked(self, key: str, *write: Any) -> None:
        self.writes.append(write)
        self.keys.append(key)

    def _patch(self, code: str, changes: Mapping[str, Any]) -> Project:
        current = self.get_project(code)
        record = current.model_dump()
        wanted = dict(changes)
        if "custom_fields" in wanted:
            wanted["custom_fields"] = {**record["custom_fields"], **(wanted["custom_fields"] or {})}
        changed = Project.model_validate({**record, **wanted})
        if changed != current:
            changed = changed.model_copy(update={"version": current.version + 1})
        self.projects[code] = changed
        return changed


class FakeDocuSign:
    """A DocuSign account's envelopes and their documents; ``downloads`` holds each document fetched."""

    def __init__(self) -> None:
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.documents: dict[tuple[str, str], bytes] = {}
        self.downloads: list[tuple[str, str]] = []

    def add_envelope(self, envelope_id: str, documents: Sequence[tuple[str, str, bytes]]) -> None:
        """A completed envelope with these ``(document id, name, content)`` documents and DocuSign's
        certificate of completion (a ``summary`` document)."""
        listed = [{"documentId": doc_id, "name": name, "type": "content", "order": str(order)}
                  for order, (doc_id, name, _) in enumerate(documents, start=1)]
        listed.append({"documentId": "certificate", "name": "Summary", "type": "summary", "order": "999"})
        self.envelopes[envelope_id] = {"envelopeId": envelope_id, "status": "completed",
                                       "envelopeDocuments": listed}
        for doc_id, _, content in documents:
            self.documents[(envelope_id, doc_id)] = content
        self.documents[(envelope_id, "certificate")] = b"%PDF certificate"

    def get_envelope(self, envelope_id: str, *, include: Collection[str] = ()) -> dict[str, Any]:
        """See :meth:`DocuSignClient.get_envelope`: like DocuSign, the documents only when included."""
        if envelope_id not in self.envelopes:
            raise EnvelopeNotFound(f"docusign: envelope {envelope_id} not found")
        envelope = copy.deepcopy(self.envelopes[envelope_id])
        if "documents" not in include:
            del envelope["envelopeDocuments"]
        return envelope

    def download_document(self, envelope_id: str, document_id: str) -> bytes:
        """See :meth:`DocuSignClient.download_document`."""
        if (envelope_id, document_id) not in self.documents:
            raise EnvelopeNotFound(f"docusign: document {document_id} of {envelope_id} not found")
        self.downloads.append((envelope_id, document_id))
        return self.documents[(envelope_id, document_id)]
