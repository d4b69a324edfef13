"""Box as a :class:`connectors.platform.DocumentPlatform`: :class:`BoxClient`'s writes, and the reads the patterns
need (a folder by path, its group collaborations, its metadata, its retention policies, a document).

Box has no paths: a folder is found by walking its parent's items name by name (Box compares names ignoring
case, as the hub does). A folder's retention is read from the policy's own assignments (Box lists assignments
per policy, not per folder).

A document is a file whose instance of the workspace template names a ``DocumentClass`` (the columns SharePoint
calls ``DocumentClass``, ``DocumentState``, ``ProjectCode``, ... are the template's fields of those keys). Box
retains a file under the policies of its folder, so a document's retention label is its folder's policy (the
class folders of a workspace carry their class's policy from provisioning). The document's version is the file's
etag and the instance's ``$version``: a metadata change is news, a repeat of the same is not.

Box assigns no retention policy to a file: :meth:`BoxPlatform.apply_retention` of a file checks that its folder is
under the policy (provisioning gives each class folder its class's policy) and assigns nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.box.client import BoxClient
from connectors.box.errors import BoxNotFound, RetentionPolicyNotFound
from connectors.box.models import BoxFile, BoxFolder, BoxItem
from connectors.platform import ChangePage, ItemKind, PlatformItem, RetentionNotPublished, Role, documents_below
from connectors.sharepoint.documents import DocumentView
from connectors.sharepoint.models import DriveItem, RetentionLabel

__all__ = ["BOX_WEB", "BoxPlatform"]

#: Where people open Box (a folder at ``<it>/folder/<id>``).
BOX_WEB = "https://app.box.com"
_ROLES: dict[str, Role] = {"viewer": "read", "previewer": "read", "editor": "write"}


class BoxPlatform:
    """The enterprise's workspaces folder in Box."""

    name = "box"
    location = None
    #: A file is retained under its folder's policies.
    retention_by_folder = True

    def __init__(self, client: BoxClient, *, web: str = BOX_WEB) -> None:
        self.client = client
        self.web = web.rstrip("/")
        self._published: frozenset[str] | None = None

    def ensure_folder(self, path: str) -> BoxFolder:
        """:meth:`BoxClient.ensure_folder`."""
        return self.client.ensure_folder(path)

    def find_folder(self, path: str) -> BoxFolder | None:
        """The folder at ``path`` below the workspaces' root, walked name by name; None when a segment is missing."""
        folder = BoxFolder(id=self.client.root_folder_id)
        for name in (n for n in path.split("/") if n):
            key = name.casefold()
            found = next((item for item in self.client.items(folder.id)
                          if item.type == "folder" and item.name.casefold() == key), None)
            if found is None:
                return None
            folder = BoxFolder(id=found.id, name=found.name, etag=found.etag)
        return folder

    def ensure_subfolder(self, parent_id: str, name: str, path: str) -> BoxFolder:
        """:meth:`BoxClient.create_folder` (409 ``item_name_in_use`` read as the folder that exists)."""
        return self.client.create_folder(parent_id, name)

    def web_url(self, item: PlatformItem) -> str:
        """``https://app.box.com/folder/<id>`` (or ``/file/<id>``)."""
        kind = "file" if isinstance(item, BoxFile) else "folder"
        return f"{self.web}/{kind}/{item.id}"

    def set_metadata(self, item_id: str, values: Mapping[str, str], *, kind: ItemKind = "folder"
                     ) -> Mapping[str, Any]:
        """:meth:`BoxClient.ensure_metadata` on the folder or file (the workspace template made or extended first)."""
        return self.client.ensure_metadata(item_id, values, kind="files" if kind == "file" else "folders")

    def metadata(self, item_id: str, *, kind: ItemKind = "folder") -> Mapping[str, str]:
        """The workspace template's instance on the folder or file, without Box's ``$`` keys (empty when none)."""
        instance = self.client.get_metadata(item_id, kind="files" if kind == "file" else "folders") or {}
        return {key: str(value) for key, value in instance.items() if not key.startswith("$") and value is not None}

    def files(self, folder_id: str) -> list[BoxItem]:
        """The folder's items that are files."""
        return [item for item in self.client.items(folder_id) if item.type == "file"]

    def folders(self, folder_id: str) -> list[BoxItem]:
        """The folder's items that are folders."""
        return [item for item in self.client.items(folder_id) if item.type == "folder"]

    def grant(self, item_id: str, group: str, role: Role) -> None:
        """A group collaboration as ``viewer`` (read) or ``editor`` (write)."""
        self.client.grant(item_id, group, role)

    def revoke(self, item_id: str, group: str) -> int:
        """Every collaboration of the group on the folder removed."""
        return self.client.revoke(item_id, group)

    def group_grants(self, item_id: str) -> Mapping[str, Role]:
        """The folder's own group collaborations: viewer (and previewer) as read, any other role as write."""
        grants: dict[str, Role] = {}
        for collaboration in self.client.collaborations(item_id):
            grantee = collaboration.accessible_by
            if grantee is None or grantee.type != "group" or not grantee.name:
                continue
            role = _ROLES.get(collaboration.role, "write")
            grants[grantee.name] = "write" if grants.get(grantee.name) == "write" else role
        return grants

    def apply_retention(self, item_id: str, policy: str, *, kind: ItemKind = "folder") -> None:
        """The policy assigned to the folder (``RetentionPolicyNotFound``, a ``RetentionNotPublished``, when the
        enterprise has none by that name). A file is retained under its folder's policies: its folder must be under
        ``policy`` already (``RetentionNotPublished`` when it is not; nothing is assigned)."""
        if kind == "folder":
            self.client.apply_retention(item_id, policy)
            return
        file = self.client.get_file(item_id)
        if file.parent is None or not self.has_retention(file.parent.id, policy):
            raise RetentionNotPublished(f"box: the folder of file {item_id} is not under the retention policy "
                                        f"{policy!r}")

    def has_retention(self, item_id: str, policy: str) -> bool:
        """Whether the policy called ``policy`` is assigned to the folder (False when there is no such policy)."""
        try:
            found = self.client.find_retention_policy(policy)
        except RetentionPolicyNotFound:
            return False
        return any(a.assigned_to is not None and a.assigned_to.id == item_id
                   for a in self.client.retention_assignments(found.id))

    def published_retention(self, *, refresh: bool = False) -> frozenset[str] | None:
        """The names of the enterprise's retention policies (read once; again on ``refresh``)."""
        if self._published is None or refresh:
            self._published = frozenset(p.policy_name for p in self.client.retention_policies()
                                        if p.status in (None, "active"))
        return self._published

    def retention_of(self, folder_id: str) -> list[str]:
        """The names of the retention policies assigned to the folder (every policy's assignments read)."""
        return self.retention_index().get(folder_id, [])

    def retention_index(self) -> dict[str, list[str]]:
        """Folder id -> the names of the retention policies assigned to it, for every folder with one: each policy's
        assignments read once (Box lists assignments per policy only)."""
        index: dict[str, list[str]] = {}
        for policy in self.client.retention_policies():
            for assignment in self.client.retention_assignments(policy.id):
                if assignment.assigned_to is not None and assignment.assigned_to.id:
                    index.setdefault(assignment.assigned_to.id, []).append(policy.policy_name)
        return {folder: sorted(names) for folder, names in index.items()}

    def document(self, file_id: str) -> DocumentView | None:
        """The file's workspace-template instance as the document's fields, its folder's policy as its label.

        The document is dated when it is read: Box does not move a file's ``modified_at`` when its metadata changes
        (and gives its times to the second), so the file's time cannot order a state set after another one (in
        review again after approved); the state read now is the state as of now. What is news stays the file's
        etag with the instance's ``$version``."""
        try:
            file = self.client.get_file(file_id)
        except BoxNotFound:
            return None
        if file.item_status != "active":
            return None
        instance = self.client.get_metadata(file_id, kind="files") or {}
        fields = {key: value for key, value in instance.items() if not key.startswith("$")}
        label = None
        if fields.get("DocumentClass") and file.parent is not None:
            names = self.retention_of(file.parent.id)
            label = RetentionLabel(name=names[0]) if names else None
        item = DriveItem.model_validate({
            "id": file.id, "name": file.name, "eTag": f"{file.etag}.{instance.get('$version', '-')}",
            "webUrl": self.web_url(file), "file": {},
            "lastModifiedDateTime": datetime.now(UTC).isoformat()})
        return DocumentView(self.name, item, fields, label)

    def documents(self, root: str) -> Iterator[DocumentView]:
        """:func:`connectors.platform.documents_below`."""
        return documents_below(self, root)

    def upload(self, folder_id: str, name: str, content: bytes) -> BoxFile:
        """:meth:`BoxClient.upload`."""
        return self.client.upload(folder_id, name, content)

    def download(self, file_id: str) -> bytes:
        """:meth:`BoxClient.download`."""
        return self.client.download(file_id)

    def delete(self, file_id: str) -> None:
        """:meth:`BoxClient.delete_file` (to the trash)."""
        self.client.delete_file(file_id)

    def changes(self, cursor: str | None) -> ChangePage:
        """:meth:`BoxClient.changes`."""
        return self.client.changes(cursor)

    def path_of(self, item_id: str, kind: ItemKind = "folder") -> tuple[tuple[str, str], ...] | None:
        """:meth:`BoxClient.path_of`."""
        return self.client.path_of(item_id, kind)

    def subscribe(self, folder_id: str, address: str) -> str:
        """:meth:`BoxClient.subscribe`."""
        return self.client.subscribe(folder_id, address)

    def unsubscribe(self, subscription_id: str) -> None:
        """:meth:`BoxClient.unsubscribe`."""
        self.client.unsubscribe(subscription_id)
