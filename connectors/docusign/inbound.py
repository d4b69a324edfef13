"""DocuSign Connect (JSON SIM) webhooks: HMAC verification and translation to the hub's contract.

Connect signs the raw body with every active Connect HMAC key and sends one base64 HMAC-SHA256 per
key in ``X-DocuSign-Signature-1``, ``-2``, ...; one match with any configured key is enough, which is
how keys rotate. Verify the bytes as received, before parsing: re-serialised JSON does not verify.

``envelope-sent``, ``envelope-delivered`` (every signer opened it) and ``envelope-completed`` become
``esign.envelope.sent.v1``, ``esign.envelope.delivered.v1`` and ``esign.envelope.completed.v1``; every other
Connect event is acknowledged and dropped. The Connect configuration must include the envelope summary with
recipients, custom fields and documents. The envelope's text custom fields carry the business data (the
sent and delivered events take the project code and document class; the completed event all of them):

- ``project_code`` (required) and ``document_class`` (required, e.g. ``SOW`` or ``engagement letter``);
- ``contract_value`` with ``contract_currency`` (ISO 4217), ``start_date``, ``end_date`` (optional);
- ``milestone.1``, ``milestone.2``, ... (optional, change orders): ``name;amount;due date`` such as
  ``Phase 2 build;12,000.00;2027-03-31`` (the due date may be left empty), in ``contract_currency``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

from pydantic import Field

from connectors.money import milestone, minor_units
from connectors.signatures import (
    any_match,
    attribute_text,
    hmac_sha256,
    load_json_object,
    optional_text,
    parse_instant,
    require_object,
    require_text,
    stable_id,
)
from hub.errors import AuthenticationFailed, ConfigurationError, InvalidEvent, SchemaViolation
from hub.events import CloudEvent, SchemaLookup, make_event
from hub.ingress.openapi import VendorWebhook, header, json_object
from hub.ingress.sources import Secret, VendorBlock

__all__ = ["COMPLETED_EVENT", "DELIVERED_EVENT", "EVENT_TYPE", "EVENT_TYPES", "SENT_EVENT", "WEBHOOK", "DocuSignKeys",
           "parse", "to_event", "verify"]

#: The Connect events that are published; all others are acknowledged and dropped.
SENT_EVENT, DELIVERED_EVENT, COMPLETED_EVENT = "envelope-sent", "envelope-delivered", "envelope-completed"
#: The hub event type each becomes.
EVENT_TYPES: Final = {SENT_EVENT: "esign.envelope.sent.v1", DELIVERED_EVENT: "esign.envelope.delivered.v1",
                      COMPLETED_EVENT: "esign.envelope.completed.v1"}
#: The hub event type of a completion.
EVENT_TYPE = EVENT_TYPES[COMPLETED_EVENT]
#: The instant of a sent or delivered envelope in the summary, and the field of the hub's record it fills.
_INSTANTS: Final = {SENT_EVENT: ("sentDateTime", "sent_at"), DELIVERED_EVENT: ("deliveredDateTime", "delivered_at")}

_SIGNATURE_HEADER = re.compile(r"^x-docusign-signature-[0-9]+$", re.IGNORECASE)
_FIELDS = "data.envelopeSummary.customFields.textCustomFields"


class DocuSignKeys(VendorBlock):
    """A source's ``docusign`` block: DocuSign Connect HMAC keys (several while rotating)."""

    hmac_keys: list[Secret] = Field(min_length=1)


#: How Connect's webhooks look in the ingress's OpenAPI document.
WEBHOOK = VendorWebhook(
    title="DocuSign Connect",
    description="DocuSign Connect (JSON, HMAC on): " + ", ".join(f"`{e}` becomes `{t}`" for e, t in EVENT_TYPES.items())
                + "; other events are acknowledged and not published.",
    parameters=(header("X-DocuSign-Signature-1", "Base64 HMAC-SHA256 of the raw body with a Connect key; "
                       "`X-DocuSign-Signature-2`... are also tried while keys rotate.",
                       {"type": "string", "minLength": 1}, required=True),),
    body=json_object("A DocuSign Connect message."),
)


