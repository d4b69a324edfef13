"""A SharePoint document as the hub reads it, and the hub's document events it implies.

A file is a hub document when its list-item fields name a ``DocumentClass``; the columns are:

``DocumentClass`` (sow, contract, change_order, engagement_letter, deliverable, service_report,
customer_approval, change_record), ``DocumentState`` (draft, in_review, approved, signed, rejected,
superseded), ``ProjectCode``, and optionally ``Reference`` (its business number or title: a change record's
number, a deliverable's title), ``Milestone``, ``InvoiceNumber`` (the billing package the
document belongs to), ``ContractValue`` with ``ContractCurrency``, and ``Milestones`` (one
``name;amount;due date`` per line, in ``ContractCurrency``).

:func:`document_events` turns one such file (its item, fields and retention label) into
``dms.document.state_changed.v1`` and ``dms.document.retention_applied.v1`` data: a translation of the
vendor's view into the hub's events, used by document intake and by the readiness gate's rebuild.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.money import milestone, minor_units
from connectors.sharepoint.client import DriveItem, GraphClient, RetentionLabel
from hub.errors import InvalidEvent
from hub.policy import DOCUMENT_CLASSES, DOCUMENT_STATES

__all__ = ["DocumentView", "column_text", "document_events", "view_of", "workspace_documents"]


@dataclass(frozen=True)
class DocumentView:
    """A file on the platform as the hub reads it: the item, its list-item fields and retention label."""

    drive_id: str
    item: DriveItem
    fields: Mapping[str, Any]
    label: RetentionLabel | None

    @property
    def classified(self) -> bool:
        """Whether the file is a hub document (its fields name a class)."""
        return bool(self.fields.get("DocumentClass"))


def column_text(fields: Mapping[str, Any], name: str) -> str | None:
    """A column's value as trimmed text, None when absent or blank."""
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()


def _milestones(text: str | None, currency: str | None) -> list[dict[str, Any]]:
    if text is None:
        return []
    if currency is None:
        raise InvalidEvent("Milestones needs ContractCurrency", field="Milestones")
    try:
        return [milestone(line, currency) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise InvalidEvent(f"Milestones: {exc}", field="Milestones") from None


def document_events(view: DocumentView, *, region: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The state event of a classified file and, when it carries a retention label and the project's
    region is known, its retention event (event type and data). InvalidEvent names a bad column."""
    fields = view.fields
    cls = column_text(fields, "DocumentClass")
    if cls is None:
        return []
    cls = cls.lower().replace(" ", "_").replace("-", "_")
    if cls not in DOCUMENT_CLASSES:
        raise InvalidEvent(f"DocumentClass {cls!r} is not one of {', '.join(DOCUMENT_CLASSES)}", field="DocumentClass")
    state = (column_text(fields, "DocumentState") or "draft").lower().replace(" ", "_").replace("-", "_")
    if state not in DOCUMENT_STATES:
        raise InvalidEvent(f"DocumentState {state!r} is not one of {', '.join(DOCUMENT_STATES)}",
                           field="DocumentState")
    project = column_text(fields, "ProjectCode")
    if project is None:
        raise InvalidEvent("a classified document needs a ProjectCode", field="ProjectCode")
    currency = (column_text(fields, "ContractCurrency") or "").upper() or None
    value_text = column_text(fields, "ContractValue")
    value = None
    if value_text is not None:
        if currency is None:
            raise InvalidEvent("ContractValue needs ContractCurrency", field="ContractCurrency")
        try:
            value = {"amount_minor": minor_units(value_text, currency), "currency": currency}
        except ValueError as exc:
            raise InvalidEvent(f"ContractValue: {exc}", field="ContractValue") from None
    item = view.item
    changed_at = item.modified or datetime.now(UTC)
    events: list[tuple[str, dict[str, Any]]] = [("dms.document.state_changed.v1", {
        "document_id": item.id, "drive_id": view.drive_id, "item_id": item.id, "project_code": project,
        "document_class": cls, "state": state, "previous_state": None, "name": item.name, "url": item.web_url,
        "reference": column_text(fields, "Reference"), "milestone": column_text(fields, "Milestone"),
        "invoice_number": column_text(fields, "InvoiceNumber"), "changed_at": changed_at, "value": value,
        "milestones": _milestones(column_text(fields, "Milestones"), currency),
    })]
    label = view.label
    if label is not None and label.name and region is not None:
        events.append(("dms.document.retention_applied.v1", {
            "document_id": item.id, "project_code": project, "retention_label": label.name,
            "jurisdiction": region, "country": None, "applied_at": label.label_applied or changed_at,
        }))
    return events


def view_of(graph: GraphClient, item: DriveItem) -> DocumentView:
    """A file's fields and label, read now."""
    fields = graph.fields(item.id)
    label = graph.retention_label(item.id) if fields.get("DocumentClass") else None
    return DocumentView(graph.drive_id, item, fields, label)


def workspace_documents(graph: GraphClient, root: str) -> Iterator[DocumentView]:
    """Every classified file below the workspace folder ``root`` (depth first)."""
    folder = graph.get_by_path(root)
    if folder is None:
        return
    pending = [folder.id]
    while pending:
        for child in graph.children(pending.pop()):
            if child.is_folder:
                pending.append(child.id)
            elif child.is_file:
                view = view_of(graph, child)
                if view.classified:
                    yield view
