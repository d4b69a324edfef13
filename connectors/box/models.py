"""The Box resources :mod:`connectors.box.client` reads, as frozen pydantic models.

Only the fields the hub uses; unknown fields are ignored, so Box adding properties breaks nothing. Ids are
strings (Box's are numeric strings, never numbers to compute with).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BoxCollaboration", "BoxEvent", "BoxFile", "BoxFolder", "BoxGroup", "BoxItem", "BoxWebhook", "EventPage",
           "MetadataField", "MetadataTemplate", "PathCollection", "RetentionAssignment", "RetentionPolicy",
           "UploadPart", "UploadSession"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class BoxItem(_Model):
    """A folder or file as Box nests it (``entries`` of a listing, ``parent``, conflicts)."""

    type: Literal["folder", "file", "web_link"]
    id: str
    name: str = ""
    etag: str | None = None
    sequence_id: str | None = None
    sha1: str | None = None


class PathCollection(_Model):
    """The folders above an item, from the enterprise's top (``0``, All Files) down to its parent."""

    entries: tuple[BoxItem, ...] = ()


class BoxFolder(_Model):
    """A folder (``GET /folders/{id}``, or the mini form where only ``id`` and ``name`` are known)."""

    type: Literal["folder"] = "folder"
    id: str
    name: str = ""
    etag: str | None = None
    sequence_id: str | None = None
    item_status: Literal["active", "trashed", "deleted"] = "active"
    parent: BoxItem | None = None
    path_collection: PathCollection | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None


class BoxFile(_Model):
    """A file (an upload's answer, ``GET /files/{id}``)."""

    type: Literal["file"] = "file"
    id: str
    name: str = ""
    etag: str | None = None
    sequence_id: str | None = None
    sha1: str | None = None
    size: int | None = None
    item_status: Literal["active", "trashed", "deleted"] = "active"
    parent: BoxItem | None = None
    path_collection: PathCollection | None = None
    modified_at: datetime | None = None


class BoxGroup(_Model):
    """An enterprise group."""

    type: Literal["group"] = "group"
    id: str
    name: str
    group_type: str | None = None


class _Grantee(_Model):
    type: Literal["user", "group"]
    id: str | None = None
    name: str | None = None


class BoxCollaboration(_Model):
    """A user's or group's role on a folder or file."""

    id: str
    role: str
    status: str | None = None
    item: BoxItem | None = None
    accessible_by: _Grantee | None = None

    def grants_group(self, group_id: str) -> bool:
        """Whether this collaboration is the group's with id ``group_id``."""
        return self.accessible_by is not None and self.accessible_by.type == "group" \
            and self.accessible_by.id == group_id


class MetadataField(_Model):
    """A field of a metadata template."""

    type: str
    key: str
    display_name: str = Field(default="", alias="displayName")
    hidden: bool = False


class MetadataTemplate(_Model):
    """An enterprise metadata template."""

    id: str | None = None
    scope: str
    template_key: str = Field(alias="templateKey")
    display_name: str = Field(default="", alias="displayName")
    fields: tuple[MetadataField, ...] = ()

    @property
    def keys(self) -> frozenset[str]:
        """The template's field keys."""
        return frozenset(f.key for f in self.fields)


class RetentionPolicy(_Model):
    """A retention policy of the enterprise (Box Governance)."""

    id: str
    policy_name: str
    policy_type: str | None = None
    retention_length: str | None = None
    status: str | None = None


class _Assigned(_Model):
    type: str
    id: str | None = None


class RetentionAssignment(_Model):
    """A retention policy assigned to a folder (or the enterprise, or a metadata template)."""

    id: str
    retention_policy: RetentionPolicy | None = None
    assigned_to: _Assigned | None = None


class UploadSession(_Model):
    """A chunked upload session: the part size, the number of parts and the session's own URLs."""

    id: str
    part_size: int
    total_parts: int
    num_parts_processed: int = 0
    session_endpoints: dict[str, str] = {}


class UploadPart(_Model):
    """A part of an upload session, as Box acknowledged it (``sha1`` in hex)."""

    part_id: str
    offset: int
    size: int
    sha1: str


class BoxEvent(_Model):
    """An event of the ``changes`` or ``admin_logs_streaming`` stream."""

    event_id: str
    event_type: str
    created_at: datetime | None = None
    source: dict[str, Any] | None = None

    @property
    def item(self) -> BoxItem | None:
        """The folder or file the event is about: its source when that is one (the user streams), else the item an
        enterprise event's source names (``item_type``, ``item_id``), else the folder (or file) a collaboration
        event's source names (``folder_id``, ``file_id``)."""
        source = self.source or {}
        if source.get("type") in {"folder", "file"} and source.get("id"):
            return BoxItem.model_validate(source)
        if source.get("item_type") in {"folder", "file"} and source.get("item_id"):
            return BoxItem(type=source["item_type"], id=str(source["item_id"]), name=str(source.get("item_name") or ""))
        for kind in ("folder", "file"):
            if source.get(f"{kind}_id"):
                return BoxItem(type=kind, id=str(source[f"{kind}_id"]), name=str(source.get(f"{kind}_name") or ""))
        return None

    @property
    def parents(self) -> tuple[BoxItem, ...] | None:
        """The folders above the item, top first, when the source gives its ``path_collection`` (a trashed
        item's is the trash)."""
        found = (self.source or {}).get("path_collection")
        return PathCollection.model_validate(found).entries if isinstance(found, dict) else None

    @property
    def parent_id(self) -> str | None:
        """The folder the item is in (or was in, before the trash), when the source says."""
        parent = (self.source or {}).get("parent")
        return str(parent["id"]) if isinstance(parent, dict) and parent.get("id") else None


class EventPage(_Model):
    """One chunk of the event stream and the position after it."""

    chunk_size: int
    next_stream_position: str
    entries: tuple[BoxEvent, ...] = ()

    @field_validator("next_stream_position", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        """Box sends a number on user streams and a string on the enterprise's: kept as text."""
        return str(value)


class BoxWebhook(_Model):
    """A webhook V2 on a folder or file."""

    id: str
    target: dict[str, str] = {}
    address: str | None = None
    triggers: tuple[str, ...] = ()
