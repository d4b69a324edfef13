"""The scenario suite on either document platform: a policy that keeps every workspace on one platform, and what
a test reads from or does on the platform's simulator, the same way on SharePoint and on Box.

A test parametrized with :func:`on_each_platform` runs once per platform; it asks the scenario for
``scenario.folder(path)`` and gets the same :class:`Folder` view (groups as ``read``/``write``, the retention label
or policy, the canonical fields) whichever simulator holds it.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.platforms import PLATFORMS, SECTION, PlatformName

__all__ = ["Folder", "on_each_platform", "policy_on"]

#: Parametrizes a test's ``platform`` argument with every document platform the hub has.
on_each_platform = pytest.mark.parametrize("platform", PLATFORMS)
#: Box's collaboration roles as the hub's (``read``, ``write``).
BOX_ROLES = {"viewer": "read", "previewer": "read", "editor": "write"}


@dataclass(frozen=True)
class Folder:
    """A folder or file on a document platform, as the scenario tests read it."""

    id: str
    #: Where people open it (the link the ERP gets for a workspace).
    url: str
    #: Group -> ``read`` or ``write``.
    grants: dict[str, str]
    #: The retention label (SharePoint) or policy (Box: a file's is its folder's) it is kept under.
    label: str | None
    #: The canonical fields: SharePoint's list-item columns, Box's metadata template instance.
    fields: dict[str, str]


@functools.cache
def policy_on(base: Path, platform: PlatformName) -> Path:
    """``base`` (a policy file) with its platforms section keeping every workspace on ``platform``: written once
    per session to a temporary file."""
    document: dict[str, Any] = yaml.safe_load(base.read_text())
    document[SECTION] = {"default": platform, "rules": []}
    path = Path(tempfile.mkdtemp(prefix="hub-policy-")) / f"policy-{platform}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def sharepoint_folder(item: dict[str, Any] | None) -> Folder | None:
    """The SharePoint simulator's drive item as a :class:`Folder`."""
    if item is None:
        return None
    grants = {p["group"]: ",".join(p["roles"]) for p in item.get("permissions", [])}
    return Folder(id=item["id"], url=item["webUrl"], grants=grants, label=item.get("retentionLabel"),
                  fields={k: str(v) for k, v in (item.get("fields") or {}).items()})


def box_folder(state: dict[str, Any], path: str, *, web: str, template: str) -> Folder | None:
    """The Box simulator's folder or file at ``path`` (below its root) as a :class:`Folder`, from its state."""
    item = state["items"].get(path)
    if item is None:
        return None
    kind = item["type"]
    holder = state["items"].get(path.rsplit("/", 1)[0]) if kind == "file" else item  # a file's policy is its folder's
    policies = sorted(a["retention_policy"]["policy_name"] for a in state["assignments"]
                      if holder is not None and a["assigned_to"]["id"] == holder["id"])
    instance: dict[str, Any] = next((m for m in state["metadata"]
                                     if m["item"] == item["id"] and m["template"] == template), {})
    return Folder(id=item["id"], url=f"{web.rstrip('/')}/{kind}/{item['id']}",
                  grants={c["accessible_by"]["name"]: BOX_ROLES[c["role"]] for c in state["collaborations"]
                          if c["item"]["id"] == item["id"]},
                  label=policies[0] if policies else None,
                  fields={k: str(v) for k, v in instance.items()
                          if k not in ("item", "template") and not k.startswith("$") and v is not None})
