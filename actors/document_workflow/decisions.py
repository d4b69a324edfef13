"""The document workflow, decided: the trigger whatever system it came from, and what it changes in the
ERP (contract terms and milestones, the latest document winning) and in the workspace (the filed name).

Pure functions beside the document-workflow actor, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from hub.policy import file_stem

__all__ = ["SignedDocument", "filed_name", "milestone_updates", "terms_patch"]


@dataclass(frozen=True)
class SignedDocument:
    """A trigger, whatever system it came from: a document of a class reaching a state at a time."""

    ref: str  # envelope id or document id
    origin: str  # "esign" (the document is on the e-signature platform) or "dms"
    project_code: str
    document_class: str
    state: str
    at: datetime
    name: str | None = None
    value: Mapping[str, Any] | None = None
    start_date: date | None = None
    end_date: date | None = None
    milestones: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    @property
    def at_ms(self) -> int:
        """The document's time in epoch milliseconds."""
        return round(self.at.timestamp() * 1000)

    @classmethod
    def from_event(cls, event_type: str, record: Mapping[str, Any]) -> SignedDocument:
        """The trigger of an ``esign.envelope.completed.v1`` or ``dms.document.state_changed.v1`` record."""
        if event_type == "esign.envelope.completed.v1":
            return cls(str(record["envelope_id"]), "esign", str(record["project_code"]),
                       str(record["document_class"]), "signed", record["completed_at"], record.get("document_name"),
                       record.get("value"), record.get("start_date"), record.get("end_date"),
                       tuple(record.get("milestones") or ()))
        return cls(str(record["document_id"]), "dms", str(record["project_code"]), str(record["document_class"]),
                   str(record["state"]), record["changed_at"], record.get("name"), record.get("value"), None, None,
                   tuple(record.get("milestones") or ()))


def _newer(at_ms: int, ref: str, as_of: object) -> bool:
    """Whether a document at ``at_ms`` beats the stored ``[ms, ref]`` (ties: the greater ref wins)."""
    if not isinstance(as_of, list) or len(as_of) != 2:
        return True
    return (at_ms, ref) > (int(as_of[0]), str(as_of[1]))


def terms_patch(doc: SignedDocument, custom_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ERP project PATCH that writes the document's value and dates where it is the latest document
    to state them (empty when nothing changes)."""
    as_of = dict(custom_fields.get("terms_as_of") or {})
    stated: dict[str, Any] = {}
    if doc.value is not None:
        stated["value"] = {"amount_minor": int(doc.value["amount_minor"]), "currency": str(doc.value["currency"])}
    if doc.start_date is not None:
        stated["start_date"] = doc.start_date.isoformat()
    if doc.end_date is not None:
        stated["end_date"] = doc.end_date.isoformat()
    patch = {name: value for name, value in stated.items() if _newer(doc.at_ms, doc.ref, as_of.get(name))}
    if not patch:
        return {}
    as_of.update({name: [doc.at_ms, doc.ref] for name in patch})
    return {**patch, "custom_fields": {"terms_as_of": as_of}}


def milestone_updates(doc: SignedDocument, custom_fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The document's milestones it is the latest document to state."""
    as_of = custom_fields.get("milestones_as_of") or {}
    return [m for m in doc.milestones if _newer(doc.at_ms, doc.ref, as_of.get(str(m["name"])))]


def filed_name(name: str | None, ref: str) -> str:
    """The file name a signed document gets in the workspace: characters SharePoint refuses replaced, and
    ``.pdf`` (DocuSign returns every signed document as a PDF) in place of the extension it was sent with."""
    base = re.sub(r'[\\/:*?"<>|#%\x00-\x1f]', "-", (name or "").strip()).strip(" .")
    base = file_stem(base) or f"signed-{ref}"
    return f"{base}.pdf"

