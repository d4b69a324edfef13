"""SharePoint as a :class:`connectors.platform.DocumentPlatform`: an adapter over :class:`GraphClient`, whose own
methods speak Graph (paths, list-item fields, retention labels, permissions) and stay what the SharePoint-only
parts of the hub (the bulk reads of reconciliation, the drive's change subscription) use.

What SharePoint asks of the patterns is kept here, so an actor holding the platform does not know it is
SharePoint: a field needs its library column first (:meth:`GraphPlatform.set_metadata` makes it); a file is
uploaded below its folder's id; the changes are the drive's ``delta``, the drive's root left out and a delta token
Graph no longer takes (410, :class:`~connectors.sharepoint.client.DeltaTokenExpired`) read again from the start;
a label the tenant does not publish is :class:`~connectors.platform.RetentionNotPublished`
(:class:`~connectors.sharepoint.client.LabelNotPublished`).

The drive's change subscription (created on the drive's root, renewed before Graph lets it expire) is Graph's own
lifecycle, kept by :mod:`actors.document_intake.subscription` on the :class:`GraphClient`; :meth:`subscribe` and
:meth:`unsubscribe` only make and end one.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.platform import ChangedItem, ChangePage, ItemKind, PlatformItem, Role
from connectors.sharepoint.client import DeltaTokenExpired, GraphClient, ItemNotFound
from connectors.sharepoint.documents import DocumentView, view_of, workspace_documents
from connectors.sharepoint.models import DriveItem
from hub.errors import ConfigurationError
from observability.logging import get_logger

__all__ = ["GraphPlatform"]
log = get_logger(__name__)


class GraphPlatform:
    """The workspaces library of a SharePoint site, through Graph."""

    name = "sharepoint"
    #: A document carries its own retention label.
    retention_by_folder = False

    def __init__(self, graph: GraphClient, *, client_state: str | None = None,
                 subscription_lifetime: timedelta = timedelta(days=2)) -> None:
        self.graph = graph
        self.client_state = client_state
        self.subscription_lifetime = subscription_lifetime

    @property
    def location(self) -> str | None:
        """The library's drive id."""
        return self.graph.drive_id

    def ensure_folder(self, path: str) -> DriveItem:
        """:meth:`GraphClient.ensure_folder`."""
        return self.graph.ensure_folder(path)

    def find_folder(self, path: str) -> DriveItem | None:
        """:meth:`GraphClient.get_by_path`."""
        return self.graph.get_by_path(path)

    def ensure_subfolder(self, parent_id: str, name: str, path: str) -> DriveItem:
        """:meth:`GraphClient.ensure_child_folder`."""
        return self.graph.ensure_child_folder(parent_id, name, path)

    def web_url(self, item: PlatformItem) -> str:
        """The item's ``webUrl`` (read when the item at hand lacks it)."""
        known = item.web_url if isinstance(item, DriveItem) else None
        return known or self.graph.get_item(item.id).web_url or ""

    def set_metadata(self, item_id: str, values: Mapping[str, str], *, kind: ItemKind = "folder"
                     ) -> Mapping[str, Any]:
        """The library's columns made when missing (SharePoint refuses a field without one), then the fields (a
        folder's or a file's alike)."""
        self.graph.ensure_columns(list(values))
        return self.graph.ensure_fields(item_id, dict(values))

    def metadata(self, item_id: str, *, kind: ItemKind = "folder") -> Mapping[str, str]:
        """The list item's fields, as text."""
        return {key: str(value) for key, value in self.graph.fields(item_id).items() if value is not None}

    def files(self, folder_id: str) -> list[DriveItem]:
        """The folder's children that are files."""
        return [child for child in self.graph.children(folder_id) if child.is_file]

    def folders(self, folder_id: str) -> list[DriveItem]:
        """The folder's children that are folders."""
        return [child for child in self.graph.children(folder_id) if child.is_folder]

    def grant(self, item_id: str, group: str, role: Role) -> None:
        """:meth:`GraphClient.ensure_grant`."""
        self.graph.ensure_grant(item_id, group, role)

    def revoke(self, item_id: str, group: str) -> int:
        """:meth:`GraphClient.revoke_grant`."""
        return self.graph.revoke_grant(item_id, group)

    def group_grants(self, item_id: str) -> Mapping[str, Role]:
        """Each group's direct grant on the item."""
        grants: dict[str, Role] = {}
        for permission in self.graph.grants(item_id):
            grant = permission.group_grant()
            if grant is not None:
                group, role = grant
                grants[group] = "write" if role == "write" else "read"
        return grants

    def apply_retention(self, item_id: str, policy: str, *, kind: ItemKind = "folder") -> None:
        """:meth:`GraphClient.ensure_retention_label` on the folder or file alike (``LabelNotPublished``, a
        ``RetentionNotPublished``, when the tenant does not publish it)."""
        self.graph.ensure_retention_label(item_id, policy)

    def has_retention(self, item_id: str, policy: str) -> bool:
        """Whether the item carries the retention label ``policy``."""
        return self.graph.retention_label(item_id).name == policy

    def published_retention(self, *, refresh: bool = False) -> frozenset[str] | None:
        """:meth:`GraphClient.published_labels`."""
        return self.graph.published_labels(refresh=refresh)

    def document(self, file_id: str) -> DocumentView | None:
        """The file's list-item fields and retention label (:func:`connectors.sharepoint.documents.view_of`)."""
        try:
            return view_of(self.graph, self.graph.get_item(file_id))
        except ItemNotFound:
            return None

    def documents(self, root: str) -> Iterator[DocumentView]:
        """:func:`connectors.sharepoint.documents.workspace_documents`: one listing per folder, each file read from
        the listing's item."""
        return workspace_documents(self.graph, root)

    def upload(self, folder_id: str, name: str, content: bytes) -> DriveItem:
        """:meth:`GraphClient.upload_into` the folder, with the content type the name implies."""
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self.graph.upload_into(folder_id, name, content, content_type=content_type)

    def download(self, file_id: str) -> bytes:
        """:meth:`GraphClient.download`."""
        return self.graph.download(file_id)

    def delete(self, file_id: str) -> None:
        """:meth:`GraphClient.delete_item`."""
        self.graph.delete_item(file_id)

    def changes(self, cursor: str | None) -> ChangePage:
        """The drive's ``delta`` since ``cursor``; a token Graph no longer takes is read again from the start (every
        item there is), said once as a warning. The drive's root (which delta lists, with no parent) is left out;
        a deleted item is a file unless Graph says it was a folder."""
        try:
            result = self.graph.delta(cursor)
        except DeltaTokenExpired:
            log.warning("delta token expired: reading the whole drive again", drive_id=self.graph.drive_id)
            result = self.graph.delta(None)
        items = [ChangedItem(id=item.id, kind="folder" if item.is_folder else "file", name=item.name,
                             change="deleted" if item.is_deleted else "updated", deleted=item.is_deleted,
                             modified=item.modified)
                 for item in result.items if item.is_deleted or _below_root(item)]
        return ChangePage(items=items, cursor=result.token)

    def subscribe(self, folder_id: str, address: str) -> str:
        """A subscription on the drive's root (the only driveItem resource SharePoint takes, whatever
        ``folder_id``), with the hub's clientState."""
        if self.client_state is None:
            raise ConfigurationError("a Graph subscription needs HUB_GRAPH_CLIENT_STATE")
        expiration = datetime.now(UTC) + self.subscription_lifetime
        return self.graph.create_subscription(f"drives/{self.graph.drive_id}/root", address, self.client_state,
                                              expiration).id

    def unsubscribe(self, subscription_id: str) -> None:
        """:meth:`GraphClient.delete_subscription`."""
        self.graph.delete_subscription(subscription_id)


def _below_root(item: DriveItem) -> bool:
    """Whether the item has a parent (the drive's root has none)."""
    return item.parent_reference is not None and item.parent_reference.id is not None