def verify(body: bytes, headers: Mapping[str, str], keys: Sequence[str]) -> None:
    """Accept ``body`` when any ``X-DocuSign-Signature-N`` header is its HMAC under any of ``keys``."""
    if not keys:
        raise ConfigurationError("no DocuSign Connect HMAC key is configured")
    signatures = [value for name, value in headers.items() if _SIGNATURE_HEADER.match(name)]
    if not signatures:
        raise AuthenticationFailed("missing X-DocuSign-Signature-N header")
    if not any_match(signatures, [hmac_sha256(key, body) for key in keys]):
        raise AuthenticationFailed("X-DocuSign-Signature-N does not match any configured Connect key")


def parse(body: bytes) -> dict[str, Any]:
    """The Connect message as a JSON object (InvalidEvent when it is not one)."""
    return load_json_object(body)


def to_event(payload: Mapping[str, Any], *, registry: SchemaLookup, source: str) -> CloudEvent | None:
    """``envelope-sent``, ``envelope-delivered`` or ``envelope-completed`` as the hub's event of that envelope
    (see :data:`EVENT_TYPES`); None for other Connect events."""
    event = require_text(payload, "event", "event")
    if event not in EVENT_TYPES:
        return None
    data = require_object(payload, "data", "data")
    envelope_id = attribute_text(require_text(data, "envelopeId", "data.envelopeId"), "data.envelopeId")
    summary = require_object(data, "envelopeSummary", "data.envelopeSummary")
    if event != COMPLETED_EVENT:
        return _on_the_way(event, envelope_id, summary, registry=registry, source=source)
    status = require_text(summary, "status", "data.envelopeSummary.status")
    if status != "completed":
        raise InvalidEvent(
            f"{COMPLETED_EVENT} with envelope status {status!r}", field="data.envelopeSummary.status"
        )
    completed_at = parse_instant(
        require_text(summary, "completedDateTime", "data.envelopeSummary.completedDateTime"),
        "data.envelopeSummary.completedDateTime",
    )
    fields = _custom_fields(summary)
    project_code = attribute_text(_required_field(fields, "project_code"), f"{_FIELDS}[name=project_code]")
    record = {
        "envelope_id": envelope_id,
        "project_code": project_code,
        "document_class": _document_class(_required_field(fields, "document_class")),
        "document_name": _document_name(summary),
        "signers": _signers(summary),
        "completed_at": completed_at,
        "value": _money(fields),
        "start_date": _date(fields, "start_date"),
        "end_date": _date(fields, "end_date"),
        "milestones": _milestones(fields),
    }
    # An envelope completes once: its completion instant, unlike generatedDateTime, is the same in a
    # Connect retry and in a manual republish, so every copy maps to one event id.
    return _event(registry, EVENT_TYPE, record, event=event, at=completed_at, source=source)


def _on_the_way(event: str, envelope_id: str, summary: Mapping[str, Any], *, registry: SchemaLookup,
                source: str) -> CloudEvent:
    """``envelope-sent`` or ``envelope-delivered``: the envelope, its signers and when it happened."""
    member, name = _INSTANTS[event]
    at = parse_instant(require_text(summary, member, f"data.envelopeSummary.{member}"),
                       f"data.envelopeSummary.{member}")
    fields = _custom_fields(summary)
    record = {
        "envelope_id": envelope_id,
        "project_code": attribute_text(_required_field(fields, "project_code"), f"{_FIELDS}[name=project_code]"),
        "document_class": _document_class(_required_field(fields, "document_class")),
        "document_name": _document_name(summary),
        "signers": _signers(summary),
        name: at,
    }
    # Sent (or delivered) once per envelope, at that instant: every copy of the message maps to one event id.
    return _event(registry, EVENT_TYPES[event], record, event=event, at=at, source=source)


def _event(registry: SchemaLookup, event_type: str, record: dict[str, Any], *, event: str, at: datetime,
           source: str) -> CloudEvent:
    envelope_id, project_code = record["envelope_id"], record["project_code"]
    try:
        return make_event(
            registry,
            type=event_type,
            source=source,
            data=record,
            subject=envelope_id,
            id=stable_id("docusign", envelope_id, event, _millis(at)),
            time=at,
            partitionkey=f"project:{project_code}",
        )
    except SchemaViolation as exc:
        if exc.field != "document_class":
            raise
        path = f"{_FIELDS}[name=document_class]"
        raise SchemaViolation(f"{path}: {exc}", field=path) from None


