"""The hub's CloudEvents 1.0 contract and its codecs (Dramatiq message body, RabbitMQ binary binding).

Contract: ``type`` is ``<system>.<entity>.<event>.v<major>`` and is also the routing key; ``source``
names the publishing system instance; ``subject`` is the business key; extensions ``partitionkey``
(canonical entity id), ``traceparent`` (W3C) and ``sequence`` (source version); data is Avro binary
(``datacontenttype: application/avro``) and ``dataschema`` names the Avro schema and its version.

Other extension attributes travel with the event as strings (their CloudEvents canonical form) and
reach topic subscribers as ``ce-<name>`` headers: a name of 1 to 20 lower-case letters and digits
(:data:`EXTENSION_NAME`), at most :data:`MAX_EXTENSIONS` per event, each at most
:data:`MAX_EXTENSION_BYTES`. Every string attribute is a CloudEvents String (:func:`valid_string`).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from hub import rfc3339
from hub.errors import InvalidEvent

__all__ = [
    "AVRO_CONTENT_TYPE",
    "CORE_ATTRIBUTES",
    "EXTENSION_NAME",
    "MAX_EXTENSIONS",
    "MAX_EXTENSION_BYTES",
    "TYPE_PATTERN",
    "AvroFormat",
    "CloudEvent",
    "SchemaLookup",
    "event_summary",
    "from_amqp",
    "from_message_body",
    "make_event",
    "to_amqp",
    "to_message_body",
    "valid_string",
    "validate_event",
]

#: The media type of event data inside the hub and on topics.
AVRO_CONTENT_TYPE = "application/avro"
#: ``<system>.<entity>.<event>.v<major>``; lower case, doubles as the AMQP routing key.
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[0-9]+$")
_EXTENSIONS = ("partitionkey", "traceparent", "sequence")
#: The context attributes CloudEvents 1.0 defines; no extension may take their names (nor ``data``).
CORE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"})
#: A well-formed extension attribute name (CloudEvents: lower-case letters and digits, 20 at most).
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
#: Most extension attributes one event may carry, ``partitionkey``, ``traceparent`` and ``sequence`` included.
MAX_EXTENSIONS = 16
#: Longest extension value, in UTF-8 bytes of its canonical string form.
MAX_EXTENSION_BYTES = 1024
# CloudEvents String: no C0/C1 control characters or DEL, no surrogates, no Unicode noncharacters.
_NOT_STRING = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17))
    + "]"
)


class SchemaLookup(Protocol):
    """What the contract needs of the schema registry."""

    def encode(self, event_type: str, record: Mapping[str, Any]) -> bytes:
        """Encode a record of ``event_type`` to Avro binary."""
        ...

    def decode(self, event_type: str, payload: bytes) -> dict[str, Any]:
        """Decode Avro binary of ``event_type``."""
        ...

    def for_type(self, event_type: str) -> _HasDataschema:
        """The schema of ``event_type`` (raises UnknownEventType)."""
        ...


class _HasDataschema(Protocol):
    @property
    def dataschema(self) -> str: ...

    def is_named_by(self, dataschema: str) -> bool: ...


class AvroFormat(JSONFormat):
    """CloudEvents JSON format that keeps Avro data as bytes.

    The SDK's JSON format turns binary data that happens to be valid UTF-8 into ``str``; Avro data
    must stay bytes whatever its content.
    """

    def read_data(self, body: bytes, datacontenttype: str | None) -> dict[str, Any] | str | bytes | None:
        """Return the body as bytes for Avro, as the SDK does otherwise."""
        if _is_avro(datacontenttype):
            return bytes(body)
        return super().read_data(body, datacontenttype)


_FORMAT = AvroFormat()


def valid_string(value: str) -> bool:
    """Whether ``value`` is a CloudEvents String: no control characters, surrogates or noncharacters."""
    return _NOT_STRING.search(value) is None


def _is_avro(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == AVRO_CONTENT_TYPE


def _build(attributes: dict[str, Any], data: bytes | None) -> CloudEvent:
    try:
        return CloudEvent(attributes, data)
    except BaseCloudEventException as exc:
        raise InvalidEvent(f"not a valid CloudEvent: {exc}") from None


def make_event(
    registry: SchemaLookup,
    *,
    type: str,
    source: str,
    data: Mapping[str, Any],
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    partitionkey: str | None = None,
    traceparent: str | None = None,
    sequence: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> CloudEvent:
    """Build a contract-conforming event, encoding ``data`` with the type's Avro schema.

    ``extensions`` are further extension attributes in canonical string form; each string attribute
    must be a CloudEvents String (InvalidEvent naming the attribute otherwise).
    """
    if not valid_string(type) or not TYPE_PATTERN.match(type):
        raise InvalidEvent(f"type {type!r} is not <system>.<entity>.<event>.v<major>", field="type")
    named = {"partitionkey": partitionkey, "traceparent": traceparent, "sequence": sequence}
    carried = {name: value for name, value in named.items() if value} | _extensions(extensions or {})
    if len(carried) > MAX_EXTENSIONS:
        raise InvalidEvent(f"an event carries at most {MAX_EXTENSIONS} extension attributes")
    event_id = id or str(uuid.uuid4())
    for name, value in {"id": event_id, "source": source, "subject": subject, **carried}.items():
        if value is not None and not valid_string(value):
            raise InvalidEvent(f"attribute {name!r} holds a control character, surrogate or noncharacter",
                               field=name)
    when = time or datetime.now(UTC)
    try:
        if when.utcoffset() is None:
            raise ValueError("naive")
        when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidEvent("time must be a timezone-aware instant within years 1 to 9999", field="time") from None
    payload = registry.encode(type, data)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type,
        "time": when,
        "datacontenttype": AVRO_CONTENT_TYPE,
        "dataschema": registry.for_type(type).dataschema,
    }
    if subject:
        attributes["subject"] = subject
    attributes.update(carried)
    return _build(attributes, payload)


def _extensions(extensions: Mapping[str, str]) -> dict[str, str]:
    """The further extensions, checked: well-formed names that are no other attribute, bounded values."""
    for name, value in extensions.items():
        if not EXTENSION_NAME.fullmatch(name) or name in CORE_ATTRIBUTES or name in _EXTENSIONS or name == "data":
            raise InvalidEvent(f"{name!r} cannot be an extension attribute name", field=name)
        if not isinstance(value, str):
            raise InvalidEvent(f"extension {name!r} must be given in its string form", field=name)
        if len(value.encode("utf-8", "surrogatepass")) > MAX_EXTENSION_BYTES:
            raise InvalidEvent(f"extension {name!r} is longer than {MAX_EXTENSION_BYTES} bytes", field=name)
    return dict(extensions)


def validate_event(event: CloudEvent, registry: SchemaLookup) -> dict[str, Any]:
    """Check an event against the contract and return its decoded data."""
    return registry.decode(event.get_type(), check_event(event, registry))


def check_event(event: CloudEvent, registry: SchemaLookup) -> bytes:
    """The contract's checks of an event but its data's decoding (type, content type, dataschema, data as
    bytes); returns the data. :func:`validate_event` decodes it too."""
    event_type = event.get_type()
    if not TYPE_PATTERN.match(event_type):
        raise InvalidEvent(f"type {event_type!r} is not <system>.<entity>.<event>.v<major>", field="type")
    if not _is_avro(event.get_datacontenttype()):
        raise InvalidEvent(
            f"datacontenttype must be {AVRO_CONTENT_TYPE}, got {event.get_datacontenttype()!r}",
            field="datacontenttype",
        )
    schema = registry.for_type(event_type)
    dataschema = event.get_dataschema()
    if dataschema is not None and not schema.is_named_by(dataschema):
        raise InvalidEvent(
            f"dataschema {dataschema!r} does not match {schema.dataschema!r}", field="dataschema"
        )
    data = event.get_data()
    if not isinstance(data, bytes):
        raise InvalidEvent("data must be Avro bytes", field="data")
    return data


def to_message_body(event: CloudEvent) -> dict[str, Any]:
    """The event in CloudEvents JSON structured form (``data_base64``), as a Dramatiq argument.

    The mapping the SDK's JSON format writes (``JSONFormat.write``: times in RFC 3339 with ``Z`` for UTC, binary
    data in ``data_base64``), built directly rather than written to JSON and parsed back; an attribute of another
    kind than text or time, or data that is not bytes, takes the SDK's own way.
    """
    body: dict[str, Any] = {}
    for name, value in event.get_attributes().items():
        if isinstance(value, datetime):
            text = value.isoformat()
            body[name] = text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
        elif isinstance(value, str):
            body[name] = value
        else:
            return _sdk_body(event)
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        body["data_base64"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        return _sdk_body(event)
    return body


def _sdk_body(event: CloudEvent) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(_FORMAT.write(event))
    return body


#: The attributes every CloudEvent carries.
_REQUIRED = ("specversion", "id", "source", "type")


def from_message_body(body: Mapping[str, Any]) -> CloudEvent:
    """Inverse of :func:`to_message_body`; the data comes back as bytes.

    Read from the mapping Dramatiq already decoded, as the SDK's JSON format reads a document once parsed
    (``JSONFormat.read``: ``time`` parsed, here as RFC 3339; ``data_base64`` decoded), without writing it back to
    JSON first.
    """
    attributes = dict(body)
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        # The SDK would make up an id (and a time): a redelivery would then be another event.
        raise InvalidEvent(f"not a valid CloudEvent: {', '.join(missing)} missing", field=missing[0])
    try:
        specversion = attributes.get("specversion")
        if specversion != "1.0":
            raise InvalidEvent(f"unsupported specversion {specversion!r}", field="specversion")
        if "time" in attributes:
            attributes["time"] = rfc3339.parse(attributes["time"])
        data = attributes.pop("data", None)
        if data is not None:
            raise InvalidEvent("data must be carried as data_base64", field="data")
        encoded = attributes.pop("data_base64", None)
        if encoded is not None:
            data = base64.b64decode(encoded, validate=True)
        return CloudEvent(attributes, data)
    except BaseCloudEventException as exc:
        raise InvalidEvent(f"not a valid CloudEvent: {exc}") from None
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidEvent(f"not a CloudEvents JSON document: {exc}") from None


def to_amqp(event: CloudEvent) -> ce_rabbitmq.RabbitMQMessage:
    """The RabbitMQ binary binding: ``ce-`` headers, content_type, Avro body."""
    return ce_rabbitmq.to_binary(event, _FORMAT)


def from_amqp(headers: Mapping[str, Any], content_type: str | None, body: bytes) -> CloudEvent:
    """Read the RabbitMQ binary binding back into an event (data stays bytes)."""
    text_headers: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEvent(f"header {name!r} is not UTF-8", field=name) from None
        if isinstance(value, str):
            text_headers[name] = value
    message = ce_rabbitmq.RabbitMQMessage(headers=text_headers, content_type=content_type, body=body)
    try:
        event = ce_rabbitmq.from_binary(message, _FORMAT)
    except BaseCloudEventException as exc:
        raise InvalidEvent(f"not a valid CloudEvent: {exc}") from None
    if not isinstance(event, CloudEvent):
        raise InvalidEvent(f"unsupported specversion {event.get_specversion()!r}", field="specversion")
    return event


def event_summary(event: CloudEvent, *, root_id: str | None = None) -> dict[str, str | None]:
    """The attributes carried in message options for routing, tracing, logging and the flight record."""
    return {
        "id": event.get_id(),
        "type": event.get_type(),
        "source": event.get_source(),
        "subject": event.get_subject(),
        "root_id": root_id or event.get_id(),
        "traceparent": _ext(event, "traceparent"),
        "partitionkey": _ext(event, "partitionkey"),
    }


def _ext(event: CloudEvent, name: str) -> str | None:
    value = event.get_attributes().get(name)
    return None if value is None else str(value)


def extension(event: CloudEvent, name: str) -> str | None:
    """An extension attribute of the contract, as a string (``None`` when absent)."""
    if name not in _EXTENSIONS:
        raise KeyError(name)
    return _ext(event, name)
