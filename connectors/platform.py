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
    apply_retention(id, name) ensure_retention_label(id, name)                  a retention policy assignment
    upload(folder, name, b)   upload(folder_path, name, b) (path of the id)     upload, chunked above the threshold
    download(id)              download(id)                                      download (302 followed)
    changes(cursor)           delta(token)                                      the event stream (changes)
    subscribe(folder, url)    create_subscription(drive root, url, ...)         a webhook V2 on the folder
    unsubscribe(id)           delete_subscription(id)                           the webhook deleted

Failures follow the hub's error tree: ``UpstreamUnavailable`` (retryable) and ``UpstreamRejected`` (permanent)
and their platform subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["ChangePage", "ChangedItem", "DocumentPlatform", "PlatformItem", "Role"]

#: The hub's roles on a workspace: read, or read and write.
Role = Literal["read", "write"]


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


@dataclass(frozen=True)
class ChangePage:
    """The changes since a cursor, and the cursor to read from next time."""

    items: Sequence[ChangedItem]
    cursor: str


class DocumentPlatform(Protocol):
    """A document platform holding the workspaces (SharePoint through Graph, or Box)."""

    def ensure_folder(self, path: str) -> PlatformItem:
        """The folder at ``path`` below the workspaces' root (``ACME/Contracts``), made with any folder
        missing on the way; safe to repeat."""
        ...

    def set_metadata(self, item_id: str, values: Mapping[str, str]) -> Mapping[str, Any]:
        """Leave the item's metadata with ``values`` (other keys untouched); returns the item's metadata."""
        ...

    def grant(self, item_id: str, group: str, role: Role) -> None:
        """Leave the group (by name) with exactly ``role`` on the item."""
        ...

    def revoke(self, item_id: str, group: str) -> int:
        """Take every direct grant of the group on the item away; returns how many there were."""
        ...

    def apply_retention(self, item_id: str, policy: str) -> None:
        """Leave the item under the retention policy or label named ``policy``."""
        ...

    def upload(self, folder_id: str, name: str, content: bytes) -> PlatformItem:
        """Store ``content`` as the file ``name`` in the folder, replacing the content of a file of that name."""
        ...

    def download(self, file_id: str) -> bytes:
        """A file's content."""
        ...

    def changes(self, cursor: str | None) -> ChangePage:
        """What changed since ``cursor`` (None: from the start), with the next cursor."""
        ...

    def subscribe(self, folder_id: str, address: str) -> str:
        """Have the platform notify ``address`` of changes in the folder; returns the subscription's id."""
        ...

    def unsubscribe(self, subscription_id: str) -> None:
        """Stop a subscription (one already gone is fine)."""
        ...
