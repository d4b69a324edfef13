"""The schemas and request pieces of the ingress's OpenAPI document that belong to the runtime.

The ``Problem`` answer, the CloudEvents 1.0 event and batch, the accepted-events answer, any JSON value the
strict reader takes, the security schemes, and the request of ``POST /v1/events`` (three content modes and
the ``ce-`` headers). :mod:`hub.ingress.openapi` assembles them with the routes' responses; a package that
contributes a route or a webhook adapter describes its own parts with the helpers here (:func:`ref`,
:func:`header`, :func:`string_schema`, :func:`json_object`).

What JSON Schema cannot say, the descriptions do: event ``data`` must also fit the type's Avro schema (422
otherwise), binary mode needs ``ce-`` headers the other two modes do without. Where a bound can only be
approximated (an extension value's 1024 UTF-8 bytes, percent-encoded UTF-8 in ``ce-`` headers), the document
gives the stricter one: a client that follows it is never refused for the form of its request.
"""

from __future__ import annotations

from typing import Any

from hub.events import MAX_EXTENSIONS, TYPE_PATTERN
from hub.ingress.binding import BATCH, MAX_ATTRIBUTE_LENGTH, MAX_BATCH, STRUCTURED
from hub.ingress.problems import Kind

__all__ = [
    "COMPONENTS", "EVENTS_REQUEST", "EVENTS_SECURITY", "JSON_OBJECT", "SOURCE_ID", "Json", "header", "json_object",
    "ref", "string_schema",
]

#: A JSON object of the document.
Json = dict[str, Any]

_SCHEMAS = "#/components/schemas/"
#: CloudEvents String: no C0 or C1 control character, DEL or Unicode noncharacter (JSON text cannot hold a
#: lone surrogate the ingress would accept either). Noncharacters of the other planes are written literally:
#: ECMA-262 has no escape for them outside its ``u`` mode.
_NONCHARACTERS = "".join(chr(plane * 0x10000 + low) for plane in range(1, 17) for low in (0xFFFE, 0xFFFF))
_STRING_PATTERN = "^[^\\x00-\\x1F\\x7F-\\x9F\\uFDD0-\\uFDEF\\uFFFE\\uFFFF" + _NONCHARACTERS + "]*$"
#: A ``ce-`` header value: printable ASCII, percent-encoding of printable ASCII, not blank.
_HEADER_CHAR = "[ -$&-~]|%(?:[2-6][0-9A-Fa-f]|7[0-9A-Ea-e])"
_HEADER_VISIBLE = "[!-$&-~]|%(?:[2-6][0-9A-Fa-f]|7[0-9A-Ea-e])"
_HEADER_PATTERN = f"^ *(?:{_HEADER_VISIBLE})(?:{_HEADER_CHAR})*$"
_TYPE_PATTERN = TYPE_PATTERN.pattern
_TRACEPARENT_PATTERN = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_JSON_MEDIA_TYPE = "^(?:application|text)/(?:[a-z0-9.+-]+\\+)?json(?:;[ -~]*)?$"
_AVRO_MEDIA_TYPE = "^application/avro(?:;[ -~]*)?$"
_BASE64 = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: The longest extension value that fits the 1024 UTF-8 bytes the ingress allows, whatever its characters.
_EXTENSION_CHARACTERS = 256
_INT32: Json = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}

#: Path parameter ``source_id`` of the vendor webhooks: a source id of the sources file (404 otherwise).
SOURCE_ID: Json = {"type": "string", "pattern": "^[a-z0-9]+(?:-[a-z0-9]+)*$", "maxLength": 64,
                   "description": "The id of a source in the sources file that is configured for this vendor."}


def string_schema(description: str, *, max_length: int = MAX_ATTRIBUTE_LENGTH, nullable: bool = False) -> Json:
    """A CloudEvents String; ``nullable``: an optional attribute, which JSON null leaves out."""
    return {"type": ["string", "null"] if nullable else "string", "minLength": 1, "maxLength": max_length,
            "pattern": _STRING_PATTERN, "description": description}


def ref(name: str) -> Json:
    """A reference to one of the document's component schemas (:data:`COMPONENTS`)."""
    return {"$ref": _SCHEMAS + name}


