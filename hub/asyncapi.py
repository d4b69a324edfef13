"""The AsyncAPI 3.0 document of what the hub publishes for analytics consumers, built from the schema
registry and the topology (:mod:`hub.topology`), never written by hand.

One channel per place a consumer reads: the topic exchange ``<prefix>.events`` (routing key = event type),
its history stream, and, where the policy walls matters off, the restricted exchange that carries their
events in full. Each event type is a message: its current Avro schema (``schemaFormat``
``application/vnd.apache.avro+json;version=1.9.0``), the ``ce-`` headers of the CloudEvents AMQP binary
binding, and an example. ``hub schemas export`` writes it; the ingress serves it at ``GET /v1/asyncapi.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from hub.catalogue import SchemaCatalogue
from hub.topology import exchange_name, history_stream

__all__ = ["AVRO_SCHEMA_FORMAT", "Redaction", "document", "example_datum"]

#: The schema format of every payload.
AVRO_SCHEMA_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
_AMQP = "0.3.0"
#: When the examples happen: a fixed instant, so the document is the same on every build.
_EXAMPLE_TIME = datetime(2027, 1, 4, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Redaction:
    """How events about walled matters appear on the topic exchange: the restricted exchange carrying them in
    full, and per event type the redacted schema published instead (``schema``, with its ``dataschema``)."""

    restricted_exchange: str
    schemas: Mapping[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


def document(catalogue: SchemaCatalogue, *, prefix: str, amqp_host: str, public_url: str,
             redaction: Redaction | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document for a hub with queue prefix ``prefix`` whose RabbitMQ consumers reach at
    ``amqp_host`` (``host:port``) and whose ingress is at ``public_url``."""
    registry = catalogue.registry
    exchange, stream = exchange_name(prefix), history_stream(prefix)
    messages: dict[str, Any] = {}
    for event_type in catalogue.event_types:
        schema = registry.for_type(event_type)
        messages[event_type] = _message(event_type, catalogue.schema(event_type), schema.dataschema,
                                        catalogue.versions(event_type), catalogue)
    redacted: dict[str, Any] = {}
    if redaction is not None:
        for event_type, (dataschema, avro) in sorted(redaction.schemas.items()):
            redacted[f"{event_type}.redacted"] = _message(event_type, avro, dataschema, [], catalogue, redacted=True)
    messages.update(redacted)
    on_topic = list(messages)  # a walled matter's event is redacted here, any other's is there in full
    refs = [{"$ref": f"#/components/messages/{name}"} for name in on_topic]
    channels: dict[str, Any] = {
        "events": {
            "address": exchange,
            "title": "Canonical events",
            "description": "The topic exchange; bind a queue with a key such as `erp.project.#` "
                           "(`hub consumers add NAME --bind KEY`). The routing key is the event type."
                           + (" Events about a walled matter come here redacted." if redaction else ""),
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in on_topic},
            "bindings": {"amqp": _exchange_binding(exchange)},
        },
        "history": {
            "address": stream,
            "title": "History of the canonical events",
            "description": "A RabbitMQ stream holding every event of the exchange for its retention "
                           "(HUB_EVENTS_MAX_AGE, HUB_EVENTS_MAX_BYTES). Consume it with a prefetch (`basic.qos`) "
                           "and the `x-stream-offset` argument (`first`, an offset, or a timestamp), "
                           "or have `hub events replay` copy a slice into your queue.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in on_topic},
            "bindings": {"amqp": {"is": "queue", "queue": {"name": stream, "durable": True, "exclusive": False,
                                                          "autoDelete": False, "vhost": "/"},
                                  "bindingVersion": _AMQP}},
        },
    }
    operations: dict[str, Any] = {
        "receiveEvents": _receive("events", refs, "Consume canonical events from a queue bound to the exchange."),
        "readHistory": _receive("history", refs, "Read events again from the history stream, from an offset or "
                                                 "a timestamp."),
    }
    if redaction is not None:
        full = [name for name in messages if name not in redacted]
        channels["walled"] = {
            "address": redaction.restricted_exchange,
            "title": "Walled matters, in full",
            "description": "Events about matters behind an ethical wall, unredacted. Only consumers inside the "
                           "wall get a queue bound here.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in full},
            "bindings": {"amqp": _exchange_binding(redaction.restricted_exchange)},
        }
        operations["receiveWalled"] = _receive(
            "walled", [{"$ref": f"#/components/messages/{name}"} for name in full],
            "Consume walled matters' events in full (restricted).")
    host = urlsplit(public_url)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Integration hub canonical events",
            "version": _package_version(),
            "description": "Lifecycle events of the ERP, the document platforms and e-signature, as CloudEvents "
                           "in the AMQP binary binding: `ce-` headers, `content_type: application/avro`, the "
                           "data as Avro binary without a header. The writer's schema is the revision "
                           "`ce-dataschema` names (a URL of the ingress); every revision is served at "
                           f"{public_url}/v1/schemas. Delivery is at least once: deduplicate on "
                           "(`ce-source`, `ce-id`).",
        },
        "defaultContentType": "application/avro",
        "servers": {
            "rabbitmq": {"host": amqp_host, "protocol": "amqp", "protocolVersion": "0-9-1",
                         "description": "The hub's RabbitMQ."},
            "ingress": {"host": host.netloc, "protocol": host.scheme, "pathname": "/v1/schemas",
                        "description": "Where the Avro schemas are served."},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEventHeaders": _HEADERS}},
    }


def _exchange_binding(name: str) -> dict[str, Any]:
    return {"is": "routingKey", "exchange": {"name": name, "type": "topic", "durable": True, "autoDelete": False,
                                             "vhost": "/"}, "bindingVersion": _AMQP}


