"""The Graph simulator's drive tree: drives, folders and files, and the change sequence behind ``delta``.

Pure and thread-safe (one lock); no HTTP here. Operations raise :class:`GraphError`, which the app
turns into Graph's ``{"error": {"code", "message"}}`` body. Names are unique per folder and compared
case-insensitively, as in SharePoint. Every change to an item bumps its ``eTag`` and is handed to
:meth:`DriveTree._changed` (:class:`~simulators.sharepoint.state.GraphState` notifies its subscriptions).

Change sequence: each drive numbers its changes 1, 2, 3... Creating, uploading, deleting, and every
change of fields, label or permissions gives the item the next number (so does a folder whose
children were added or removed). ``delta`` lists the items whose number is past the caller's token,
each once in its current state, in number order; deleted items stay behind as tombstones so delta
can report them. Each drive keeps its changes in a log ordered by number, so a read costs what changed
since its token, not what the drive holds (as on SharePoint); a folder's size is kept up to date the same
way. Tokens are opaque: URL-safe base64 of ``[drive, epoch, position]``, where the epoch changes on every
reset, so any token from before a reset (or of another drive, or made up) is answered 410
``resyncRequired``. Tombstones are kept for the life of the state.

Deliberate simplifications: no version history (only the current content), a file's ``mimeType``
comes from the upload's ``Content-Type`` (from the extension when that is missing or
``application/octet-stream``), and deleting a folder deletes its subtree at once.

400 lines on purpose: one drive's items, their tree, versions and change log under one lock.
"""

from __future__ import annotations

import base64
import bisect
import json
import mimetypes
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from simulators.sharepoint.model import GraphError, Item, Json, check_name, iso, new_id, now

#: The delta token that means "from now on".
_LATEST = "latest"