_EXAMPLE_DATA: Json = {
    "project_code": "ENG-ACME-0001", "client_id": "C-ACME", "name": "ACME operating model redesign",
    "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
    "partner": "p.schmidt@example-firm.com", "billing_model": "time_and_materials", "status": "planned",
    "value": {"amount_minor": 48_000_000, "currency": "EUR"}, "start_date": 20822, "end_date": 20999,
    "conflicted_groups": [], "updated_at": 1_795_770_000_000,
}
_EXAMPLE_SOURCE = "erp-sim://acme-psa/prod"
_EXAMPLE_EVENT: Json = {
    "specversion": "1.0", "id": "evt-0001", "source": _EXAMPLE_SOURCE, "type": "erp.project.created.v1",
    "subject": "ENG-ACME-0001", "time": "2026-11-27T09:00:00Z", "datacontenttype": "application/json",
    "partitionkey": "project:ENG-ACME-0001", "data": _EXAMPLE_DATA,
}

#: Largest integer the strict JSON reader takes (19 digits, so that it fits an Avro long's magnitude).
_MAX_INTEGER = 10**19 - 1
_JSON_VALUE: Json = {
    "description": "Any JSON value the ingress's strict reader takes: nesting at most 32 deep, numbers of at "
                   "most 19 digits, no duplicate keys, no lone surrogates, no NaN or Infinity.",
    "anyOf": [
        {"type": ["string", "boolean", "null"]},
        {"type": "number", "minimum": -_MAX_INTEGER, "maximum": _MAX_INTEGER},
        {"type": "array", "items": ref("JsonValue")},
        {"type": "object", "additionalProperties": ref("JsonValue")},
    ],
}
#: A JSON object of any JSON values the strict reader takes.
JSON_OBJECT: Json = {"type": "object", "additionalProperties": ref("JsonValue")}


def json_object(description: str) -> Json:
    """:data:`JSON_OBJECT` with a description (a vendor's body, binary mode's data)."""
    return {**JSON_OBJECT, "description": description}

