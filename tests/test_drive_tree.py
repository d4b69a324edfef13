"""The simulated drive's bookkeeping against a plain reading of the tree: a folder's size is the total of the
files below it, and ``delta`` from any position lists exactly the items changed since, each once at its last
change, tombstones included, however the answer is paged. The drive keeps sizes and its change log as it
goes (a read costs what changed, not what the drive holds); these properties are what that must preserve."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.sharepoint.drive import DriveTree
from simulators.sharepoint.model import GraphError, Item

DRIVE = "Documents"

#: One operation on the tree: (kind, a pick among the items there are, a name, a content length).
OPERATIONS = st.lists(st.tuples(st.sampled_from(["folder", "upload", "replace", "delete", "read"]),
                                st.integers(0, 1_000), st.sampled_from(["a", "b", "c", "A"]),
                                st.integers(0, 40)), max_size=60)


def _size(tree: DriveTree, item: Item) -> int:
    if item.is_file:
        return len(item.content or b"")
    return sum(_size(tree, tree.items[child]) for child in item.children.values())


def _changed_since(tree: DriveTree, position: int) -> list[str]:
    """What delta owes a reader at ``position``: every item (the root excepted) and tombstone changed after
    it, in change order."""
    live = [i for i in tree.items.values() if i.parent_id is not None and i.seq > position]
    gone = [t for t in tree.tombstones.values() if t.seq > position]
    return [i.id for i in sorted([*live, *gone], key=lambda i: i.seq)]


def _read_delta(tree: DriveTree, token: str | None, top: int) -> tuple[list[str], str]:
    """Follow every page from ``token``; the ids in the order given, and the delta token at the end."""
    ids: list[str] = []
    skip: str | None = None
    while True:
        values, skip, delta = tree.delta_page(DRIVE, token=token, skip_token=skip, top=top)
        ids += [v["id"] for v in values]
        if delta is not None:
            return ids, delta


def _apply(tree: DriveTree, kind: str, pick: int, name: str, length: int) -> None:
    folders = [i for i in tree.items.values() if not i.is_file]
    files = [i for i in tree.items.values() if i.is_file]
    try:
        if kind == "folder":
            parent = folders[pick % len(folders)]
            tree.create_folder(DRIVE, parent.id, name, "replace")
        elif kind == "upload":
            parent = folders[pick % len(folders)]
            tree.upload(DRIVE, parent.id, f"{name}.pdf", b"x" * length, "application/pdf")
        elif kind == "replace" and files:
            tree.replace_content(DRIVE, files[pick % len(files)].id, b"y" * length, "application/pdf")
        elif kind == "delete":
            candidates = [i for i in tree.items.values() if i.parent_id is not None]
            if candidates:
                tree.delete(DRIVE, candidates[pick % len(candidates)].id)
    except GraphError:
        pass  # a file named like a folder, and such: refused as the real service refuses it


@settings(max_examples=150, deadline=None, derandomize=True)
@given(OPERATIONS, st.integers(1, 5))
def test_sizes_and_delta_agree_with_a_plain_reading_of_the_tree(operations: list[tuple[str, int, str, int]],
                                                                top: int) -> None:
    tree = DriveTree(drives=[DRIVE], web_base="https://contoso.sharepoint.com/sites/hub")
    tokens: list[tuple[int, str]] = [(0, "")]  # (position, delta token); "" is no token: a full enumeration
    for kind, pick, name, length in operations:
        if kind == "read":
            position, token = tokens[pick % len(tokens)]
            ids, delta = _read_delta(tree, token or None, top)
            expected = _changed_since(tree, position)
            if not token:  # an enumeration lists what is there, not what was deleted before it
                expected = [i for i in expected if i in tree.items]
            assert ids == expected
            tokens.append((tree._seqs[DRIVE], delta))
        else:
            _apply(tree, kind, pick, name, length)
        for item in tree.items.values():
            assert tree.size_of(item) == _size(tree, item), tree.path_of(item)