class DriveTree:
    """Every drive and item of one simulator, behind one lock."""

    def __init__(self, *, drives: Iterable[str], web_base: str) -> None:
        self._lock = threading.RLock()
        self._drive_ids = tuple(drives)
        self._web_base = web_base.rstrip("/")
        self.reset()

    def reset(self) -> None:
        """Forget every item and counter; recreate the drives' roots."""
        with self._lock:
            self.items: dict[str, Item] = {}
            self.roots: dict[str, str] = {}
            self.creates: Counter[str] = Counter()
            self.conflicts: Counter[str] = Counter()
            self.uploads: Counter[str] = Counter()
            self.deletes: Counter[str] = Counter()
            self.tombstones: dict[str, Item] = {}
            self._list_ids = 0
            self._seqs: dict[str, int] = {}
            #: Per drive, (number, item) for every change in number order; an entry whose item changed
            #: again since (its ``seq`` moved on) is passed over.
            self._log: dict[str, list[tuple[int, Item]]] = {}
            self._epoch = uuid.uuid4().hex[:12]  # every token from before a reset becomes invalid
            for drive_id in self._drive_ids:
                self._seqs[drive_id] = 0
                self._log[drive_id] = []
                root = self._new_item(drive_id, "root", None)
                self.roots[drive_id] = root.id

    # -- lookups -------------------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The lock every read and change of the tree holds."""
        return self._lock

    def _new_item(self, drive_id: str, name: str, parent_id: str | None) -> Item:
        return self.new_item(drive_id, name, parent_id, stamp=now())

    def new_item(self, drive_id: str, name: str, parent_id: str | None, *, stamp: datetime, log: bool = True) -> Item:
        """A new item with the next list-item id (``log=False``: its change is logged later, by :meth:`log_change`);
        the caller holds the lock and links it to its parent."""
        self._list_ids += 1
        item = Item(id=new_id(), drive_id=drive_id, name=name, parent_id=parent_id, created=stamp,
                    modified=stamp, list_item_id=str(self._list_ids))
        self.items[item.id] = item
        if log:
            self._bump(item)
        return item

    def log_change(self, item: Item) -> None:
        """Give a changed item the drive's next change number (what ``delta`` orders by)."""
        with self._lock:
            self._bump(item)

    def _bump(self, item: Item) -> None:
        """Give the item the drive's next change number."""
        self._seqs[item.drive_id] += 1
        item.seq = self._seqs[item.drive_id]
        self._log[item.drive_id].append((item.seq, item))

    def _root(self, drive_id: str) -> Item:
        root_id = self.roots.get(drive_id)
        if root_id is None:
            raise GraphError(404, "itemNotFound", f"drive {drive_id!r} does not exist")
        return self.items[root_id]

    def item(self, drive_id: str, item_id: str) -> Item:
        """The item by id (``root`` names the drive's root), else 404 ``itemNotFound``."""
        with self._lock:
            root = self._root(drive_id)
            if item_id == "root":
                return root
            item = self.items.get(item_id)
            if item is None or item.drive_id != drive_id:
                raise GraphError(404, "itemNotFound", "The resource could not be found.")
            return item

    def by_path(self, drive_id: str, path: str, *, under: str = "root") -> Item:
        """The item at ``path`` below the drive's root (or the item ``under``), case-insensitive, else 404."""
        with self._lock:
            item = self.item(drive_id, under)
            for segment in (s for s in path.split("/") if s):
                child_id = item.children.get(segment.casefold())
                if child_id is None:
                    raise GraphError(404, "itemNotFound", "The resource could not be found.")
                item = self.items[child_id]
            return item

    def path_of(self, item: Item) -> str:
        """The item's path below its drive's root, without a leading slash (``""`` for the root)."""
        names: list[str] = []
        while item.parent_id is not None:
            names.append(item.name)
            item = self.items[item.parent_id]
        return "/".join(reversed(names))

    def _is_within(self, item: Item, ancestor_id: str) -> bool:
        current: Item | None = item
        while current is not None:
            if current.id == ancestor_id:
                return True
            current = self.items.get(current.parent_id) if current.parent_id else None
        return False

    def web_url(self, drive_id: str, path: str) -> str:
        """``https://<host>/sites/<site>/<drive>/<path>``, percent-encoded."""
        base = f"{self._web_base}/{quote(drive_id, safe='')}"
        return f"{base}/{quote(path, safe='/')}" if path else base

    # -- driveItems ---------------------------------------------------------------------------

    def size_of(self, item: Item) -> int:
        """A file's byte count; a folder's is the total of the files below it, as in Graph."""
        return len(item.content) if item.content is not None else item.below

    def _grow(self, parent_id: str | None, by: int) -> None:
        """Add ``by`` bytes to the size of the folder ``parent_id`` and of every folder above it."""
        while parent_id is not None and by:
            folder = self.items[parent_id]
            folder.below += by
            parent_id = folder.parent_id

    def to_json(self, item: Item) -> Json:
        """The Graph ``driveItem`` resource: a ``folder`` facet, or a ``file`` facet with its ``mimeType``."""
        with self._lock:
            path = self.path_of(item)
            body: Json = {
                "id": item.id, "name": item.name, "eTag": item.etag, "cTag": item.etag,
                "createdDateTime": iso(item.created), "lastModifiedDateTime": iso(item.modified),
                "webUrl": self.web_url(item.drive_id, path), "size": self.size_of(item),
            }
            if item.is_file:
                body["file"] = {"mimeType": item.mime_type}
            else:
                body["folder"] = {"childCount": len(item.children)}
            if item.parent_id is None:
                body["root"] = {}
                body["parentReference"] = {"driveId": item.drive_id, "driveType": "documentLibrary"}
            else:
                parent_path = path.rpartition("/")[0]
                body["parentReference"] = {
                    "driveId": item.drive_id, "driveType": "documentLibrary", "id": item.parent_id,
                    "path": f"/drives/{item.drive_id}/root:" + (f"/{parent_path}" if parent_path else ""),
                }
            return body

    def children_page(self, drive_id: str, item_id: str, *, skip: int, top: int, descending: bool = False
                      ) -> tuple[list[Item], bool]:
        """One page of the item's children by name (``descending``: Z to A), and whether more follow. The order
        is kept per folder until its children change, so paging a large folder sorts it once."""
        with self._lock:
            parent = self.item(drive_id, item_id)
            if parent.ordered is None:
                parent.ordered = sorted(parent.children.values(), key=lambda i: self.items[i].name.casefold())
            ordered = parent.ordered
            if descending:
                end = max(len(ordered) - skip, 0)
                chosen = ordered[max(end - top, 0):end][::-1]
            else:
                chosen = ordered[skip:skip + top]
            return [self.items[i] for i in chosen], skip + top < len(ordered)

    def create_folder(self, drive_id: str, parent_id: str, name: Any, behavior: str) -> tuple[Item, bool]:
        """Create ``name`` under the parent; returns the item and whether it is new.

        ``behavior``: ``fail`` (409 ``nameAlreadyExists``), ``replace`` (the existing folder is kept
        and returned) or ``rename`` (``name 1``, ``name 2``...).
        """
        if behavior not in {"fail", "replace", "rename"}:
            raise GraphError(400, "invalidRequest", f"unknown conflictBehavior {behavior!r}")
        name = check_name(name)
        with self._lock:
            parent = self._folder(self.item(drive_id, parent_id))
            existing = parent.children.get(name.casefold())
            if existing is not None:
                key = self._key(drive_id, self.path_of(parent), self.items[existing].name)
                if behavior == "fail":
                    self.conflicts[key] += 1
                    raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
                if behavior == "replace":
                    return self.items[existing], False
                name = next(f"{name} {n}" for n in range(1, 10_000)
                            if f"{name} {n}".casefold() not in parent.children)
            item = self._new_item(drive_id, name, parent.id)
            parent.children[name.casefold()] = item.id
            parent.ordered = None
            self.creates[self._key(drive_id, self.path_of(parent), name)] += 1
            self._touch(parent, notify=False)
            self._changed(item)
            return item, True

    @staticmethod
    def _key(drive_id: str, parent_path: str, name: str) -> str:
        return f"{drive_id}/{parent_path}/{name}" if parent_path else f"{drive_id}/{name}"

    @staticmethod
    def _folder(item: Item) -> Item:
        if item.is_file:
            raise GraphError(400, "invalidRequest", f"{item.name!r} is a file and cannot contain items")
        return item

    def _touch(self, item: Item, *, notify: bool = True) -> None:
        item.version += 1
        item.modified = now()
        self._bump(item)
        if notify:
            self._changed(item)

    # -- files --------------------------------------------------------------------------------

    @staticmethod
    def _media_type(content_type: str | None, name: str) -> str:
        media = (content_type or "").split(";")[0].strip().lower()
        if media and media != "application/octet-stream":
            return media
        return mimetypes.guess_type(name)[0] or "application/octet-stream"

    def upload(self, drive_id: str, parent_id: str, path: str, content: bytes, content_type: str | None,
               behavior: str = "replace") -> tuple[Item, bool]:
        """Store a file at ``path`` below the parent (its folders must exist); returns it and whether it is new.

        ``behavior``: ``replace`` (the default of a content PUT: the existing file gets the new content,
        keeping its id), ``fail`` (409 ``nameAlreadyExists``) or ``rename`` (``name 1.ext``...). A
        folder of that name is never replaced (409).
        """
        if behavior not in {"fail", "replace", "rename"}:
            raise GraphError(400, "invalidRequest", f"unknown conflictBehavior {behavior!r}")
        folder_path, _, name = path.strip("/").rpartition("/")
        name = check_name(name)
        with self._lock:
            parent = self._folder(self.by_path(drive_id, folder_path, under=parent_id))
            parent_path = self.path_of(parent)
            existing_id = parent.children.get(name.casefold())
            if existing_id is not None:
                existing = self.items[existing_id]
                if behavior == "fail" or (behavior == "replace" and not existing.is_file):
                    self.conflicts[self._key(drive_id, parent_path, existing.name)] += 1
                    raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
                if behavior == "replace":
                    self._store(existing, content, content_type)
                    self._touch(existing)
                    return existing, False
                stem, _, ext = name.rpartition(".")
                name = next(candidate for n in range(1, 10_000)
                            if (candidate := f"{stem} {n}.{ext}" if stem else f"{name} {n}").casefold()
                            not in parent.children)
            item = self._new_item(drive_id, name, parent.id)
            parent.children[name.casefold()] = item.id
            parent.ordered = None
            self._store(item, content, content_type)
            self._touch(parent, notify=False)
            self._changed(item)
            return item, True

    def _store(self, item: Item, content: bytes, content_type: str | None) -> None:
        self._grow(item.parent_id, len(content) - len(item.content or b""))
        item.content = bytes(content)
        item.mime_type = self._media_type(content_type, item.name)
        self.uploads[f"{item.drive_id}/{self.path_of(item)}"] += 1

    def replace_content(self, drive_id: str, item_id: str, content: bytes, content_type: str | None) -> Item:
        """New content for an existing file (same id, next version); a folder is 400."""
        with self._lock:
            item = self.item(drive_id, item_id)
            if not item.is_file:
                raise GraphError(400, "invalidRequest", "only a file has content")
            self._store(item, content, content_type)
            self._touch(item)
            return item

    def content_of(self, drive_id: str, item_id: str) -> tuple[bytes, str]:
        """A file's bytes and media type; a folder is 400."""
        with self._lock:
            item = self.item(drive_id, item_id)
            if item.content is None:
                raise GraphError(400, "invalidRequest", "only a file has content; this item is a folder")
            return item.content, item.mime_type or "application/octet-stream"

    def delete(self, drive_id: str, item_id: str) -> None:
        """Delete the item, and a folder's whole subtree; they stay as tombstones for ``delta``."""
        with self._lock:
            item = self.item(drive_id, item_id)
            if item.parent_id is None:
                raise GraphError(403, "accessDenied", "the root of a drive cannot be deleted")
            self._changed(item)  # while it is still in the tree its subscriptions can be found
            parent = self.items[item.parent_id]
            self.deletes[f"{drive_id}/{self.path_of(item)}"] += 1
            self._grow(parent.id, -self.size_of(item))
            del parent.children[item.name.casefold()]
            parent.ordered = None
            for gone in self._subtree(item):
                del self.items[gone.id]
                gone.deleted = True
                self._bump(gone)
                self.tombstones[gone.id] = gone
            self._touch(parent, notify=False)

    def _subtree(self, item: Item) -> list[Item]:
        """The item and everything below it, children before their folder."""
        below = [g for child in item.children.values() for g in self._subtree(self.items[child])]
        return [*below, item]

    # -- delta --------------------------------------------------------------------------------

    def _token(self, drive_id: str, *positions: int) -> str:
        raw = json.dumps([drive_id, self._epoch, *positions], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def _read_token(self, drive_id: str, token: str, count: int) -> list[int]:
        """The ``count`` positions a token of this drive and epoch carries, else 410 ``resyncRequired``."""
        try:
            parts = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except ValueError:
            parts = None
        current = self._seqs[drive_id]
        if (not isinstance(parts, list) or len(parts) != count + 2 or parts[:2] != [drive_id, self._epoch]
                or not all(type(p) is int and 0 <= p <= current for p in parts[2:])):
            raise GraphError(410, "resyncRequired", "Resync required. The delta token is no longer valid; "
                             "enumerate the drive again without a token.",
                             inner_code="resyncChangesApplyDifferences")
        return list(parts[2:])

    def delta_page(self, drive_id: str, *, token: str | None, skip_token: str | None, top: int
                   ) -> tuple[list[Json], str | None, str | None]:
        """One page of changes: (items, skip token of the next page, or the delta token after the last).

        No token: every live item (the root excepted) and whatever is deleted while paging. A token:
        what changed after it, tombstones included. ``latest``: nothing, and the current position.
        An item changed while paging shows up again on a later page (use its last occurrence).
        """
        with self._lock:
            self._root(drive_id)
            current = self._seqs[drive_id]
            if skip_token is not None:
                cursor, since = self._read_token(drive_id, skip_token, 2)
            elif token is None:
                cursor, since = 0, current
            elif token == _LATEST:
                return [], None, self._token(drive_id, current)
            else:
                [since] = self._read_token(drive_id, token, 1)
                cursor = since
            changed = self._changes_after(drive_id, cursor, max(cursor, since), top + 1)
            page = changed[:top]
            values = [self._delta_json(i) for i in page]
            if len(changed) > top:
                return values, self._token(drive_id, page[-1].seq, since), None
            return values, None, self._token(drive_id, current)

    def _changes_after(self, drive_id: str, cursor: int, floor: int, limit: int) -> list[Item]:
        """Up to ``limit`` items in change order: live ones changed after ``cursor`` (the root excepted),
        tombstones deleted after ``floor``; each once, at its latest change."""
        log = self._log[drive_id]
        changed: list[Item] = []
        for index in range(bisect.bisect_right(log, cursor, key=lambda entry: entry[0]), len(log)):
            seq, item = log[index]
            if item.seq != seq or item.parent_id is None or (item.deleted and seq <= floor):
                continue
            changed.append(item)
            if len(changed) == limit:
                break
        return changed

    def _delta_json(self, item: Item) -> Json:
        """An item as delta shows it: no ``cTag`` and no ``parentReference.path`` (as on SharePoint);
        a tombstone has no ``name`` either, and the ``deleted`` facet."""
        reference = {"driveId": item.drive_id, "driveType": "documentLibrary", "id": item.parent_id}
        if not item.deleted:
            body = self.to_json(item)
            del body["cTag"]
            body["parentReference"] = reference
            return body
        facet: Json = ({"file": {"mimeType": item.mime_type}} if item.is_file
                       else {"folder": {"childCount": 0}})
        return {"id": item.id, "eTag": item.etag, "createdDateTime": iso(item.created),
                "lastModifiedDateTime": iso(item.modified), "parentReference": reference,
                "size": len(item.content or b""), **facet, "deleted": {"state": "deleted"}}

    def _changed(self, item: Item) -> None:
        """An item changed (created, changed or about to be deleted); nothing more happens here."""
