"""Bulk seeding of the Graph simulator (``POST /_sim/seed``): folder trees made at once, with no change
notification.

The body is ``{"drive"?: <drive id or library name; the first library when left out>, "folders": [{"path",
"fields"?, "grants"?: [{"group", "role"}], "retentionLabel"?}, ...]}``. Every folder of each ``path`` is made
when missing, as the provisioning actor makes them through the API (``POST .../children`` one segment at a
time): the same ids, list-item ids, eTags (each folder's version counts its children's creates, its invites, its
label and its fields PATCH), ``webUrl``s and folder-size bookkeeping. The last folder of a path then gets
``fields`` (a column the library lacks is added first, as the actor's ``ensure_columns`` would), one invite per
grant (breaking inheritance first, as the invite route does: ``group`` is a directory group's name, mail or
object id, ``role`` ``read`` or ``write``) and ``retentionLabel`` (as the label PATCH sets it). Each changed item
takes one place in the drive's change log, so ``delta`` lists it once; nothing is counted as an API request.

Everything is checked before anything is made: a bad name, unknown group, role, unpublished label or a file in
the way is 400 ``invalidRequest`` in Graph's error body, and the drive is left as it was.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from simulators.kit.bulk import collector_paused
from simulators.sharepoint.model import Column, GraphError, Group, Item, Json, Permission, check_name, iso, now
from simulators.sharepoint.state import GraphState


def _bad(message: str) -> GraphError:
    return GraphError(400, "invalidRequest", message)


def _checked(state: GraphState, entry: Any, index: int, valid: set[str]
             ) -> tuple[list[str], Json, list[tuple[Group, str]], str | None]:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise _bad(f"folders[{index}] must be an object with a 'path'")
    names = [name for name in entry["path"].split("/") if name]
    for name in names:
        if name not in valid:  # the same client folder heads thousands of paths: checked once
            valid.add(check_name(name))
    if not names:
        raise _bad(f"folders[{index}]: the path names no folder")
    fields = entry.get("fields") or {}
    if not isinstance(fields, dict) or any(not k or k.startswith("@") or k == "id" for k in fields):
        raise _bad(f"folders[{index}]: fields must be an object of updatable field names")
    grants = []
    for grant in entry.get("grants") or []:
        if not isinstance(grant, dict) or grant.get("role") not in {"read", "write"}:
            raise _bad(f"folders[{index}]: each grant needs a group and a role 'read' or 'write'")
        group = next((g for g in state.groups() if g.matches({"alias": grant.get("group"), "email": grant.get("group"),
                                                              "objectId": grant.get("group")})), None)
        if group is None:
            raise _bad(f"folders[{index}]: One or more users could not be resolved ({grant.get('group')!r}).")
        grants.append((group, str(grant["role"])))
    label = entry.get("retentionLabel")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise _bad(f"folders[{index}]: retentionLabel must be a non-empty string")
    published = state.published_label_names()
    if label is not None and published is not None and label not in published:
        raise _bad(f"The retention label '{label}' is not published to this site.")
    return names, fields, grants, label


def seed(state: GraphState, raw: bytes) -> Json:
    """Check a seed body and make its folders; answers how many folders were made and how many entries applied."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _bad("the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("folders"), list):
        raise _bad("the body must be an object with a 'folders' array")
    with collector_paused(), state.lock:
        drive_id = state.drive_named(body.get("drive"))
        valid: set[str] = set()
        entries = [_checked(state, entry, i, valid) for i, entry in enumerate(body["folders"])]
        _check_no_file_in_the_way(state, drive_id, entries)
        return _apply(state, drive_id, entries)


def _check_no_file_in_the_way(state: GraphState, drive_id: str, entries: list[Any]) -> None:
    root = state.item(drive_id, "root")
    for names, *_ in entries:
        item: Item | None = root
        for name in names:
            child = item.children.get(name.casefold()) if item is not None else None
            if child is None:
                break
            item = state.items[child]
            if item.is_file:
                raise _bad(f"{item.name!r} is a file and cannot contain items")


def _apply(state: GraphState, drive_id: str, entries: list[Any]) -> Json:
    stamp = now()
    touched: dict[str, Item] = {}  # in the order they changed: their place in the change log
    made = 0
    root = state.item(drive_id, "root")
    for names, fields, grants, label in entries:
        item = root
        for name in names:
            child_id = item.children.get(name.casefold())
            if child_id is None:
                child = state.new_item(drive_id, name, item.id, stamp=stamp, log=False)
                item.children[name.casefold()] = child.id
                item.ordered = None
                item.version += 1
                item.modified = stamp
                touched.pop(item.id, None)
                touched[item.id] = item
                touched[child.id] = child
                made += 1
                item = child
            else:
                item = state.items[child_id]
        if fields:
            _fields(state, drive_id, item, fields)
        for group, role in grants:
            _invite(state, item, group, role)
        if label is not None:
            item.label = {"name": label, "isLabelAppliedExplicitly": True, "labelAppliedDateTime": iso(stamp),
                          "labelAppliedBy": {"application": {"displayName": "graph-simulator"}},
                          "retentionSettings": {"behaviorDuringRetentionPeriod": "retain", "isDeleteAllowed": False,
                                                "isRecordLocked": False}}
            item.version += 1
        if fields or grants or label is not None:
            item.modified = stamp
            touched.pop(item.id, None)
            touched[item.id] = item
    for item in touched.values():
        state.log_change(item)
    return {"folders": made, "entries": len(entries)}


def _fields(state: GraphState, drive_id: str, item: Item, fields: Json) -> None:
    columns = state.columns.get(drive_id)
    if columns is not None and state.checks_columns:
        library = state.site.library(drive_id)
        for name in fields:
            if name.casefold() not in columns and library is not None:
                columns[name.casefold()] = Column(id=str(uuid.uuid5(uuid.UUID(library.list_id), name)), name=name,
                                                  definition={"text": {}, "displayName": name, "description": ""})
    item.fields.update(fields)
    item.version += 1


def _invite(state: GraphState, item: Item, group: Group, role: str) -> None:
    if item.inherits:
        inherited = list(state.holder(item).permissions.values())
        item.permissions = {}
        for permission in inherited:
            copy = Permission(id=uuid.uuid4().hex, group=permission.group, roles=list(permission.roles),
                              sign_in_required=permission.sign_in_required)
            item.permissions[copy.id] = copy
        item.inherits = False
    granted = Permission(id=uuid.uuid4().hex, group=group, roles=[role], sign_in_required=True)
    item.permissions[granted.id] = granted
    item.version += 1
