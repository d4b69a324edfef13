"""Reading every workspace on the document platform in bulk: the folder tree below the workspaces' root walked
level by level, each page of workspaces with their metadata and retention label expanded, and their grants and
folders read in JSON batches (Graph's ``$batch``, 20 requests each) rather than one request per item.

Memory is bounded by one page of folders and one batch of workspaces, whatever the number of workspaces.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from actors.reconciliation.compare import WorkspaceSeen, key
from connectors.sharepoint.batch import BatchRequest, batch_error
from connectors.sharepoint.client import GraphClient
from connectors.sharepoint.models import DriveItem, group_grant_of
from hub.policy import ENGAGEMENT_TYPES, WORKSPACES_ROOT, Policy

#: A workspace folder's own page expansion: its metadata fields and its retention label.
_WORKSPACE_EXPAND = "listItem($expand=fields),retentionLabel"
#: Graph answers at most 20 requests per ``$batch``.
BATCH = 20


@dataclass(frozen=True)
class _Child:
    """A folder's child as a batch answered it (read without building a model: there are many)."""

    id: str
    path: str
    folder: bool
    label: str | None


def _child(raw: dict[str, Any], parent: str) -> _Child:
    label = raw.get("retentionLabel") or {}
    return _Child(str(raw["id"]), f"{parent}/{raw.get('name', '')}", "folder" in raw, label.get("name") or None)


@dataclass(frozen=True)
class Group:
    """The workspaces below one top-level folder (a client's, with the default layout), read together: the unit a
    run checkpoints."""

    name: str
    workspaces: list[WorkspaceSeen]


def _folder_depths(policy: Policy) -> dict[str, int]:
    """Every folder path the policy asks for inside a workspace (case-folded, relative), with its depth."""
    depths: dict[str, int] = {}
    for engagement_type in ENGAGEMENT_TYPES:
        for spec in policy.folders_for(engagement_type):
            parts = spec.path.split("/")
            for depth in range(1, len(parts) + 1):
                depths[key("/".join(parts[:depth]))] = depth
    return depths


