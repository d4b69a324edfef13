"""The Microsoft Graph resources :mod:`connectors.sharepoint.client` reads, as frozen pydantic models.

Only the fields the hub uses; unknown fields are ignored, so Graph adding properties breaks nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ColumnDefinition",
    "DeltaResult",
    "DirectoryGroup",
    "Drive",
    "DriveItem",
    "FileFacet",
    "FolderFacet",
    "Identity",
    "IdentitySet",
    "ItemReference",
    "Permission",
    "RetentionLabel",
    "Site",
    "Subscription",
    "group_grant_of",
]


class _Model(BaseModel):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, extra="ignore", frozen=True)


class ItemReference(_Model):
    """``parentReference``: where an item sits (``delta`` leaves ``path`` out)."""

    drive_id: str | None = Field(default=None, alias="driveId")
    id: str | None = None
    path: str | None = None


class FolderFacet(_Model):
    """The ``folder`` facet: present on folders only."""

    child_count: int = Field(default=0, alias="childCount")


class FileFacet(_Model):
    """The ``file`` facet: present on files only."""

    mime_type: str | None = Field(default=None, alias="mimeType")


class RetentionLabel(_Model):
    """A Graph ``itemRetentionLabel``."""

    name: str | None = None
    is_label_applied_explicitly: bool | None = Field(default=None, alias="isLabelAppliedExplicitly")
    label_applied: datetime | None = Field(default=None, alias="labelAppliedDateTime")


class DriveItem(_Model):
    """A Graph ``driveItem`` (the subset the hub reads): a folder, a file, or (in ``delta``) a deletion.

    A deleted item from ``delta`` may come without a ``name`` (SharePoint leaves it out): it is ``""``.
    """

    id: str
    name: str = ""
    e_tag: str | None = Field(default=None, alias="eTag")
    web_url: str | None = Field(default=None, alias="webUrl")
    created: datetime | None = Field(default=None, alias="createdDateTime")
    modified: datetime | None = Field(default=None, alias="lastModifiedDateTime")
    parent_reference: ItemReference | None = Field(default=None, alias="parentReference")
    folder: FolderFacet | None = None
    file: FileFacet | None = None
    size: int | None = None
    deleted: dict[str, Any] | None = None
    #: The list item's field values, when read with ``$expand=listItem($expand=fields)`` (None otherwise).
    list_item: dict[str, Any] | None = Field(default=None, alias="listItem")
    #: The retention label, when read with ``$expand=retentionLabel`` (``name`` None: no label applied).
    retention_label: RetentionLabel | None = Field(default=None, alias="retentionLabel")

    @field_validator("list_item", mode="before")
    @classmethod
    def _fields_of(cls, value: Any) -> Any:
        """``listItem: {id, fields: {...}}`` as Graph expands it: the fields."""
        if isinstance(value, dict) and "fields" in value:
            return value["fields"]
        if isinstance(value, dict) and ("webUrl" in value or "contentType" in value):
            return None  # the list item itself, expanded without its fields
        return value

    @property
    def is_folder(self) -> bool:
        """Whether the item has the ``folder`` facet."""
        return self.folder is not None

    @property
    def is_file(self) -> bool:
        """Whether the item has the ``file`` facet."""
        return self.file is not None

    @property
    def is_deleted(self) -> bool:
        """Whether the item has the ``deleted`` facet (only ``delta`` reports deleted items)."""
        return self.deleted is not None

    @property
    def path(self) -> str | None:
        """The item's path below the drive root (``ACME/Contracts``, ``ACME/SOWs/sow.pdf``), when
        ``parentReference.path`` says; None when it does not (as in ``delta`` answers)."""
        parent = self.parent_reference.path if self.parent_reference else None
        if parent is None:
            return None if self.parent_reference and self.parent_reference.id else ""
        below = parent.partition("root:")[2].strip("/")
        return f"{below}/{self.name}" if below else self.name


class Identity(_Model):
    """A Graph ``identity``: id, display name, mail address."""

    id: str | None = None
    display_name: str | None = Field(default=None, alias="displayName")
    email: str | None = None


class IdentitySet(_Model):
    """A ``sharePointIdentitySet``: who a permission is granted to."""

    group: Identity | None = None
    site_group: Identity | None = Field(default=None, alias="siteGroup")
    user: Identity | None = None


class Permission(_Model):
    """A Graph ``permission`` on a driveItem."""

    id: str
    roles: list[str] = Field(default_factory=list)
    granted_to_v2: IdentitySet | None = Field(default=None, alias="grantedToV2")
    granted_to_identities_v2: list[IdentitySet] = Field(default_factory=list, alias="grantedToIdentitiesV2")
    inherited_from: ItemReference | None = Field(default=None, alias="inheritedFrom")

    def principals(self) -> list[Identity]:
        """Every identity the permission is granted to (groups, site groups and users), once each."""
        sets = ([self.granted_to_v2] if self.granted_to_v2 else []) + self.granted_to_identities_v2
        seen: dict[tuple[str | None, str | None, str | None], Identity] = {}
        for identity_set in sets:
            for identity in (identity_set.group, identity_set.site_group, identity_set.user):
                if identity is not None:
                    seen.setdefault((identity.id, identity.display_name, identity.email), identity)
        return list(seen.values())

    def group_grant(self) -> tuple[str, str] | None:
        """(group, role) of a direct read or write permission of one directory group, else None (inherited, a
        site group's, a user's, several principals)."""
        return group_grant_of(self.model_dump(by_alias=True, exclude_none=True))

    def grants_only(self, group: str) -> bool:
        """Whether this is a direct permission of ``group`` alone (matched by name, mail or object id)."""
        wanted = group.casefold()
        principals = self.principals()
        return self.inherited_from is None and bool(principals) and all(
            wanted in {(v or "").casefold() for v in (p.display_name, p.email, p.id)} for p in principals)


class Site(_Model):
    """A SharePoint ``site``: its id (``host,collection-guid,web-guid``) and address."""

    id: str
    name: str | None = None
    web_url: str | None = Field(default=None, alias="webUrl")


class Drive(_Model):
    """A ``drive``: for a SharePoint site, one document library, named as the library is."""

    id: str
    name: str = ""
    drive_type: str | None = Field(default=None, alias="driveType")
    web_url: str | None = Field(default=None, alias="webUrl")


class DirectoryGroup(_Model):
    """An Entra ID ``group``: the object id a grant names."""

    id: str
    display_name: str | None = Field(default=None, alias="displayName")
    mail: str | None = None


class ColumnDefinition(_Model):
    """A list's ``columnDefinition`` (its internal ``name`` is what list-item fields are keyed by)."""

    id: str | None = None
    name: str
    display_name: str | None = Field(default=None, alias="displayName")
    read_only: bool | None = Field(default=None, alias="readOnly")