_PROBLEM: Json = {
    "type": "object",
    "description": "RFC 9457 problem details; every error answer of the ingress is one.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "enum": sorted({kind.uri for kind in Kind}),
                 "description": "Stable URI of the error kind (see the README's table of errors)."},
        "title": {"type": "string", "description": "Short title of the kind."},
        "status": {"type": "integer", "enum": sorted({kind.status for kind in Kind}),
                   "description": "The HTTP status, repeated."},
        "detail": {"type": "string", "description": "What was wrong with this request."},
        "instance": {"type": "string", "description": "The path of the refused request."},
        "field": {"type": "string",
                  "description": "The attribute, header or data field at fault (`data.region`, `ce-id`)."},
        "errors": {"type": "array", "items": ref("BatchError"),
                   "description": "A refused batch: each failing event (none of the batch was accepted)."},
    },
}
_BATCH_ERROR: Json = {
    "type": "object",
    "required": ["index", "type", "status", "detail"],
    "properties": {
        "index": {"type": "integer", "minimum": 0, "description": "Position of the event in the batch."},
        "type": {"type": "string", "enum": sorted({kind.uri for kind in Kind})},
        "status": {"type": "integer", "description": "The status this event alone would have been answered."},
        "detail": {"type": "string"},
        "field": {"type": "string"},
    },
}
_ACCEPTED_EVENT: Json = {
    "type": "object",
    "required": ["id", "source", "type", "status"],
    "properties": {
        "id": {"type": "string"}, "source": {"type": "string"}, "type": {"type": "string"},
        "status": {"type": "string", "enum": ["accepted"]},
        "resent": {"type": "boolean", "enum": [True],
                   "description": "Present on a re-send of an accepted (`source`, `id`): not published again."},
    },
}
_ACCEPTED: Json = {
    "type": "object",
    "required": ["accepted"],
    "properties": {"accepted": {"type": "array", "items": ref("AcceptedEvent"),
                                "description": "One entry per event, in request order."}},
}
_CLOUD_EVENT: Json = {
    "type": "object",
    "description": (
        "A CloudEvents 1.0 event in the JSON format; an optional attribute given as null is left out. `data` is "
        "the JSON form of a record of the type's Avro schema (`timestamp-millis` as epoch milliseconds, `date` as "
        "days since 1970-01-01); data that does not fit it, or a `type` with no schema, is answered 422. Extension "
        "attributes other than `partitionkey`, `traceparent` and `sequence` are carried as strings; at most "
        f"{MAX_EXTENSIONS} per event, each at most 1024 bytes of UTF-8."),
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": string_schema("Unique per `source`: the idempotency key of the event."),
        "source": string_schema("The publishing system instance, e.g. `erp-sim://acme-psa/prod`; the caller's source "
                          "must be allowed to claim it (403 otherwise)."),
        "type": {"type": "string", "maxLength": MAX_ATTRIBUTE_LENGTH, "pattern": _TYPE_PATTERN,
                 "description": "`<system>.<entity>.<event>.v<major>`; one the caller may publish (403 otherwise) "
                                "and the schema registry knows (422 otherwise)."},
        "subject": string_schema("The business key: a project code, a document id.", nullable=True),
        "time": {"type": ["string", "null"], "format": "date-time",
                 "description": "RFC 3339, an instant within years 1 to 9999 in UTC."},
        "dataschema": string_schema("The URL of the type's current schema revision, `.../v1/schemas/<type>/<version>` "
                                    "(`GET /v1/schemas` lists them), or its former "
                                    "`urn:hub:schema:<Avro full name>:<version>` (400 otherwise).",
                              nullable=True),
        "datacontenttype": {"type": ["string", "null"], "description": "A JSON media type with `data` "
                                                                     "(the default); `application/avro` with "
                                                                     "`data_base64`."},
        "partitionkey": string_schema("Extension: the canonical entity id, e.g. `project:ENG-ACME-0001`.",
                                      nullable=True),
        "traceparent": {"type": ["string", "null"], "pattern": _TRACEPARENT_PATTERN,
                        "description": "Extension: W3C trace context of the publisher."},
        "sequence": string_schema("Extension: the source's version of the record (zero-padded), for ordering.",
                            nullable=True),
        "data": {"type": "object", "additionalProperties": ref("JsonValue"),
                 "description": "The record, in the JSON form of the type's Avro schema."},
        "data_base64": {"type": "string", "contentEncoding": "base64", "pattern": _BASE64,
                        "description": "The record as Avro binary (schemaless), base64-encoded."},
    },
    "propertyNames": {"pattern": "^(?:[a-z0-9]{1,20}|data_base64)$"},
    "additionalProperties": {
        "description": "Another extension attribute: a string, a 32-bit integer or a boolean (null: absent).",
        "anyOf": [{**string_schema("A string extension value.", max_length=_EXTENSION_CHARACTERS), "minLength": 0},
                  _INT32, {"type": "boolean"}, {"type": "null"}],
    },
    # The 4 required attributes, data and the most extensions: JSON Schema cannot count extensions apart from
    # the optional attributes, so an event with those may have more than this (conservative) bound says.
    "maxProperties": 5 + MAX_EXTENSIONS,
    "oneOf": [
        {"required": ["data"], "properties": {"data_base64": False,
                                              "datacontenttype": {"pattern": _JSON_MEDIA_TYPE}}},
        {"required": ["data_base64", "datacontenttype"],
         "properties": {"data": False, "datacontenttype": {"type": "string", "pattern": _AVRO_MEDIA_TYPE}}},
    ],
    "example": _EXAMPLE_EVENT,
}
_CLOUD_EVENT_BATCH: Json = {
    "type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": ref("CloudEvent"),
    "description": (
        f"1 to {MAX_BATCH} structured events, accepted all or none: when any is invalid (or one (`source`, `id`) "
        "appears twice) the answer is 400 `invalid-batch`, its `errors` naming each failing event and the status "
        "it alone would have been answered (422 for data)."),
}
#: The components every ingress document has: the schemas above and the security schemes.
COMPONENTS: Json = {
    "schemas": {
        "Problem": _PROBLEM, "BatchError": _BATCH_ERROR, "AcceptedEvent": _ACCEPTED_EVENT, "Accepted": _ACCEPTED,
        "CloudEvent": _CLOUD_EVENT, "CloudEventBatch": _CLOUD_EVENT_BATCH, "JsonValue": _JSON_VALUE,
    },
    "securitySchemes": {
        "ApiKey": {"type": "http", "scheme": "bearer",
                   "description": "`Authorization: Bearer <API key>`; the sources file keeps the key's SHA-256."},
        "WebhookId": {"type": "apiKey", "in": "header", "name": "webhook-id",
                      "description": "Standard Webhooks: the message id (a re-used id with another body is 401)."},
        "WebhookTimestamp": {"type": "apiKey", "in": "header", "name": "webhook-timestamp",
                             "description": "Standard Webhooks: Unix seconds, within 5 minutes of the ingress's."},
        "WebhookSignature": {"type": "apiKey", "in": "header", "name": "webhook-signature",
                             "description": "Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, "
                                            "several separated by spaces while secrets rotate."},
    },
}
#: Who may call ``POST /v1/events``: an API key, or a Standard Webhooks signature (all three headers).
EVENTS_SECURITY: list[Json] = [{"ApiKey": []}, {"WebhookId": [], "WebhookTimestamp": [], "WebhookSignature": []}]