def _millis(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds")


def _custom_fields(summary: Mapping[str, Any]) -> dict[str, str]:
    custom = require_object(summary, "customFields", "data.envelopeSummary.customFields")
    items = custom.get("textCustomFields")
    if not isinstance(items, list):
        raise InvalidEvent(f"{_FIELDS} must be a list", field=_FIELDS)
    fields: dict[str, str] = {}
    for index, item in enumerate(items):
        path = f"{_FIELDS}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidEvent(f"{path} must be a JSON object", field=path)
        value = optional_text(item, "value", f"{path}.value")
        if value is not None and value.strip():
            fields[require_text(item, "name", f"{path}.name")] = value.strip()
    return fields


def _required_field(fields: Mapping[str, str], name: str) -> str:
    if name not in fields:
        path = f"{_FIELDS}[name={name}]"
        raise InvalidEvent(f"{path} is required", field=path)
    return fields[name]


def _document_class(text: str) -> str:
    # Typed by a person in DocuSign: "SOW", "Change Order" and "engagement-letter" are all accepted.
    return re.sub(r"[\s-]+", "_", text.strip().lower())


def _document_name(summary: Mapping[str, Any]) -> str | None:
    documents = summary.get("envelopeDocuments")
    if not isinstance(documents, list):
        return None
    for document in documents:
        # "summary" is DocuSign's certificate of completion, not the signed document.
        if isinstance(document, Mapping) and document.get("type", "content") == "content":
            name = document.get("name")
            if isinstance(name, str) and name:
                return name
    return None


def _signers(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    recipients = require_object(summary, "recipients", "data.envelopeSummary.recipients")
    items = recipients.get("signers")
    base = "data.envelopeSummary.recipients.signers"
    if not isinstance(items, list) or not items:
        raise InvalidEvent(f"{base} must be a non-empty list", field=base)
    signers = []
    for index, item in enumerate(items):
        path = f"{base}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidEvent(f"{path} must be a JSON object", field=path)
        signed = optional_text(item, "signedDateTime", f"{path}.signedDateTime")
        signers.append({
            "name": require_text(item, "name", f"{path}.name"),
            "email": require_text(item, "email", f"{path}.email"),
            "role": optional_text(item, "roleName", f"{path}.roleName"),
            "signed_at": None if signed is None else parse_instant(signed, f"{path}.signedDateTime"),
        })
    return signers


def _money(fields: Mapping[str, str]) -> dict[str, Any] | None:
    amount, currency = fields.get("contract_value"), fields.get("contract_currency")
    if amount is None and currency is None:
        return None
    if amount is None or currency is None:
        missing = "contract_value" if amount is None else "contract_currency"
        path = f"{_FIELDS}[name={missing}]"
        raise InvalidEvent(f"{path} is required when the other half of the contract value is set", field=path)
    return _amount(amount, _currency(currency), f"{_FIELDS}[name=contract_value]")


def _currency(text: str) -> str:
    code = text.upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        path = f"{_FIELDS}[name=contract_currency]"
        raise InvalidEvent(f"{path} is not an ISO 4217 code", field=path)
    return code


def _milestones(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    """``milestone.N`` fields, in N order, as ``hub.common.Milestone`` records."""
    numbered: list[tuple[int, str, str]] = []
    for name, text in fields.items():
        match = re.fullmatch(r"milestone\.([0-9]{1,3})", name)
        if match:
            numbered.append((int(match.group(1)), name, text))
    if not numbered:
        return []
    currency = fields.get("contract_currency")
    if currency is None:
        path = f"{_FIELDS}[name=contract_currency]"
        raise InvalidEvent(f"{path} is required when milestones are set", field=path)
    code = _currency(currency)
    result: list[dict[str, Any]] = []
    for _, name, text in sorted(numbered):
        path = f"{_FIELDS}[name={name}]"
        try:
            result.append(milestone(text, code))
        except ValueError as exc:
            raise InvalidEvent(f"{path}: {exc}", field=path) from None
    return result


def _amount(amount: str, code: str, path: str) -> dict[str, Any]:
    try:
        return {"amount_minor": minor_units(amount, code), "currency": code}
    except ValueError as exc:
        raise InvalidEvent(f"{path}: {exc}", field=path) from None


def _date(fields: Mapping[str, str], name: str) -> date | None:
    text = fields.get(name)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        path = f"{_FIELDS}[name={name}]"
        raise InvalidEvent(f"{path} is not an ISO 8601 date (YYYY-MM-DD)", field=path) from None
