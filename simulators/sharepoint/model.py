"""The Graph simulator's records: the site and its libraries, driveItems (folders and files), permissions,
directory and site groups, columns, subscriptions, errors.

Plain data with their Graph JSON shapes; :mod:`simulators.sharepoint.state` holds them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from simulators.kit.errors import SimError

#: Characters SharePoint refuses in a file or folder name.
INVALID_NAME_CHARS = frozenset('"*:<>?/\\|')
#: Namespace of the simulated directory's group ids (stable across runs).
_GROUP_NAMESPACE = uuid.UUID("5f0c3c51-6a3e-4d0e-9f61-6a1f3b2f1c10")
#: Namespace of the simulated site's and lists' ids (stable across runs).
_SITE_NAMESPACE = uuid.UUID("9b1d6c0e-2f4a-4d8b-8e35-0c7a5e2d4f61")

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


@lru_cache(maxsize=4096)
def iso(instant: datetime) -> str:
    """Graph's timestamp format (UTC, ``Z``); remembered, as every item read shows two (a seeded tree's alike)."""
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


@dataclass(frozen=True)
class SiteGroup:
    """A SharePoint group of the site (its Owners, Members or Visitors), with the role it holds."""

    name: str
    id: str
    role: str

    def identity(self) -> Json:
        """The group as a ``sharePointIdentity`` (``siteGroup``)."""
        return {"id": self.id, "displayName": self.name, "loginName": self.name}


@dataclass(frozen=True)
class Library:
    """A document library of the site: a list whose drive holds the files."""

    name: str
    drive_id: str
    list_id: str


@dataclass(frozen=True)
class Site:
    """The simulated SharePoint site: where it is, its id (``host,site-collection-guid,web-guid``), its
    libraries and its own groups."""

    hostname: str
    path: str
    id: str
    web_url: str
    libraries: tuple[Library, ...]
    groups: tuple[SiteGroup, ...]

    @classmethod
    def build(cls, *, web_host: str, name: str, libraries: tuple[str, ...], graph_ids: bool,
              site_groups: bool) -> Site:
        """The site ``/sites/<name>`` on ``web_host`` with its libraries (ids derived from the names)."""
        hostname = web_host.split("://", 1)[-1].strip("/")
        collection = uuid.uuid5(_SITE_NAMESPACE, f"{hostname}/sites/{name}")
        web = uuid.uuid5(collection, "web")
        made = []
        for library in libraries:
            list_id = uuid.uuid5(collection, f"list:{library.casefold()}")
            drive_id = ("b!" + base64.urlsafe_b64encode(collection.bytes + list_id.bytes).decode().rstrip("=")
                        if graph_ids else library)
            made.append(Library(name=library, drive_id=drive_id, list_id=str(list_id)))
        title = name[:1].upper() + name[1:]
        groups = (SiteGroup(f"{title} Owners", "3", "owner"), SiteGroup(f"{title} Members", "5", "write"),
                  SiteGroup(f"{title} Visitors", "4", "read")) if site_groups else ()
        return cls(hostname=hostname, path=f"sites/{name}", id=f"{hostname},{collection},{web}",
                   web_url=f"{web_host.rstrip('/')}/sites/{name}", libraries=tuple(made), groups=groups)

    def library(self, drive_id: str) -> Library | None:
        """The library whose drive this is."""
        return next((lib for lib in self.libraries if lib.drive_id == drive_id), None)

    def to_json(self) -> Json:
        """The Graph ``site`` resource."""
        return {"id": self.id, "name": self.path.rsplit("/", 1)[-1], "displayName": self.path.rsplit("/", 1)[-1],
                "webUrl": self.web_url, "siteCollection": {"hostname": self.hostname}}


@dataclass
class Permission:
    """One granted role set of one directory group (invited) or site group (the site's own) on one item."""

    id: str
    group: Group | SiteGroup
    roles: list[str]
    sign_in_required: bool

    def to_json(self, inherited_from: Json | None = None) -> Json:
        """The Graph ``permission`` resource; ``inherited_from``: the item it is inherited from."""
        body: Json
        if isinstance(self.group, SiteGroup):
            body = {"id": self.id, "roles": list(self.roles), "grantedToV2": {"siteGroup": self.group.identity()}}
        else:
            body = {"id": self.id, "roles": list(self.roles), "grantedToV2": {"group": self.group.identity()},
                    "grantedToIdentitiesV2": [{"group": self.group.identity()}],
                    "invitation": {"email": self.group.email, "signInRequired": self.sign_in_required}}
        if inherited_from is not None:
            body["inheritedFrom"] = inherited_from
        return body


@dataclass
class Column:
    """A column (``columnDefinition``) of a library's list."""

    id: str
    name: str
    definition: Json

    def to_json(self) -> Json:
        """The Graph ``columnDefinition`` resource."""
        return {"displayName": self.name, "description": "", "enforceUniqueValues": False, "hidden": False,
                "indexed": False, "readOnly": False, "required": False, "columnGroup": "Custom Columns",
                **self.definition, "id": self.id, "name": self.name}


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
    #: Whether the item takes its permissions from its parent (every new item does, until an ``invite``).
    inherits: bool = True
    permissions: dict[str, Permission] = field(default_factory=dict)
    label: Json | None = None
    fields: Json = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)  # casefolded name -> item id
    #: The children's ids by name, kept until the children change (a large folder is sorted once, not per page).
    ordered: list[str] | None = None
    content: bytes | None = None
    mime_type: str | None = None
    #: A folder's size: the bytes of every file below it (kept up to date by the drive tree).
    below: int = 0
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