class Subscription(_Model):
    """A Graph change-notification ``subscription``."""

    id: str
    resource: str
    change_type: str = Field(alias="changeType")
    notification_url: str = Field(alias="notificationUrl")
    expiration: datetime = Field(alias="expirationDateTime")
    client_state: str | None = Field(default=None, alias="clientState")


class DeltaResult(_Model):
    """What one :meth:`~connectors.sharepoint.client.GraphClient.delta` round read: the changed items, in
    Graph's order (an item may repeat: its last occurrence is its current state), and the token to
    pass next time."""

    items: list[DriveItem]
    token: str


def group_grant_of(raw: Mapping[str, Any]) -> tuple[str, str] | None:
    """:meth:`Permission.group_grant` of a permission as Graph answers it (JSON), without building the model: a
    reconciliation reads hundreds of thousands."""
    if raw.get("inheritedFrom"):
        return None
    sets = ([raw["grantedToV2"]] if raw.get("grantedToV2") else []) + list(raw.get("grantedToIdentitiesV2") or [])
    if any(s.get("siteGroup") or s.get("user") for s in sets):
        return None
    seen: dict[tuple[Any, Any, Any], Mapping[str, Any]] = {}
    for identity_set in sets:
        group = identity_set.get("group")
        if group:
            seen.setdefault((group.get("id"), group.get("displayName"), group.get("email")), group)
    roles = raw.get("roles") or []
    if len(seen) != 1 or not roles or roles[0] not in ("read", "write"):
        return None
    principal = next(iter(seen.values()))
    name = principal.get("displayName") or principal.get("email") or principal.get("id")
    return (str(name), str(roles[0])) if name else None
