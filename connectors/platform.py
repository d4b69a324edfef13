"""What the patterns need from a document platform, as one Protocol: SharePoint (Microsoft Graph) and Box both
provide it, so an actor holding a :class:`DocumentPlatform` does not know which one it has.

Every write is "ensure": it states the wanted end (a folder exists, a group holds exactly one role, a folder
carries a policy, a folder's metadata has these values), so a repeat, or a retry after a lost answer, is
harmless. Items are addressed by id once found; :meth:`DocumentPlatform.ensure_folder` turns a workspace path
into its folder. Roles are the hub's own (``read``, ``write``); each platform maps them to its own (Graph
``read``/``write``, Box ``viewer``/``editor``).

How the two clients provide it (the Graph methods an adapter calls; Box's client implements it directly)::

    DocumentPlatform          GraphClient (connectors.sharepoint.client)       BoxClient (connectors.box.client)
    ensure_folder(path)       ensure_folder(path)                               folders created segment by segment,
                                                                                409 item_name_in_use read as "exists"
    set_metadata(id, values)  ensure_columns(keys) + ensure_fields(id, values)  metadata template + instance
                                                                                (JSON Patch of what differs)
    grant(id, group, role)    ensure_grant(id, group, role)                     a group collaboration (viewer/editor)
    revoke(id, group)         revoke_grant(id, group)                           its collaborations removed
    apply_retention(id, name) ensure_retention_label(id, name)                  a retention policy assignment (a
                                                                                file: its folder's policy checked)
    upload(folder, name, b)   upload_into(folder_id, name, b)                   upload, chunked above the threshold
    download(id)              download(id)                                      download (302 followed)
    delete(id)                delete_item(id)                                   the file trashed
    changes(cursor)           delta(token) (an expired token: from the start)   the event stream (changes)
    subscribe(folder, url)    create_subscription(drive root, url, ...)         a webhook V2 on the folder
    unsubscribe(id)           delete_subscription(id)                           the webhook deleted
    find_folder(path)         get_by_path(path)                                 the path walked name by name
    ensure_subfolder(p, n)    ensure_child_folder(parent, name, path)           create_folder(parent, name)
    web_url(item)             the item's webUrl                                 https://app.box.com/folder/<id>
    group_grants(id)          grants(id), each group_grant()                    the folder's group collaborations
    metadata(id)              fields(id)                                        the template's instance
    has_retention(id, name)   retention_label(id).name                          the policy's folder assignments
    document(id)              fields(id) + retention_label(id)                  the file's instance, its folder's policy
    documents(root)           children(id) walked, each file's document         find_folder, folders, files, document
    published_retention()     published_labels()                                the enterprise's retention policies

GraphClient provides it through :class:`connectors.sharepoint.platform.GraphPlatform`, BoxClient through
:class:`connectors.box.platform.BoxPlatform`; :class:`Platforms` holds them by name and gives an actor the one
the policy chooses for a project.

Failures follow the hub's error tree: ``UpstreamUnavailable`` (retryable) and ``UpstreamRejected`` (permanent)
and their platform subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from hub.errors import ConfigurationError, UpstreamRejected

if TYPE_CHECKING:
    from connectors.sharepoint.documents import DocumentView

__all__ = ["ChangePage", "ChangedItem", "DocumentPlatform", "ItemGone", "ItemKind", "PlatformItem", "Platforms",
           "RetentionNotPublished", "RetentionRefused", "Role", "changes_key", "documents_below"]

#: The hub's roles on a workspace: read, or read and write.
Role = Literal["read", "write"]
#: What an item is (Box addresses a folder's and a file's metadata differently; SharePoint does not care).
ItemKind = Literal["folder", "file"]


@runtime_checkable
class PlatformItem(Protocol):
    """A folder or file of a platform, as the patterns use it: its id and its name."""

    @property
    def id(self) -> str:
        """The platform's id of the item."""
        ...

    @property
    def name(self) -> str:
        """The item's name in its folder."""
        ...