def _receive(channel: str, messages: list[dict[str, str]], summary: str) -> dict[str, Any]:
    return {"action": "receive", "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{ref['$ref'].rsplit('/', 1)[1]}"}
                         for ref in messages],
            "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP}}}


def _message(event_type: str, avro: dict[str, Any], dataschema: str, versions: Sequence[int],
             catalogue: SchemaCatalogue, *, redacted: bool = False) -> dict[str, Any]:
    name = avro["name"]
    summary = (f"{event_type}, redacted: a walled matter's event without its protected fields" if redacted
               else f"{event_type} ({name}), revision {versions[-1]}")
    description = avro.get("doc") or summary
    if not redacted and len(versions) > 1:
        description += " Earlier revisions: " + ", ".join(catalogue.url(event_type, v) for v in versions[:-1]) + "."
    headers = {"ce-specversion": "1.0", "ce-id": "01J0000000EXAMPLE0000000000", "ce-source": "erp-sim://acme-psa/prod",
               "ce-type": event_type, "ce-time": "2027-01-04T09:30:00Z", "ce-subject": "ENG-ACME-0001",
               "ce-dataschema": dataschema, "ce-partitionkey": "project:ENG-ACME-0001"}
    if redacted:
        headers["ce-redacted"] = "true"
    return {
        "name": event_type,
        "title": event_type,
        "summary": summary,
        "description": description,
        "contentType": "application/avro",
        "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
        "payload": {"schemaFormat": AVRO_SCHEMA_FORMAT, "schema": _namespaced(avro)},
        "bindings": {"amqp": {"messageType": event_type, "bindingVersion": _AMQP}},
        "examples": [{"name": "example", "summary": "Headers, and the data in Avro's JSON form",
                      "headers": headers, "payload": example_datum(avro)}],
    }


def _namespaced(node: Any) -> Any:
    """The schema with each definition's full name written as ``name`` and ``namespace`` (the same schema to
    Avro; AsyncAPI's Avro schema takes only simple names in ``name``)."""
    if isinstance(node, list):
        return [_namespaced(branch) for branch in node]
    if not isinstance(node, dict):
        return node
    out = {key: _namespaced(value) for key, value in node.items()}
    if node.get("type") in ("record", "enum", "fixed") and "." in str(node.get("name")):
        out["namespace"], _, out["name"] = str(node["name"]).rpartition(".")
    if node.get("type") == "record":
        out["fields"] = [{**item, "type": _namespaced(item["type"])} for item in node["fields"]]
    return out


_HEADER_TEXT = {"type": "string", "minLength": 1}
_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The CloudEvents attributes as AMQP headers (binary content mode).",
    "required": ["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-dataschema"],
    "properties": {
        "ce-specversion": {"type": "string", "const": "1.0"},
        "ce-id": {**_HEADER_TEXT, "description": "Unique per `ce-source`; a copy of the event carries the same."},
        "ce-source": {**_HEADER_TEXT, "description": "The publishing system instance."},
        "ce-type": {**_HEADER_TEXT, "description": "`<system>.<entity>.<event>.v<major>`, also the routing key."},
        "ce-time": {"type": "string", "format": "date-time", "description": "When the source produced the event."},
        "ce-subject": {**_HEADER_TEXT, "description": "The business key: project code, invoice number, document id."},
        "ce-dataschema": {"type": "string", "format": "uri",
                          "description": "The URL of the Avro schema revision the data was written with."},
        "ce-partitionkey": {**_HEADER_TEXT, "description": "The canonical entity, e.g. `project:ENG-ACME-0001`."},
        "ce-traceparent": {**_HEADER_TEXT, "description": "W3C trace context of the publisher."},
        "ce-sequence": {**_HEADER_TEXT, "description": "The source's version of the record, zero-padded: compare "
                                                       "only between events of one entity from one source."},
        "ce-redacted": {"type": "string", "enum": ["true"],
                        "description": "On the topic exchange: the event is about a walled matter and its "
                                       "protected fields were removed (`ce-dataschema` names the redacted schema)."},
    },
}


def example_datum(schema: Any, named: dict[str, Any] | None = None) -> Any:
    """A datum of ``schema`` in Avro's JSON form (timestamps as epoch milliseconds, dates as days), every
    optional field filled: for examples, and for tests that need every field of a revision written."""
    named = {} if named is None else named
    if isinstance(schema, list):
        branches = [branch for branch in schema if branch != "null"] or ["null"]
        return example_datum(branches[0], named)
    if isinstance(schema, str):
        if schema in named:
            return example_datum(named[schema], named)
        return _PRIMITIVE_EXAMPLES[schema]
    kind, logical = schema["type"], schema.get("logicalType")
    if logical in ("timestamp-millis", "timestamp-micros"):
        scale = 1_000 if logical == "timestamp-millis" else 1_000_000
        return int(_EXAMPLE_TIME.timestamp()) * scale
    if logical == "date":
        return (_EXAMPLE_TIME.date() - datetime(1970, 1, 1, tzinfo=UTC).date()).days
    if kind == "record":
        named[schema["name"]] = schema
        return {item["name"]: example_datum(item["type"], named) for item in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][0]
    if kind == "fixed":
        named[schema["name"]] = schema
        return "\u0000" * schema["size"]
    if kind == "array":
        return [example_datum(schema["items"], named)]
    if kind == "map":
        return {"key": example_datum(schema["values"], named)}
    return example_datum(kind, named)


_PRIMITIVE_EXAMPLES: dict[str, Any] = {"null": None, "boolean": True, "int": 1, "long": 1, "float": 1.5,
                                       "double": 1.5, "bytes": "\u0000", "string": "example"}


def _package_version() -> str:
    try:
        return version("ps-integration-hub")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"
