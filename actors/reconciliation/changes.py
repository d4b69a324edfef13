"""What the document platforms changed since the cursors the last run kept: an incremental run's workspaces, each
touched in the spill (a candidate path) and named by its ERP code when the crosswalk links it.

SharePoint: Graph's delta; each changed item is read for its path, its workspace the folder at the workspace depth
below the root; a deleted item is known only by its id, which the crosswalk names if it was a workspace.

Box: its ``changes`` event stream (the hub's service account owns the workspaces, so it sees a collaboration added,
changed or removed, a metadata instance made or edited, an upload, a folder made, trashed or restored), and the
retention policies' assignments against those the last run read: Box reports no event when an assignment is
removed. A changed item's workspace is the folder at the workspace depth of its path: the path the event gives;
for a trashed item (whose path Box shows as the trash) the path of the folder it was in; else the item read again.
A trashed workspace is named by its id (the crosswalk's ``box`` link); a folder above the workspaces put in the
trash names none of them (the next full run finds them missing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from actors.reconciliation.compare import key
from actors.reconciliation.contract import ProjectLinks
from actors.reconciliation.reading import path_of
from actors.reconciliation.spill import Spill
from connectors.box.platform import BoxPlatform
from connectors.platform import ChangedItem
from connectors.sharepoint.client import GraphClient, ItemNotFound
from connectors.sharepoint.models import DriveItem

__all__ = ["BoxChanges", "SharePointChanges", "retention_moved"]

#: A path from a platform's top down to an item, as (id, name).
Path = tuple[tuple[str, str], ...]


class SharePointChanges:
    """The workspaces of the items Graph's delta listed."""

    def __init__(self, graph: GraphClient, crosswalk: ProjectLinks, spill: Spill, *, root: str, depth: int) -> None:
        self.graph, self.crosswalk, self.spill, self.depth = graph, crosswalk, spill, depth
        self.root = root.strip("/").split("/")

    def codes(self, items: Sequence[DriveItem]) -> Iterator[str]:
        """The ERP codes of the workspaces the changed items belong to (or were, for deleted ones)."""
        seen: set[str] = set()
        for item in items:
            if item.is_deleted or item.parent_reference is None:
                workspace = item.id  # only its id is left: the crosswalk says whose workspace it was
            else:
                try:
                    full = self.graph.get_item(item.id)
                except ItemNotFound:
                    continue
                parts = path_of(full)
                if parts[:len(self.root)] != self.root or len(parts) < len(self.root) + self.depth:
                    continue
                workspace = "/".join(parts[:len(self.root) + self.depth])
                if workspace in seen:
                    continue
                seen.add(workspace)
                found = self.graph.get_by_path(workspace)
                if found is None:
                    continue
                self.spill.touch(workspace)
                workspace = found.id
            code = _code(self.crosswalk, "sharepoint", workspace)
            if code:
                yield code


class BoxChanges:
    """The workspaces of the items Box's event stream listed and of the folders whose retention moved."""

    def __init__(self, box: BoxPlatform, crosswalk: ProjectLinks, spill: Spill, *, root: str, depth: int,
                 on_page: Callable[[], None]) -> None:
        self.box, self.crosswalk, self.spill, self.depth, self.on_page = box, crosswalk, spill, depth, on_page
        self.root = [key(name) for name in root.strip("/").split("/") if name]
        self._paths: dict[str, Path | None] = {}

    def codes(self, items: Sequence[ChangedItem], moved: Iterable[str]) -> Iterator[str]:
        """The ERP codes of the workspaces changed: those of ``items`` (each read as its last change says) and of
        the folders ``moved`` (ids)."""
        latest = {item.id: item for item in items}
        workspaces: dict[str, str] = {}  # id -> path ("": only the id is known)
        for item in latest.values():
            found = self._workspace(self._path(item))
            if found is not None:
                workspaces.setdefault(*found)
            elif item.deleted and item.kind == "folder":
                workspaces.setdefault(item.id, "")  # perhaps a workspace whose folder above is gone too
        for folder in moved:
            found = self._workspace(self._read(folder, "folder"))
            if found is not None:
                workspaces.setdefault(*found)
        for workspace, path in workspaces.items():
            if path:
                self.spill.touch(path)
            code = _code(self.crosswalk, "box", workspace)
            if code:
                yield code

    def _path(self, item: ChangedItem) -> Path | None:
        if item.deleted:
            above = self._read(item.parent_id, "folder") if item.parent_id else None
            return None if above is None else (*above, (item.id, item.name))
        if item.parents is not None:
            return (*item.parents, (item.id, item.name))
        return self._read(item.id, item.kind)

    def _read(self, item_id: str, kind: str) -> Path | None:
        if item_id not in self._paths:
            self._paths[item_id] = self.box.path_of(item_id, "file" if kind == "file" else "folder")
            self.on_page()
        return self._paths[item_id]

    def _workspace(self, path: Path | None) -> tuple[str, str] | None:
        """(id, path below the root folder) of the workspace on ``path``, when it goes through one."""
        ids = [item_id for item_id, _ in path or ()]
        if path is None or self.box.client.root_folder_id not in ids:
            return None
        below = path[ids.index(self.box.client.root_folder_id) + 1:]
        size = len(self.root) + self.depth
        if len(below) < size or [key(name) for _, name in below[:len(self.root)]] != self.root:
            return None
        return below[size - 1][0], "/".join(name for _, name in below[:size])


def retention_moved(before: Mapping[str, Sequence[str]], after: Mapping[str, Sequence[str]]) -> list[str]:
    """The folders whose retention policies differ between two readings of the assignments (folder -> names)."""
    return sorted(folder for folder in before.keys() | after.keys()
                  if sorted(before.get(folder, ())) != sorted(after.get(folder, ())))


def _code(crosswalk: ProjectLinks, platform: str, workspace_id: str) -> str | None:
    """The ERP code of the project whose workspace on ``platform`` has this id, if the crosswalk links one."""
    canonical = crosswalk.resolve("project", platform, workspace_id)
    return crosswalk.identities(canonical).get("erp") if canonical else None