def header(name: str, description: str, schema: Json, *, required: bool = False, example: Any = None) -> Json:
    """A request header parameter."""
    parameter: Json = {"name": name, "in": "header", "required": required, "description": description,
                       "schema": schema}
    if example is not None:
        parameter["example"] = example
    return parameter


_CE_STRING: Json = {"type": "string", "minLength": 1, "maxLength": MAX_ATTRIBUTE_LENGTH, "pattern": _HEADER_PATTERN}


def _ce_header(attribute: str, description: str, schema: Json = _CE_STRING, *, example: str | None = None) -> Json:
    return header(f"ce-{attribute}", f"Binary mode: {description}", dict(schema), example=example)


_CE_HEADERS: list[Json] = [
    _ce_header("specversion", "required; `1.0`.", {"type": "string", "enum": ["1.0"]}, example="1.0"),
    _ce_header("id", "required; unique per source.", example="evt-0002"),
    _ce_header("source", "required; the publishing system instance.", example=_EXAMPLE_SOURCE),
    _ce_header("type", "required; `<system>.<entity>.<event>.v<major>`.",
               {"type": "string", "maxLength": MAX_ATTRIBUTE_LENGTH, "pattern": _TYPE_PATTERN},
               example="erp.project.created.v1"),
    _ce_header("subject", "the business key.", example="ENG-ACME-0001"),
    _ce_header("time", "RFC 3339 date-time.", {"type": "string", "format": "date-time"}),
    _ce_header("dataschema", "the URL of the type's current schema revision, `.../v1/schemas/<type>/<version>`."),
    _ce_header("partitionkey", "extension: canonical entity id."),
    _ce_header("traceparent", "extension: W3C trace context.", {"type": "string", "pattern": _TRACEPARENT_PATTERN}),
    _ce_header("sequence", "extension: the source's version of the record."),
    header("webhook-source", "With Standard Webhooks signatures: the id of the signing source, so only its "
            "secrets are tried (no such source: 401). Not read with an API key.", {"type": "string"}),
]

#: ``openapi_extra`` of ``POST /v1/events``: its three content modes, the ``ce-`` headers and who may call.
EVENTS_REQUEST: Json = {
    "description": (
        "CloudEvents 1.0 in any HTTP content mode, chosen by Content-Type:\n\n"
        f"- **structured**: `{STRUCTURED}`, one event as a JSON object;\n"
        f"- **batch**: `{BATCH}`, a JSON array of 1 to {MAX_BATCH} structured events, all or nothing;\n"
        "- **binary**: any other JSON media type (`application/json`, `text/json`, `application/*+json`) or "
        "`application/avro`, the body being the event's data and the attributes `ce-` headers: `ce-specversion`, "
        "`ce-id`, `ce-source` and `ce-type` are required in this mode (400 otherwise; 415 with none at all). "
        "Header values are percent-decoded (the CloudEvents HTTP binding); the patterns here allow printable "
        "ASCII, the ingress also takes percent-encoded UTF-8. Further `ce-<name>` headers (1 to 20 lower-case "
        "letters and digits) are extension attributes, as in structured mode.\n\n"
        "202 is sent only once RabbitMQ confirmed every publish of every event; a re-send of an accepted "
        "(`source`, `id`) is answered with its first outcome (`resent: true`) and not published again."),
    "parameters": _CE_HEADERS,
    "requestBody": {"required": True, "content": {
        STRUCTURED: {"schema": ref("CloudEvent")},
        BATCH: {"schema": ref("CloudEventBatch"), "example": [_EXAMPLE_EVENT]},
        "application/json": {"schema": {**JSON_OBJECT, "description": "Binary mode: the event's data, in the "
                                        "JSON form of the type's Avro schema."},
                             "example": _EXAMPLE_DATA},
        "application/avro": {"schema": {"type": "string", "format": "binary",
                                        "description": "Binary mode: the event's data as schemaless Avro binary."}},
    }},
    "security": EVENTS_SECURITY,
}
