"""The CloudEvents HTTP binding, read defensively: structured, binary and batch modes to contract events.

Everything that is wrong with a request becomes a :class:`~hub.ingress.problems.Problem` naming the
attribute or data field; nothing malformed comes out of here. The rules, beyond the JSON ones of
:func:`loads`: every string attribute is a CloudEvents String (no control characters,
surrogates or noncharacters; in binary mode checked again after percent-decoding), ``time`` is
RFC 3339 (:mod:`hub.rfc3339`), and extension attributes other than ``partitionkey``,
``traceparent`` and ``sequence`` are carried in their canonical string form when well-formed (see
:func:`extension_value` and the bounds in :mod:`hub.events`).

Strict JSON (:func:`loads`) comes first, for the CloudEvents ingress and the vendor webhooks alike.
Python's :func:`json.loads` accepts more than a hostile sender should get: ``NaN``, numbers it then
turns into ``inf``, an object with the same key twice (the last one silently wins), ``"\\ud800"``
(a lone surrogate, which breaks the first ``.encode()`` downstream), and nesting or integers large
enough to exhaust the stack or the CPU. :func:`loads` refuses all of them, before anything else
looks at the document, with errors that are :class:`~hub.errors.InvalidEvent` (a client's fault)::

    InvalidEvent
     └── JsonError
          ├── MalformedJson     not UTF-8, not JSON, NaN/Infinity, a duplicate key, a lone surrogate
          └── JsonTooComplex    deeper than MAX_DEPTH, an integer over MAX_INT_DIGITS, a number past float

Messages name what was read (``what``) and never quote it: bodies may carry secrets and personal data.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from hub import rfc3339
from hub.errors import HubError, JsonError, JsonTooComplex, MalformedJson
from hub.events import (
    AVRO_CONTENT_TYPE,
    CORE_ATTRIBUTES,
    EXTENSION_NAME,
    MAX_EXTENSION_BYTES,
    MAX_EXTENSIONS,
    TYPE_PATTERN,
    CloudEvent,
    make_event,
    valid_string,
)
from hub.ingress.problems import Kind, Problem, from_error
from hub.registry import SchemaRegistry

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_BATCH = 500
#: Longest core string attribute (``id``, ``source``, ``subject``, ...), in characters.
MAX_ATTRIBUTE_LENGTH = 1024
#: The CloudEvents Integer type: a signed 32-bit whole number.
INTEGER_RANGE = range(-(2**31), 2**31)
_REQUIRED = ("id", "source", "type")
_KNOWN_EXTENSIONS = ("partitionkey", "traceparent", "sequence")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_JSON_TYPES = re.compile(r"^(application|text)/([a-z0-9.+-]+\+)?json$")


# -- strict JSON: every body the hub reads from outside (the vendor webhooks' adapters read theirs here too)

#: Deepest nesting accepted (the outermost value is level 1).
MAX_DEPTH = 32
#: Longest integer accepted, sign excluded: every Avro long fits, and ``int()`` stays linear.
MAX_INT_DIGITS = 19

_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(body: bytes, *, what: str = "body") -> Any:
    """The JSON value of ``body``, strictly; raises :class:`MalformedJson` or :class:`JsonTooComplex`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson(f"the {what} is not UTF-8") from None

    def parse_int(digits: str) -> int:
        if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
            raise JsonTooComplex(f"an integer in the {what} has more than {MAX_INT_DIGITS} digits")
        return int(digits)

    def parse_float(literal: str) -> float:
        number = float(literal)
        if math.isinf(number):
            raise JsonTooComplex(f"a number in the {what} is beyond the range of a double")
        return number

    def no_constants(name: str) -> Any:
        raise MalformedJson(f"{name} in the {what} is not JSON")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) != len(pairs):
            raise MalformedJson(f"an object in the {what} has the same key twice")
        return document

    try:
        value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=no_constants,
                           object_pairs_hook=unique_keys)
    except RecursionError:
        raise JsonTooComplex(f"the {what} is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"the {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    _check_tree(value, what)
    return value


def _check_tree(value: Any, what: str) -> None:
    """Depth and lone surrogates, walked without recursion (the value may be 1000 levels deep)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JsonTooComplex(f"the {what} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, str):
            _check_text(node, what)
        elif isinstance(node, dict):
            for key, child in node.items():
                _check_text(key, what)
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _check_text(text: str, what: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise MalformedJson(f"a string in the {what} holds a lone surrogate (\\ud800-\\udfff)")


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type value."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json(body: bytes, *, what: str = "body") -> Any:
    """Strict JSON (:func:`loads`) as a problem: malformed-json or json-too-complex."""
    try:
        return loads(body, what=what)
    except JsonError as error:
        raise from_error(error) from None


def ce_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The ``ce-`` headers as attributes: one each, printable UTF-8, percent-decoded, CloudEvents Strings."""
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
            text = unquote(raw_value.decode("utf-8"), errors="strict")
        except UnicodeDecodeError:
            raise Problem(Kind.INVALID_HEADER, f"header {name} is not UTF-8", field=attribute) from None
        if not valid_string(text):
            # a%0D%0Ab is as much a line break as the raw bytes, once decoded
            raise Problem(Kind.INVALID_HEADER, f"header {name} holds a control character or noncharacter "
                          "after percent-decoding", field=attribute)
        attributes[attribute] = text
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
    if declared is not None and (not isinstance(declared, str) or not declared or not valid_string(declared)):
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
    if not isinstance(value, str) or not value or len(value) > MAX_ATTRIBUTE_LENGTH:
        raise Problem(Kind.INVALID_CLOUDEVENT, f"attribute {name!r} must be a non-empty string of at most "
                      f"{MAX_ATTRIBUTE_LENGTH} characters", field=name)
    if not valid_string(value):
        raise Problem(Kind.INVALID_CLOUDEVENT,
                      f"attribute {name!r} holds a control character, surrogate or noncharacter", field=name)
    return value


def extension_value(name: str, value: Any) -> str | None:
    """An extension attribute in its canonical string form (None when null, i.e. absent).

    CloudEvents types as JSON gives them: a String (at most ``MAX_EXTENSION_BYTES`` in UTF-8, no
    control characters, surrogates or noncharacters), an Integer (signed 32-bit, written in decimal)
    or a Boolean (``true``/``false``). Anything else is an invalid-cloudevent problem naming ``name``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 is the JSON number 3: an Integer, whatever the sender's serialiser wrote
    if isinstance(value, int):
        if value not in INTEGER_RANGE:
            raise Problem(Kind.INVALID_CLOUDEVENT, f"extension {name!r} is an integer outside the 32-bit range "
                          "of a CloudEvents Integer", field=name)
        return str(value)
    if not isinstance(value, str):
        raise Problem(Kind.INVALID_CLOUDEVENT, f"extension {name!r} must be a string, an integer or a boolean",
                      field=name)
    if not valid_string(value):
        raise Problem(Kind.INVALID_CLOUDEVENT,
                      f"extension {name!r} holds a control character, surrogate or noncharacter", field=name)
    if len(value.encode("utf-8")) > MAX_EXTENSION_BYTES:
        raise Problem(Kind.INVALID_CLOUDEVENT, f"extension {name!r} is longer than {MAX_EXTENSION_BYTES} bytes",
                      field=name)
    return value


def _extensions(attributes: Mapping[str, Any]) -> dict[str, str]:
    """The extensions other than the contract's own three, well-formed and bounded."""
    names = [name for name, value in attributes.items() if name not in CORE_ATTRIBUTES and value is not None]
    for name in names:
        if not EXTENSION_NAME.fullmatch(name) or name == "data":
            raise Problem(Kind.INVALID_CLOUDEVENT,
                          f"{_bounded(name)!r} is not an extension attribute name (1 to 20 lower-case letters "
                          "and digits)",
                          field=_bounded(name))
    if len(names) > MAX_EXTENSIONS:
        raise Problem(Kind.INVALID_CLOUDEVENT, f"an event carries at most {MAX_EXTENSIONS} extension attributes")
    carried = {name: extension_value(name, attributes[name]) for name in names if name not in _KNOWN_EXTENSIONS}
    return {name: value for name, value in carried.items() if value is not None}


def _bounded(name: str) -> str:
    # A refused name goes back in the problem's field: bounded, so a 1 MiB key is not echoed whole.
    return name if len(name) <= 64 else name[:64] + "..."


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
    extensions = _extensions(attributes)
    partitionkey, traceparent, sequence = (_text(attributes, name, required=False) for name in _KNOWN_EXTENSIONS)
    if traceparent is not None and not _TRACEPARENT.match(traceparent):
        raise Problem(Kind.INVALID_CLOUDEVENT, "traceparent is not a W3C traceparent", field="traceparent")
    subject = _text(attributes, "subject", required=False)
    time = _time(attributes.get("time"))
    try:
        schema = registry.for_type(event_type)
        dataschema = _text(attributes, "dataschema", required=False)
        if dataschema is not None and not schema.is_named_by(dataschema):
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
            registry, type=event_type, source=source, id=event_id, data=record, subject=subject, time=time,
            partitionkey=partitionkey, traceparent=traceparent, sequence=sequence, extensions=extensions,
        )
    except HubError as error:
        raise from_error(error) from None


def _time(value: Any) -> datetime | None:
    """RFC 3339 exactly (:func:`hub.rfc3339.parse`), an aware instant within years 1 to 9999."""
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return rfc3339.parse(value)
    except ValueError:
        raise Problem(Kind.INVALID_CLOUDEVENT, "time must be an RFC 3339 date-time such as "
                      "2018-04-05T17:31:00Z", field="time") from None
