"""The OData query options a driveItem read takes: ``$select``, ``$expand`` and (on ``children``) ``$orderby``.

``$expand`` names navigation properties of ``driveItem``: ``listItem`` (with ``($expand=fields)`` or
``($expand=fields($select=A,B))`` its ``fields`` too, as ``listItem: {id, fields: {...}}``) and
``retentionLabel`` (the ``itemRetentionLabel``, ``name`` null when none is applied), comma-separated. Any
other name is answered as Graph answers it: 400 ``invalidRequest``, "Parsing OData Select and Expand failed:
Could not find a property named '...' on type 'microsoft.graph.driveItem'." ``$select`` keeps the named
properties (``id`` and ``@odata.etag`` always; expanded ones are added besides). ``$orderby``: ``name`` or
``name desc`` (``asc`` allowed); another property is 400 ``invalidRequest``, as SharePoint refuses orderings it
cannot serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulators.sharepoint.model import GraphError, Item, Json, iso
from simulators.sharepoint.state import GraphState

#: ``listItem``, ``listItem($expand=fields)``, ``listItem($expand=fields($select=A,B))``.
_LIST_ITEM = re.compile(r"^listItem(?:\(\$expand=fields(?:\(\$select=([^()]*)\))?\))?$")


def _expand_failed(name: str) -> GraphError:
    return GraphError(400, "invalidRequest", "Parsing OData Select and Expand failed: Could not find a property "
                      f"named '{name}' on type 'microsoft.graph.driveItem'.")


def _split_top_level(text: str) -> list[str]:
    """``a,b(c,d),e`` -> ``["a", "b(c,d)", "e"]``: commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        if depth < 0:
            raise GraphError(400, "invalidRequest", f"Parsing OData Select and Expand failed: {text!r}.")
        current += char
    parts.append(current.strip())
    return [p for p in parts if p]


@dataclass(frozen=True)
class ItemQuery:
    """What a driveItem read asked for beyond the item itself."""

    select: frozenset[str] | None = None
    list_item: bool = False
    #: With ``list_item``: expand its fields; ``fields_select`` narrows them.
    fields: bool = False
    fields_select: frozenset[str] | None = None
    retention_label: bool = False
    descending: bool = False

    @classmethod
    def parse(cls, *, select: str | None, expand: str | None, orderby: str | None = None) -> ItemQuery:
        """The options of one request, or 400 as Graph refuses them."""
        chosen = None if select is None else frozenset(s.strip() for s in select.split(",") if s.strip())
        list_item = fields = label = False
        fields_select: frozenset[str] | None = None
        for part in _split_top_level(expand or ""):
            match = _LIST_ITEM.match(part)
            if match is not None:
                list_item = True
                fields = "$expand=fields" in part
                if match.group(1) is not None:
                    fields_select = frozenset(s.strip() for s in match.group(1).split(",") if s.strip())
            elif part == "retentionLabel":
                label = True
            else:
                raise _expand_failed(part.partition("(")[0])
        descending = False
        if orderby is not None:
            words = orderby.split()
            if not words or words[0] != "name" or len(words) > 2 or words[1:] not in ([], ["asc"], ["desc"]):
                raise GraphError(400, "invalidRequest", f"The $orderby expression {orderby!r} is not supported; "
                                 "children can be ordered by name (asc or desc).")
            descending = len(words) == 2 and words[1] == "desc"
        return cls(select=chosen, list_item=list_item, fields=fields, fields_select=fields_select,
                   retention_label=label, descending=descending)

    def shape(self, body: Json, item: Item, *, fields: Json, label: Json, list_item: Json) -> Json:
        """``body`` (the driveItem) narrowed by ``$select`` and with the expanded properties added."""
        if self.select is not None:
            body = {k: v for k, v in body.items() if k in self.select or k == "id"}
            body = {"@odata.etag": item.etag, **body}
        if self.list_item:
            expanded = dict(list_item)
            if self.fields:
                chosen = fields if self.fields_select is None else {
                    k: v for k, v in fields.items() if k in self.fields_select or k in {"@odata.etag", "id"}}
                expanded["fields"] = chosen
            body["listItem"] = expanded
        if self.retention_label:
            body["retentionLabel"] = label
        return body

    @property
    def expands(self) -> bool:
        """Whether anything is expanded."""
        return self.list_item or self.retention_label


def list_item_json(state: GraphState, item: Item, *, site: str) -> Json:
    """The item's ``listItem`` (without its fields), as ``GET .../listItem`` answers it."""
    return {"@odata.etag": item.etag, "id": item.list_item_id, "eTag": item.etag,
            "createdDateTime": iso(item.created), "lastModifiedDateTime": iso(item.modified),
            "webUrl": state.web_url(item.drive_id, state.path_of(item)),
            "contentType": {"name": "Document" if item.is_file else "Folder"},
            "parentReference": {"id": state.roots[item.drive_id], "siteId": site}}


def render(state: GraphState, item: Item, query: ItemQuery, *, site: str) -> Json:
    """The driveItem as the query shapes it (a drive's root has no list item to expand)."""
    body = state.to_json(item)
    if query.select is None and not query.expands:
        return body
    drive_id = item.drive_id
    has_list_item = query.list_item and item.parent_id is not None
    fields = state.fields_of(drive_id, item.id) if has_list_item and query.fields else {}
    label = state.label(drive_id, item.id) if query.retention_label else {}
    list_item = list_item_json(state, item, site=site) if has_list_item else {}
    shaped = query.shape(body, item, fields=fields, label=label, list_item=list_item)
    if query.list_item and not has_list_item:
        shaped.pop("listItem", None)
    return shaped
