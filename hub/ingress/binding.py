"""The CloudEvents HTTP binding, read defensively: structured, binary and batch modes to contract events.

Everything that is wrong with a request becomes a :class:`~hub.ingress.problems.Problem` naming the
attribute or data field; nothing malformed comes out of here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from dateutil.parser import isoparse

from hub.errors import HubError
from hub.events import AVRO_CONTENT_TYPE, TYPE_PATTERN, CloudEvent, make_event
from hub.ingress.problems import Kind, Problem, from_error
from hub.registry import SchemaRegistry

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 19  # fits Avro long
MAX_BATCH = 500
_REQUIRED = ("id", "source", "type")
_KNOWN_EXTENSIONS = ("partitionkey", "traceparent", "sequence")
_CORE = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_JSON_TYPES = re.compile(r"^(application|text)/([a-z0-9.+-]+\+)?json$")


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type value."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json(body: bytes, *, what: str = "body") -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, bounded nesting and integer size."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(Kind.MALFORMED_JSON, f"{what} is not UTF-8") from None

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise Problem(Kind.JSON_TOO_COMPLEX, f"an integer in the {what} has more than {MAX_INT_DIGITS} digits")
        return int(digits)

    def no_constants(name: str) -> Any:
        raise Problem(Kind.MALFORMED_JSON, f"{name} is not JSON")

    try:
        value = json.loads(text, parse_int=parse_int, parse_constant=no_constants)
    except RecursionError:
        raise Problem(Kind.JSON_TOO_COMPLEX, f"the {what} is nested too deeply") from None
    except ValueError as exc:
        raise Problem(Kind.MALFORMED_JSON, f"the {what} is not valid JSON: {exc}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise Problem(Kind.JSON_TOO_COMPLEX, f"the {what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def ce_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The ``ce-`` headers as attributes: one each, printable UTF-8, percent-decoded."""
    attributes: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if attribute in attributes:
            raise Problem(Kind.DUPLICATE_HEADER, f"header {name} appears more than once", field=attribute)
        if any(byte < 0x20 or byte == 0x7F for byte in raw_value):
            raise Problem(Kind.INVALID_HEADER, f"header {name} holds a control character", field=attribute)
        try:
            text = raw_value.decode("utf-8")
            attributes[attribute] = unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise Problem(Kind.INVALID_HEADER, f"header {name} is not UTF-8", field=attribute) from None
    return attributes


def read_events(
    raw_headers: list[tuple[bytes, bytes]], content_type: str | None, body: bytes, registry: SchemaRegistry
) -> tuple[str, list[CloudEvent]]:
    """Read a request in any of the three modes; returns the mode and the contract events."""
    kind = media_type(content_type)
    if kind == STRUCTURED:
        document = parse_json(body)
        if not isinstance(document, dict):
            raise Problem(Kind.INVALID_CLOUDEVENT, "a structured CloudEvent is a JSON object")
        return "structured", [from_structured(document, registry)]
    if kind == BATCH:
        return "batch", from_batch(parse_json(body), registry)
    attributes = ce_headers(raw_headers)
    if not attributes:
        raise Problem(Kind.UNSUPPORTED_MEDIA_TYPE,
                      f"expected {STRUCTURED}, {BATCH}, or ce- headers with a JSON or Avro body; got {kind!r}")
    if "datacontenttype" in attributes:
        raise Problem(Kind.INVALID_HEADER, "binary mode carries datacontenttype in Content-Type, not ce-",
                      field="datacontenttype")
    if kind == AVRO_CONTENT_TYPE:
        return "binary", [_event(attributes, body, avro=True, registry=registry)]
    if not _JSON_TYPES.match(kind):
        raise Problem(Kind.UNSUPPORTED_MEDIA_TYPE, f"binary-mode data must be JSON or Avro, not {kind!r}")
    data = parse_json(body, what="data") if body else None
    return "binary", [_event(attributes, data, avro=False, registry=registry)]


def from_batch(document: Any, registry: SchemaRegistry) -> list[CloudEvent]:
    """All or nothing: every event valid, or a problem listing each invalid one."""
    if not isinstance(document, list) or not document:
        raise Problem(Kind.INVALID_BATCH, "a batch is a non-empty JSON array of structured CloudEvents")
    if len(document) > MAX_BATCH:
        raise Problem(Kind.INVALID_BATCH, f"a batch holds at most {MAX_BATCH} events")
    events, errors = [], []
    for index, item in enumerate(document):
        try:
            if not isinstance(item, dict):
                raise Problem(Kind.INVALID_CLOUDEVENT, "each batch entry is a JSON object")
            events.append(from_structured(item, registry))
        except Problem as problem:
            errors.append({"index": index, "type": problem.kind.uri, "status": problem.kind.status,
                           "detail": problem.detail, **({"field": problem.field} if problem.field else {})})
    seen: set[tuple[str, str]] = set()
    for index, event in enumerate(events):
        key = (event.get_source(), event.get_id())
        if key in seen:
            errors.append({"index": index, "type": Kind.INVALID_BATCH.uri, "status": 400,
                           "detail": "the same (source, id) twice in one batch", "field": "id"})
        seen.add(key)
    if errors:
        raise Problem(Kind.INVALID_BATCH, f"{len(errors)} of {len(document)} events are invalid; none was accepted",
                      errors=errors)
    return events


