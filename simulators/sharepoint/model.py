"""The Graph simulator's records: driveItems (folders and files), permissions, groups, subscriptions, errors.

Plain data with their Graph JSON shapes; :mod:`simulators.sharepoint.state` holds them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulators.kit.errors import SimError

#: Characters SharePoint refuses in a file or folder name.
INVALID_NAME_CHARS = frozenset('"*:<>?/\\|')
#: Namespace of the simulated directory's group ids (stable across runs).
_GROUP_NAMESPACE = uuid.UUID("5f0c3c51-6a3e-4d0e-9f61-6a1f3b2f1c10")

Json = dict[str, Any]
NotifySink = Callable[[str, Json], None]


class GraphError(SimError):
    """A Graph error answer: HTTP status, Graph error code and message (and an inner code, extra headers)."""

    def __init__(self, status: int, code: str, message: str, *, inner_code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message, headers=headers)
        self.inner_code = inner_code


def now() -> datetime:
    """The current instant, UTC."""
    return datetime.now(UTC)


def iso(instant: datetime) -> str:
    """Graph's timestamp format (UTC, ``Z``)."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    """An opaque driveItem-like id."""
    return "01" + uuid.uuid4().hex.upper()[:32]


@dataclass(frozen=True)
class Group:
    """A security group of the simulated directory."""

    name: str
    id: str
    email: str

    @classmethod
    def named(cls, name: str, domain: str) -> Group:
        """The group ``name`` with an id and mail address derived from it."""
        return cls(name=name, id=str(uuid.uuid5(_GROUP_NAMESPACE, name)), email=f"{name.lower()}@{domain}")

    def matches(self, recipient: Json) -> bool:
        """Whether a ``driveRecipient`` (alias, email or objectId) names this group."""
        alias, email, object_id = recipient.get("alias"), recipient.get("email"), recipient.get("objectId")
        return ((isinstance(alias, str) and alias.casefold() == self.name.casefold())
                or (isinstance(email, str) and email.casefold() == self.email.casefold())
                or (isinstance(object_id, str) and object_id.casefold() == self.id.casefold()))

    def identity(self) -> Json:
        """The group as a Graph identity."""
        return {"id": self.id, "displayName": self.name, "email": self.email}


@dataclass
class Permission:
    """One granted role set of one group on one item."""

    id: str
    group: Group
    roles: list[str]
    sign_in_required: bool

    def to_json(self) -> Json:
        """The Graph ``permission`` resource."""
        return {"id": self.id, "roles": list(self.roles), "grantedToV2": {"group": self.group.identity()},
                "grantedToIdentitiesV2": [{"group": self.group.identity()}],
                "invitation": {"email": self.group.email, "signInRequired": self.sign_in_required}}


@dataclass
class Item:
    """A folder (or a drive's root), or a file when ``content`` is set; a tombstone once ``deleted``."""

    id: str
    drive_id: str
    name: str
    parent_id: str | None
    created: datetime
    modified: datetime
    list_item_id: str
    version: int = 1
    permissions: dict[str, Permission] = field(default_factory=dict)
    label: Json | None = None
    fields: Json = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)  # casefolded name -> item id
    content: bytes | None = None
    mime_type: str | None = None
    #: Position in the drive's change sequence of the item's latest change (what delta orders by).
    seq: int = 0
    deleted: bool = False

    @property
    def etag(self) -> str:
        """Graph-style eTag: the item id in braces and a version."""
        return f'"{{{self.id}}},{self.version}"'

    @property
    def is_file(self) -> bool:
        """Whether the item is a file (it has content, possibly empty)."""
        return self.content is not None


@dataclass
class Subscription:
    """A change-notification subscription on a drive's root or on one folder's subtree."""

    id: str
    resource: str
    drive_id: str
    item_id: str
    change_type: str
    notification_url: str
    client_state: str | None
    expiration: datetime

    def to_json(self) -> Json:
        """The Graph ``subscription`` resource."""
        return {"id": self.id, "resource": self.resource, "changeType": self.change_type,
                "notificationUrl": self.notification_url, "clientState": self.client_state,
                "expirationDateTime": iso(self.expiration), "applicationId": None, "creatorId": None,
                "latestSupportedTlsVersion": "v1_2"}


def check_name(name: Any) -> str:
    """The folder or file name, or ``GraphError`` 400 when SharePoint would refuse it."""
    if not isinstance(name, str) or not name or name != name.strip() or name.endswith(".") \
            or any(c in INVALID_NAME_CHARS for c in name) or name in {".", ".."}:
        raise GraphError(400, "invalidRequest", f"invalid name {name!r}")
    return name
