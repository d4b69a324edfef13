"""Reading every workspace on Box, in the shape the SharePoint reader gives (:class:`WorkspaceSeen`): the folder
tree below the workspaces' folder walked level by level, each workspace's group collaborations, its metadata
template's instance, the policy's folders inside it and the retention policies assigned to them.

Box has no batch API and lists retention assignments per policy: the policies' assignments are read once per
run (an index of folder -> policies, kept for the next incremental run), then each workspace costs a few requests
(its collaborations, its instance, one listing per folder level). Its top-level folders are the run's checkpoint
groups, named ``box:<name>`` so that they never collide with SharePoint's of the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from actors.reconciliation.compare import WorkspaceSeen, key
from actors.reconciliation.platform import Group, _folder_depths
from connectors.box.platform import BoxPlatform
from hub.policy import WORKSPACES_ROOT, Policy

__all__ = ["GROUP_PREFIX", "BoxReader"]

#: The prefix of a Box group's name in a run's checkpoints.
GROUP_PREFIX = "box:"


class BoxReader:
    """Every workspace below the root on Box, as :class:`WorkspaceSeen`, one top-level folder at a time."""

    def __init__(self, box: BoxPlatform, policy: Policy, *, root: str = WORKSPACES_ROOT,
                 on_page: Callable[[], None] | None = None,
                 retention: Mapping[str, Sequence[str]] | None = None) -> None:
        """``retention``: the policies' assignments as the run read them (folder id -> policy names); None: read
        them at the first workspace."""
        self.box, self.policy, self.root = box, policy, root.strip("/")
        self.depth = len(policy.workspace.path.split("/"))
        self.folders = _folder_depths(policy)
        self.on_page = on_page or (lambda: None)
        self._retention = None if retention is None else {k: list(v) for k, v in retention.items()}

    def groups(self, skip: Callable[[str], bool] = lambda _: False) -> Iterator[Group]:
        """The workspaces, grouped by top-level folder (``box:<name>``), in name order; ``skip(name)``: a group
        done by an earlier attempt."""
        root = self.box.find_folder(self.root)
        self.on_page()
        if root is None:
            return
        for top in sorted(self.box.folders(root.id), key=lambda f: f.name.casefold()):
            name = f"{GROUP_PREFIX}{top.name}"
            if not skip(name):
                yield Group(name, list(self._workspaces(top.id, f"{self.root}/{top.name}", 1)))

    def read_paths(self, paths: Sequence[str]) -> Iterator[WorkspaceSeen]:
        """The workspaces at these paths that exist on Box (an incremental run's candidates)."""
        for path in paths:
            folder = self.box.find_folder(path)
            self.on_page()
            if folder is not None:
                yield self._read(folder.id, path)

    def _workspaces(self, folder_id: str, path: str, level: int) -> Iterator[WorkspaceSeen]:
        if level == self.depth:
            yield self._read(folder_id, path)
            return
        for child in self.box.folders(folder_id):
            self.on_page()
            yield from self._workspaces(child.id, f"{path}/{child.name}", level + 1)

    def _read(self, folder_id: str, path: str) -> WorkspaceSeen:
        """One workspace: its collaborations, its instance, its policy folders and their retention."""
        if self._retention is None:
            self._retention = self.box.retention_index()
        labels = {path: ",".join(self._retention[folder_id])} if folder_id in self._retention else {}
        found: set[str] = set()
        level = [(folder_id, path)]
        while level:
            below: list[tuple[str, str]] = []
            for parent, parent_path in level:
                for child in self.box.folders(parent):
                    child_path = f"{parent_path}/{child.name}"
                    if key(child_path[len(path) + 1:]) not in self.folders:
                        continue
                    found.add(child_path)
                    if child.id in self._retention:
                        labels[child_path] = ",".join(self._retention[child.id])
                    below.append((child.id, child_path))
            self.on_page()
            level = below
        metadata = {k: v for k, v in self.box.metadata(folder_id).items() if k in self.policy.metadata}
        return WorkspaceSeen(path=path, item_id=folder_id, folders=frozenset(found),
                             grants=dict(self.box.group_grants(folder_id)), labels=labels, metadata=metadata)