@dataclass(frozen=True)
class ChangedItem:
    """An item a change was about (the platform is asked for its current state)."""

    id: str
    kind: Literal["folder", "file"]
    name: str = ""
    #: The platform's name for the change (``ITEM_UPLOAD``, or ``updated`` for Graph).
    change: str = ""
    deleted: bool = False
    #: When the item last changed, as the platform tells it with the change (None: it does not).
    modified: datetime | None = None
    #: The folders above it, top first (Box: from its All Files folder ``0``), as (id, name), when the change
    #: says where it is; None when it does not (a trashed item: Box shows its path as the trash).
    parents: tuple[tuple[str, str], ...] | None = None
    #: The id of the folder it is in (or was in, before the trash), when the change says.
    parent_id: str | None = None


@dataclass(frozen=True)
class ChangePage:
    """The changes since a cursor, and the cursor to read from next time."""

    items: Sequence[ChangedItem]
    cursor: str


class ItemGone(UpstreamRejected):
    """The platform has no item of that id (or no longer: deleted since it was named)."""


class RetentionNotPublished(UpstreamRejected):
    """The platform cannot put the item under a retention label or policy of that name (SharePoint: the tenant
    does not publish the label; Box: the enterprise has no such policy, or a file's folder is not under it)."""


class RetentionRefused(UpstreamRejected):
    """The platform keeps the item under a retention it will not let the hub replace with the one asked for (Box:
    a policy at least as long is assigned to the folder; retention is never shortened there by a new policy)."""


class DocumentPlatform(Protocol):
    """A document platform holding the workspaces (SharePoint through Graph, or Box)."""

    @property
    def name(self) -> str:
        """The platform's name (``sharepoint``, ``box``): the crosswalk's system of its workspace ids."""
        ...

    @property
    def location(self) -> str | None:
        """Where on the platform the workspaces are (SharePoint: the library's drive id; Box: None)."""
        ...

    @property
    def retention_by_folder(self) -> bool:
        """Whether a file is kept under its folder's retention (Box: policies are assigned to folders) rather than a
        label of its own (SharePoint): a folder's new retention then changes its files' without a file event."""
        ...

    def find_folder(self, path: str) -> PlatformItem | None:
        """The folder at ``path`` below the workspaces' root, or None when it does not exist."""
        ...

    def ensure_subfolder(self, parent_id: str, name: str, path: str) -> PlatformItem:
        """The folder ``name`` in the folder ``parent_id`` (whose full path ``path`` names it), made when missing."""
        ...

    def web_url(self, item: PlatformItem) -> str:
        """The address a person opens the item at."""
        ...

    def group_grants(self, item_id: str) -> Mapping[str, Role]:
        """The groups granted on the item itself (not inherited), each with its role."""
        ...

    def metadata(self, item_id: str, *, kind: ItemKind = "folder") -> Mapping[str, str]:
        """The item's metadata values by key (platform keys such as ``@odata.etag`` may be among them)."""
        ...

    def files(self, folder_id: str) -> Sequence[PlatformItem]:
        """The files directly in the folder."""
        ...

    def folders(self, folder_id: str) -> Sequence[PlatformItem]:
        """The folders directly in the folder."""
        ...

    def has_retention(self, item_id: str, policy: str) -> bool:
        """Whether the item is under the retention policy or label named ``policy``."""
        ...

    def published_retention(self, *, refresh: bool = False) -> frozenset[str] | None:
        """The retention policies or labels the platform can apply (None: it cannot tell); ``refresh`` reads them
        again."""
        ...

    def document(self, file_id: str) -> DocumentView | None:
        """A file as the hub reads a document (its metadata by the document columns' names, its retention), read
        now; None when it is gone. The view's item is in SharePoint's shape (``DriveItem``), which both fill."""
        ...

    def documents(self, root: str) -> Iterator[DocumentView]:
        """Every hub document (classified file) below the folder at ``root``; none when it is missing."""
        ...

    def ensure_folder(self, path: str) -> PlatformItem:
        """The folder at ``path`` below the workspaces' root (``ACME/Contracts``), made with any folder
        missing on the way; safe to repeat."""
        ...

    def set_metadata(self, item_id: str, values: Mapping[str, str], *, kind: ItemKind = "folder"
                     ) -> Mapping[str, Any]:
        """Leave the item's metadata with ``values`` (other keys untouched); returns the item's metadata."""
        ...

    def grant(self, item_id: str, group: str, role: Role) -> None:
        """Leave the group (by name) with exactly ``role`` on the item."""
        ...

    def revoke(self, item_id: str, group: str) -> int:
        """Take every direct grant of the group on the item away; returns how many there were."""
        ...

    def apply_retention(self, item_id: str, policy: str, *, kind: ItemKind = "folder") -> None:
        """Leave the item under the retention policy or label named ``policy``; :class:`RetentionNotPublished` when
        the platform cannot."""
        ...

    def upload(self, folder_id: str, name: str, content: bytes) -> PlatformItem:
        """Store ``content`` as the file ``name`` in the folder, replacing the content of a file of that name."""
        ...

    def download(self, file_id: str) -> bytes:
        """A file's content."""
        ...

    def delete(self, file_id: str) -> None:
        """Delete a file (one already gone is fine)."""
        ...

    def changes(self, cursor: str | None) -> ChangePage:
        """What changed since ``cursor`` (None: from the start; a cursor the platform no longer takes: from the
        start too), with the next cursor."""
        ...

    def subscribe(self, folder_id: str, address: str) -> str:
        """Have the platform notify ``address`` of changes in the folder; returns the subscription's id."""
        ...

    def unsubscribe(self, subscription_id: str) -> None:
        """Stop a subscription (one already gone is fine)."""
        ...


