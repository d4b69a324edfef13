"""The Box simulator's records and how Box renders them: folders and files with numeric-string ids, ``etag``,
``sequence_id`` and ``item_status``; the service account acting for the enterprise; Box's error.

An item's ``etag`` and ``sequence_id`` start at ``"0"`` and move on together with every change Box counts
(a new version, a rename); the root folder (id ``"0"``, "All Files") has neither, as in Box.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from simulators.kit.errors import SimError

Json = dict[str, Any]
#: The id of every enterprise's root folder ("All Files").
ROOT_ID = "0"
#: The trash, as a trashed item's ``path_collection`` names it (no ``sequence_id`` or ``etag``, as in Box).
TRASH: Json = {"type": "folder", "id": "1", "sequence_id": None, "etag": None, "name": "Trash"}
#: Box stamps times in the enterprise's zone; the simulated enterprise keeps Pacific standard time.
PACIFIC = timezone(timedelta(hours=-8))
HELP_URL = "https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/"


def box_time(moment: datetime | None = None) -> str:
    """A time as Box writes it: RFC 3339 to the second with the enterprise's offset."""
    return (moment or datetime.now(UTC)).astimezone(PACIFIC).isoformat(timespec="seconds")


def request_id() -> str:
    """A Box-like ``request_id``: short lower-case alphanumerics."""
    return secrets.token_hex(8)


class BoxError(SimError):
    """A refusal in Box's shape: ``{"type": "error", "status", "code", "message", "context_info"?, "help_url",
    "request_id"}``."""

    def __init__(self, status: int, code: str, message: str, *, context_info: Json | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, code, message, headers=headers)
        self.context_info = context_info


def not_found(what: str = "Not Found") -> BoxError:
    """Box's 404 ``not_found``."""
    return BoxError(404, "not_found", what)


def bad_request(message: str, **context: Any) -> BoxError:
    """Box's 400 ``bad_request`` (``context_info`` when given)."""
    return BoxError(400, "bad_request", message, context_info=context or None)


class Ids:
    """Numeric-string ids as Box hands them out, one counter per kind so files and folders look apart."""

    def __init__(self) -> None:
        self._counters = {kind: itertools.count(start) for kind, start in _ID_STARTS.items()}

    def next(self, kind: str) -> str:
        """The next id of ``kind`` (``folder``, ``file``, ``version``, ``collaboration``, ...)."""
        return str(next(self._counters[kind]))


_ID_STARTS = {"folder": 231_000_000_001, "file": 1_184_000_000_001, "version": 1_293_000_000_001,
              "collaboration": 48_100_000_001, "group": 7_710_001, "webhook": 5_310_001, "assignment": 2_140_001,
              "policy": 1_730_001, "user": 31_870_001}


@dataclass(frozen=True)
class User:
    """The user an API call acts as: for Client Credentials with an enterprise subject, the app's service
    account (``AutomationUser_<app>_<random>@boxdevedition.com``)."""

    id: str
    name: str
    login: str

    def mini(self) -> Json:
        """The user as Box nests it (``created_by``, ``owned_by``)."""
        return {"type": "user", "id": self.id, "name": self.name, "login": self.login}


@dataclass
class Item:
    """A folder or a file of the enterprise's tree."""

    type: Literal["folder", "file"]
    id: str
    name: str
    parent_id: str | None
    owner: User
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    sequence: int = 0
    description: str = ""
    #: Files: the current content and version id.
    content: bytes = b""
    version_id: str = ""
    item_status: Literal["active", "trashed", "deleted"] = "active"
    #: When it went to the trash (itself, or a folder above it).
    trashed_at: datetime | None = None

    @property
    def sha1(self) -> str:
        """The SHA-1 of a file's content (hex, as Box shows it)."""
        return hashlib.sha1(self.content, usedforsecurity=False).hexdigest()

    def touch(self) -> None:
        """A change Box counts: ``etag`` and ``sequence_id`` move on, ``modified_at`` is now."""
        self.sequence += 1
        self.modified_at = datetime.now(UTC)

    def mini(self) -> Json:
        """The item as Box nests it (``entries``, ``parent``, ``path_collection``, conflicts)."""
        if self.id == ROOT_ID:
            return {"type": "folder", "id": ROOT_ID, "sequence_id": None, "etag": None, "name": self.name}
        mini: Json = {"type": self.type, "id": self.id, "sequence_id": str(self.sequence),
                      "etag": str(self.sequence), "name": self.name}
        if self.type == "file":
            mini["sha1"] = self.sha1
            mini["file_version"] = {"type": "file_version", "id": self.version_id, "sha1": self.sha1}
        return mini


def full(item: Item, items: Mapping[str, Item], *, size: int | None = None) -> Json:
    """The item's standard fields, as ``GET /folders/{id}`` or ``GET /files/{id}`` answer them (without a
    folder's ``item_collection``); a trashed item as Box renders it from the trash: its path the trash folder, its
    ``parent`` the folder it was in, ``trashed_at`` and ``purged_at`` (the trash keeps it 30 days) set."""
    path: list[Json] = []
    parent_id = item.parent_id
    while parent_id is not None:
        parent = items[parent_id]
        path.insert(0, parent.mini())
        parent_id = parent.parent_id
    if item.trashed_at is not None:
        path = [dict(TRASH)]
    body = item.mini()
    when = {key: box_time(moment) for key, moment in (("created_at", item.created_at),
                                                        ("modified_at", item.modified_at))}
    body.update(description=item.description, size=len(item.content) if size is None else size,
                path_collection={"total_count": len(path), "entries": path}, **when,
                trashed_at=box_time(item.trashed_at) if item.trashed_at else None,
                purged_at=box_time(item.trashed_at + timedelta(days=30)) if item.trashed_at else None,
                content_created_at=when["created_at"],
                content_modified_at=when["modified_at"], created_by=item.owner.mini(), modified_by=item.owner.mini(),
                owned_by=item.owner.mini(), shared_link=None,
                parent=items[item.parent_id].mini() if item.parent_id is not None else None,
                item_status=item.item_status)
    if item.type == "folder":
        body["folder_upload_email"] = None
    if item.id == ROOT_ID:
        body.update(created_at=None, modified_at=None, content_created_at=None, content_modified_at=None)
    return body