class PlatformReader:
    """Every workspace below the root, as :class:`WorkspaceSeen`, one top-level folder at a time."""

    def __init__(self, graph: GraphClient, policy: Policy, *, root: str = WORKSPACES_ROOT, page_size: int = 1000,
                 on_page: Callable[[], None] | None = None, concurrency: int = 4) -> None:
        self.graph, self.policy, self.root = graph, policy, root.strip("/")
        self.page_size = page_size
        self.depth = len(policy.workspace.path.split("/"))
        self.folders = _folder_depths(policy)
        self.max_folder_depth = max(self.folders.values(), default=0)
        #: The policy's folders that hold more of its folders (read a level deeper).
        self.parents = frozenset(name.rsplit("/", 1)[0] for name in self.folders if "/" in name)
        self.on_page = on_page or (lambda: None)
        self.concurrency = concurrency

    def groups(self, skip: Callable[[str], bool] = lambda _: False) -> Iterator[Group]:
        """The workspaces, grouped by top-level folder, in the platform's order; ``skip(name)``: a group done by an
        earlier attempt. ``concurrency`` groups are read at once (the platform answers requests side by side), at
        most twice as many held."""
        root = self.graph.get_by_path(self.root)
        self.on_page()
        if root is None:
            return
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="reconcile-read") as pool:
            pending: deque[Future[Group]] = deque()
            for top in self._folders(root.id):
                if skip(top.name):
                    continue
                pending.append(pool.submit(self._group, top))
                if len(pending) >= 2 * self.concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _group(self, top: DriveItem) -> Group:
        return Group(top.name, list(self._workspaces(top, f"{self.root}/{top.name}", 1)))

    def read_paths(self, paths: Sequence[str]) -> Iterator[WorkspaceSeen]:
        """The workspaces at these paths that exist (an incremental run's candidates), read in batches."""
        for start in range(0, len(paths), BATCH):
            chunk = paths[start:start + BATCH]
            answers = self._get([f"/drives/{self.graph.drive_id}/root:/{quote(path)}?$expand="
                                            f"{_WORKSPACE_EXPAND}" for path in chunk], missing_ok=True)
            self.on_page()
            found = [(DriveItem.model_validate(answer), path) for answer, path in zip(answers, chunk, strict=True)
                     if answer is not None]
            for first in range(0, len(found), BATCH // 2):
                yield from self._read(found[first:first + BATCH // 2])

    def _folders(self, item_id: str, *, expand: str | None = None) -> Iterator[DriveItem]:
        children = self.graph.iter_children(item_id, expand=expand, orderby="name", page_size=self.page_size)
        for count, item in enumerate(children):
            if count % self.page_size == 0:
                self.on_page()
            if item.is_folder:
                yield item

    def _get(self, urls: Sequence[str], *, missing_ok: bool = False) -> list[dict[str, Any] | None]:
        """GET each URL in batches; a 404 is None when ``missing_ok``, any other failure raises as a call would."""
        requests = [BatchRequest.get(url) for url in urls]
        answers = self.graph.batch(requests)
        bodies: list[dict[str, Any] | None] = []
        for request, answer in zip(requests, answers, strict=True):
            if answer.status == 404 and missing_ok:
                bodies.append(None)
            elif not answer.ok:
                raise batch_error(request, answer)
            else:
                bodies.append(answer.body if isinstance(answer.body, dict) else {})
        return bodies

    def _workspaces(self, folder: DriveItem, path: str, level: int) -> Iterator[WorkspaceSeen]:
        """The workspace folders ``depth - level`` levels below ``folder`` (``path``)."""
        if level == self.depth:
            yield from self._read([(folder, path)])
            return
        if level + 1 < self.depth:
            for child in self._folders(folder.id):
                yield from self._workspaces(child, f"{path}/{child.name}", level + 1)
            return
        chunk: list[tuple[DriveItem, str]] = []
        for child in self._folders(folder.id, expand=_WORKSPACE_EXPAND):
            chunk.append((child, f"{path}/{child.name}"))
            if len(chunk) == BATCH // 2:
                yield from self._read(chunk)
                chunk = []
        if chunk:
            yield from self._read(chunk)

    def _read(self, workspaces: Sequence[tuple[DriveItem, str]]) -> Iterator[WorkspaceSeen]:
        """Grants and folders of up to ten workspaces in one batch (two requests each), their deeper folders in
        more, level by level, the requests of all ten sent together."""
        requests = []
        for item, _ in workspaces:
            requests.append(f"/drives/{self.graph.drive_id}/items/{item.id}/permissions")
            requests.append(self._children_url(item.id))
        answers = self._get(requests)
        self.on_page()
        folders: list[set[str]] = [set() for _ in workspaces]
        labels: list[dict[str, str]] = []
        level: list[tuple[int, _Child]] = []
        for index, (item, path) in enumerate(workspaces):
            own = item.retention_label.name if item.retention_label else None
            labels.append({path: own} if own else {})
            level += [(index, _child(v, path)) for v in (answers[2 * index + 1] or {}).get("value", [])]
        depth = 1
        while level:
            wanted = [(index, child) for index, child in level
                      if child.folder and self._relative(child, workspaces[index][1]) in self.folders]
            for index, child in wanted:
                folders[index].add(child.path)
                if child.label:
                    labels[index][child.path] = child.label
            depth += 1
            if depth > self.max_folder_depth:
                break
            level = self._next_level([(index, child) for index, child in wanted
                                      if self._relative(child, workspaces[index][1]) in self.parents])
        for index, (item, path) in enumerate(workspaces):
            permissions = (answers[2 * index] or {}).get("value", [])
            grants = dict(g for g in (group_grant_of(p) for p in permissions) if g is not None)
            metadata = {k: str(v) for k, v in (item.list_item or {}).items() if k in self.policy.metadata}
            yield WorkspaceSeen(path=path, item_id=item.id, folders=frozenset(folders[index]), grants=grants,
                                labels=labels[index], metadata=metadata)

    @staticmethod
    def _relative(child: _Child, workspace: str) -> str:
        """The child's path below its workspace, as the policy's folders are keyed."""
        return key(child.path[len(workspace) + 1:])

    def _next_level(self, parents: Sequence[tuple[int, _Child]]) -> list[tuple[int, _Child]]:
        """The children of each parent folder, each tagged with its parent's workspace."""
        found: list[tuple[int, _Child]] = []
        for start in range(0, len(parents), BATCH):
            chunk = parents[start:start + BATCH]
            answers = self._get([self._children_url(parent.id) for _, parent in chunk])
            self.on_page()
            for (index, parent), answer in zip(chunk, answers, strict=True):
                found += [(index, _child(v, parent.path)) for v in (answer or {}).get("value", [])]
        return found

    def _children_url(self, item_id: str) -> str:
        return (f"/drives/{self.graph.drive_id}/items/{item_id}/children?$expand=retentionLabel"
                f"&$select=id,name,folder,retentionLabel&$top={self.page_size}")