def from_structured(document: Mapping[str, Any], registry: SchemaRegistry) -> CloudEvent:
    """One structured-mode JSON object to a contract event."""
    attributes = {k: v for k, v in document.items() if k not in ("data", "data_base64")}
    if "data" in document and "data_base64" in document:
        raise Problem(Kind.INVALID_CLOUDEVENT, "data and data_base64 are exclusive", field="data")
    declared = attributes.pop("datacontenttype", None)
    if declared is not None and (not isinstance(declared, str) or not declared):
        raise Problem(Kind.INVALID_CLOUDEVENT, "datacontenttype must be a media type string",
                      field="datacontenttype")
    content_type = media_type(declared or "application/json")
    if "data_base64" in document:
        if content_type != AVRO_CONTENT_TYPE:
            raise Problem(Kind.UNSUPPORTED_MEDIA_TYPE, "data_base64 must carry application/avro",
                          field="datacontenttype")
        encoded = document["data_base64"]
        try:
            if not isinstance(encoded, str):
                raise ValueError
            payload = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Problem(Kind.INVALID_CLOUDEVENT, "data_base64 is not base64", field="data_base64") from None
        return _event(attributes, payload, avro=True, registry=registry)
    if not _JSON_TYPES.match(content_type):
        raise Problem(Kind.UNSUPPORTED_MEDIA_TYPE, f"structured data must be JSON, not {content_type!r}",
                      field="datacontenttype")
    return _event(attributes, document.get("data"), avro=False, registry=registry)


def _text(attributes: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = attributes.get(name)
    if value is None:
        if required:
            raise Problem(Kind.MISSING_ATTRIBUTE, f"attribute {name!r} is required", field=name)
        return None
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise Problem(Kind.INVALID_CLOUDEVENT, f"attribute {name!r} must be a non-empty string", field=name)
    return value


def _event(attributes: Mapping[str, Any], data: Any, *, avro: bool, registry: SchemaRegistry) -> CloudEvent:
    specversion = attributes.get("specversion")
    if specversion is None:
        raise Problem(Kind.MISSING_ATTRIBUTE, "attribute 'specversion' is required", field="specversion")
    if specversion != "1.0":
        raise Problem(Kind.UNSUPPORTED_SPECVERSION, f"specversion {specversion!r} is not 1.0", field="specversion")
    event_id, source, event_type = (_text(attributes, name, required=True) for name in _REQUIRED)
    assert event_id and source and event_type
    if not TYPE_PATTERN.match(event_type):
        raise Problem(Kind.UNKNOWN_EVENT_TYPE, f"type {event_type!r} is not <system>.<entity>.<event>.v<major>",
                      field="type")
    extensions = {}
    for name in attributes:
        if name in _CORE:
            continue
        if not _EXTENSION_NAME.match(str(name)) or name not in _KNOWN_EXTENSIONS:
            raise Problem(Kind.INVALID_CLOUDEVENT,
                          f"extension {name!r} is not part of the contract ({', '.join(_KNOWN_EXTENSIONS)})",
                          field=str(name))
        extensions[name] = _text(attributes, name, required=False)
    traceparent = extensions.get("traceparent")
    if traceparent is not None and not _TRACEPARENT.match(traceparent):
        raise Problem(Kind.INVALID_CLOUDEVENT, "traceparent is not a W3C traceparent", field="traceparent")
    try:
        schema = registry.for_type(event_type)
        dataschema = _text(attributes, "dataschema", required=False)
        if dataschema is not None and dataschema != schema.dataschema:
            raise Problem(Kind.INVALID_CLOUDEVENT, f"dataschema must be {schema.dataschema!r}", field="dataschema")
        if data is None:
            raise Problem(Kind.MISSING_ATTRIBUTE, "the event has no data", field="data")
        if avro:
            record = registry.decode(event_type, data)
        elif isinstance(data, dict):
            record = data
        else:
            raise Problem(Kind.SCHEMA_VIOLATION, "data must be a JSON object", field="data")
        return make_event(
            registry, type=event_type, source=source, id=event_id, data=record,
            subject=_text(attributes, "subject", required=False), time=_time(attributes.get("time")),
            partitionkey=extensions.get("partitionkey"), traceparent=traceparent,
            sequence=extensions.get("sequence"),
        )
    except HubError as error:
        raise from_error(error) from None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        parsed = isoparse(value)
    except (ValueError, OverflowError):
        raise Problem(Kind.INVALID_CLOUDEVENT, "time must be an RFC 3339 timestamp", field="time") from None
    if parsed.tzinfo is None:
        raise Problem(Kind.INVALID_CLOUDEVENT, "time must carry a UTC offset", field="time")
    return parsed