class Platforms:
    """The document platforms of the hub, by name, and the choice of one for a project (the policy's)."""

    def __init__(self, platforms: Sequence[DocumentPlatform],
                 choose: Callable[[Mapping[str, str]], str] | None = None) -> None:
        if not platforms:
            raise ConfigurationError("at least one document platform is needed")
        self._by_name = {platform.name: platform for platform in platforms}
        self._default = platforms[0].name
        self._choose = choose

    def for_project(self, values: Mapping[str, str]) -> DocumentPlatform:
        """The platform the policy chooses for a project (``values``: its fields by name)."""
        return self.named(self._choose(values) if self._choose is not None else self._default)

    def named(self, name: str) -> DocumentPlatform:
        """The platform called ``name``; ConfigurationError when the hub has none of that name."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigurationError(f"no document platform {name!r} is configured "
                                     f"(configured: {', '.join(sorted(self._by_name))})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[DocumentPlatform]:
        return iter(self._by_name.values())

    @property
    def default(self) -> DocumentPlatform:
        """The first platform given (the one used when there is no choice to make)."""
        return self._by_name[self._default]


def changes_key(platform: DocumentPlatform) -> str:
    """What a reader of the platform's changes keys its cursor and its lock by: the platform's location when it has
    one (SharePoint: the drive, whose delta tokens are its own), else its name."""
    return platform.location or platform.name


def documents_below(platform: DocumentPlatform, root: str) -> Iterator[DocumentView]:
    """Every hub document (classified file) below the folder at ``root`` (depth first); none when it is missing:
    :meth:`DocumentPlatform.documents` through the Protocol's reads, for a platform with no cheaper walk."""
    folder = platform.find_folder(root)
    pending = [folder.id] if folder is not None else []
    while pending:
        current = pending.pop()
        pending += [child.id for child in platform.folders(current)]
        for file in platform.files(current):
            view = platform.document(file.id)
            if view is not None and view.classified:
                yield view
