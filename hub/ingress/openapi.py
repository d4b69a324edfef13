"""The ingress's OpenAPI document: what each route accepts and every status it really answers.

FastAPI builds the operations from the routes of :mod:`hub.ingress.app`, which declare their request
bodies and responses with the pieces here (:func:`responses`, :data:`EVENTS_REQUEST`, ...). The app
reads raw bodies itself, so FastAPI sees no body model: everything about a body is declared here.
:func:`document` then adds what belongs to the whole document (the ``Problem`` schema and the other
components, the security schemes) and writes the one vendor webhook route as one path per vendor, each
with its own signature headers.

What JSON Schema cannot say, the descriptions do: event ``data`` must also fit the type's Avro schema
(422 otherwise), binary mode needs ``ce-`` headers the other two modes do without, a Graph body is needed
only when there is no ``validationToken``. Where a bound can only be approximated (an extension value's
1024 UTF-8 bytes, percent-encoded UTF-8 in ``ce-`` headers), the document gives the stricter one: a client
that follows it is never refused for the form of its request.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hub.events import MAX_EXTENSIONS, TYPE_PATTERN
from hub.ingress.binding import BATCH, MAX_ATTRIBUTE_LENGTH, MAX_BATCH, STRUCTURED
from hub.ingress.problems import PROBLEM_JSON, Kind

__all__ = [
    "EVENTS_REQUEST", "EVENTS_SECURITY", "INVOICE_NUMBER", "READINESS_REQUEST", "SOURCE_ID", "VENDOR_WEBHOOKS",
    "VendorWebhook", "document", "generator", "responses",
]

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

#: Path parameter ``number`` of the hard-stop check (the route answers 400 invalid-parameter otherwise).
INVOICE_NUMBER: Json = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                        "description": "The ERP's invoice number: 1 to 64 letters, digits, '.', '_' or '-', "
                                       "starting with a letter or digit."}
#: Path parameter ``source_id`` of the vendor webhooks: a source id of the sources file (404 otherwise).
SOURCE_ID: Json = {"type": "string", "pattern": "^[a-z0-9]+(?:-[a-z0-9]+)*$", "maxLength": 64,
                   "description": "The id of a source in the sources file that is configured for this vendor."}


def _string(description: str, *, max_length: int = MAX_ATTRIBUTE_LENGTH, nullable: bool = False) -> Json:
    """A CloudEvents String; ``nullable``: an optional attribute, which JSON null leaves out."""
    return {"type": ["string", "null"] if nullable else "string", "minLength": 1, "maxLength": max_length,
            "pattern": _STRING_PATTERN, "description": description}


def _ref(name: str) -> Json:
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
        {"type": "array", "items": _ref("JsonValue")},
        {"type": "object", "additionalProperties": _ref("JsonValue")},
    ],
}
_JSON_OBJECT: Json = {"type": "object", "additionalProperties": _ref("JsonValue")}
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
        "errors": {"type": "array", "items": _ref("BatchError"),
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
    "properties": {"accepted": {"type": "array", "items": _ref("AcceptedEvent"),
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
        "id": _string("Unique per `source`: the idempotency key of the event."),
        "source": _string("The publishing system instance, e.g. `erp-sim://acme-psa/prod`; the caller's source "
                          "must be allowed to claim it (403 otherwise)."),
        "type": {"type": "string", "maxLength": MAX_ATTRIBUTE_LENGTH, "pattern": _TYPE_PATTERN,
                 "description": "`<system>.<entity>.<event>.v<major>`; one the caller may publish (403 otherwise) "
                                "and the schema registry knows (422 otherwise)."},
        "subject": _string("The business key: project code, invoice number, document id.", nullable=True),
        "time": {"type": ["string", "null"], "format": "date-time",
                 "description": "RFC 3339, an instant within years 1 to 9999 in UTC."},
        "dataschema": _string("`urn:hub:schema:<Avro full name>:<version>`, the type's own (400 otherwise).",
                              nullable=True),
        "datacontenttype": {"type": ["string", "null"], "description": "A JSON media type with `data` "
                                                                     "(the default); `application/avro` with "
                                                                     "`data_base64`."},
        "partitionkey": _string("Extension: the canonical entity id, e.g. `project:ENG-ACME-0001`.", nullable=True),
        "traceparent": {"type": ["string", "null"], "pattern": _TRACEPARENT_PATTERN,
                        "description": "Extension: W3C trace context of the publisher."},
        "sequence": _string("Extension: the source's version of the record (zero-padded), for ordering.",
                            nullable=True),
        "data": {"type": "object", "additionalProperties": _ref("JsonValue"),
                 "description": "The record, in the JSON form of the type's Avro schema."},
        "data_base64": {"type": "string", "contentEncoding": "base64", "pattern": _BASE64,
                        "description": "The record as Avro binary (schemaless), base64-encoded."},
    },
    "propertyNames": {"pattern": "^(?:[a-z0-9]{1,20}|data_base64)$"},
    "additionalProperties": {
        "description": "Another extension attribute: a string, a 32-bit integer or a boolean (null: absent).",
        "anyOf": [{**_string("A string extension value.", max_length=_EXTENSION_CHARACTERS), "minLength": 0},
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
    "type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": _ref("CloudEvent"),
    "description": (
        f"1 to {MAX_BATCH} structured events, accepted all or none: when any is invalid (or one (`source`, `id`) "
        "appears twice) the answer is 400 `invalid-batch`, its `errors` naming each failing event and the status "
        "it alone would have been answered (422 for data)."),
}
_HOLD_REASON: Json = {
    "type": "object",
    "required": ["code", "artefact", "detail"],
    "properties": {
        "code": {"type": "string", "description": "Stable hold code, e.g. `INVOICE_NOT_DRAFTED`."},
        "artefact": {"type": "string", "description": "The document id or document class concerned."},
        "detail": {"type": "string", "description": "Explanation for finance."},
    },
}
_READINESS: Json = {
    "type": "object",
    "required": ["invoice_number", "project_code", "status", "may_finalize", "hold_reasons"],
    "properties": {
        "invoice_number": {"type": "string"},
        "project_code": {"type": ["string", "null"], "description": "null when the hub never saw it drafted."},
        "status": {"type": "string", "enum": ["ready", "held"]},
        "may_finalize": {"type": "boolean", "description": "True exactly when `status` is `ready`."},
        "hold_reasons": {"type": "array", "items": _ref("HoldReason")},
    },
}
_GRAPH_TEXT: Json = {"type": "string", "minLength": 1}
_GRAPH_NOTIFICATION: Json = {
    "type": "object",
    "description": "One change notification (or, with `lifecycleEvent`, a subscription lifecycle notification).",
    "required": ["subscriptionId", "clientState"],
    "properties": {
        "subscriptionId": _string("The Graph subscription."),
        "clientState": {"type": "string", "description": "The subscription's secret (401 when it does not match)."},
        "changeType": _GRAPH_TEXT,
        "resource": _string("The changed resource, e.g. `drives/b!abc/root`."),
        "lifecycleEvent": _GRAPH_TEXT,
        "tenantId": {"type": ["string", "null"]},
        "id": {"type": ["string", "null"], "description": "Graph's notification id; the event id derives from it."},
        "resourceData": {"type": ["object", "null"], "properties": {"id": _string("The changed item.")},
                         "additionalProperties": _ref("JsonValue")},
    },
    "additionalProperties": _ref("JsonValue"),
    "anyOf": [{"required": ["lifecycleEvent"]}, {"required": ["changeType", "resource"]}],
}
_GRAPH_NOTIFICATIONS: Json = {
    "type": "object",
    "required": ["value"],
    "additionalProperties": _ref("JsonValue"),
    "description": "Microsoft Graph change notifications; each one's `clientState` must be the subscription's.",
    "properties": {"value": {"type": "array", "minItems": 1, "items": _GRAPH_NOTIFICATION}},
}
_COMPONENTS: Json = {
    "schemas": {
        "Problem": _PROBLEM, "BatchError": _BATCH_ERROR, "AcceptedEvent": _ACCEPTED_EVENT, "Accepted": _ACCEPTED,
        "CloudEvent": _CLOUD_EVENT, "CloudEventBatch": _CLOUD_EVENT_BATCH, "HoldReason": _HOLD_REASON,
        "InvoiceReadiness": _READINESS, "JsonValue": _JSON_VALUE,
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

_DESCRIPTIONS: dict[int, str] = {
    202: "Accepted and durable: RabbitMQ confirmed every publish of every event.",
    400: "The request is malformed.",
    401: "Missing or wrong credentials, a signature that does not verify, a stale timestamp or a replayed id.",
    403: "The caller may not do this.",
    404: "No such resource.",
    409: "An accepted (`source`, `id`) sent again with other content.",
    413: "The body is larger than the ingress accepts (`HUB_MAX_BODY_BYTES`).",
    415: "Neither a CloudEvents media type nor `ce-` headers; data neither JSON nor Avro.",
    422: "A `type` with no schema, or data that does not fit the type's Avro schema (`field` names it).",
    429: "Over the source's quota; `Retry-After` says when to try again.",
    431: "The request line and headers are longer than the HTTP server accepts (16 KiB).",
    500: "An unexpected failure; nothing was accepted that a re-send would duplicate.",
    501: "A Transfer-Encoding other than one `chunked`.",
    503: "RabbitMQ or Redis is down, blocked or nacking; nothing was accepted. `Retry-After` says when to retry.",
}
_RETRY_AFTER: Json = {"description": "Seconds to wait before trying again.", "required": True,
                      "schema": {"type": "integer", "minimum": 0}}


def _problem_response(status: int, description: str | None, kinds: Iterable[Kind] | None) -> Json:
    text = description or _DESCRIPTIONS[status]
    listed = ", ".join(f"`{kind.uri}`" for kind in (kinds or [kind for kind in Kind if kind.status == status]))
    response: Json = {
        "description": f"{text} Problem types: {listed}.",
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    if status in (Kind.RATE_LIMITED.status, Kind.UNAVAILABLE.status):
        response["headers"] = {"Retry-After": _RETRY_AFTER}
    return response


def _quota_headers(*, required: bool) -> Json:
    return {
        "RateLimit-Limit": {"description": "The source's quota in its window.", "required": required,
                            "schema": {"type": "integer", "minimum": 0}},
        "RateLimit-Remaining": {"description": "What is left of it after this request.", "required": required,
                                "schema": {"type": "integer", "minimum": 0}},
    }


def _accepted(description: str, *, quota_headers_required: bool) -> Json:
    return {"description": description, "headers": _quota_headers(required=quota_headers_required),
            "content": {"application/json": {"schema": _ref("Accepted")}}}


#: Answers other than problems, by route name and status.
_SUCCESSES: dict[tuple[str, int], Json] = {
    ("events", 202): _accepted(_DESCRIPTIONS[202], quota_headers_required=True),
    ("webhook", 202): _accepted(
        _DESCRIPTIONS[202] + " An event the hub does not take (a DocuSign event other than `envelope-completed`) "
        "is acknowledged with an empty list and no quota headers.", quota_headers_required=False),
    ("readiness", 200): {
        "description": "The gate's verdict now: `held` with every reason, or `ready`. Never cached.",
        "headers": {"Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-store"]}},
                    **_quota_headers(required=True)},
        "content": {"application/json": {"schema": _ref("InvoiceReadiness")}}},
    ("healthz", 200): {"description": "The process is alive.", "content": {"application/json": {"schema": {
        "type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}},
    ("readyz", 200): {"description": "RabbitMQ and Redis are reachable.", "content": {"application/json": {
        "schema": {"type": "object", "required": ["status", "rabbitmq", "redis"], "properties": {
            "status": {"type": "string", "enum": ["ready"]}, "rabbitmq": {"type": "string", "enum": ["ok"]},
            "redis": {"type": "string", "enum": ["ok"]}}}}}},
}
_PROBLEM_DESCRIPTIONS: dict[tuple[str, int], str] = {
    ("events", 400): "The request is malformed: bad JSON, a missing or invalid attribute or `ce-` header, an "
                     "invalid batch (see `errors`), a bad Content-Length or HTTP framing.",
    ("events", 403): "A `type` the source may not publish or a `source` it may not claim.",
    ("readiness", 400): "The invoice number is not valid.",
    ("readiness", 403): "The caller's source may not ask for invoice readiness (only with an API key).",
    ("readiness", 404): "This ingress does not serve the invoice-readiness gate.",
    ("readiness", 503): "The readiness facts cannot be read now: no verdict (a hard stop fails closed).",
    ("webhook", 400): "The body is not the vendor's JSON, or the notification it holds is invalid.",
    ("webhook", 401): "The vendor signature (or Graph `clientState`) does not verify, or the source takes no "
                      "webhooks of this vendor.",
    ("webhook", 403): "The sources file does not let this source claim `<vendor>://<source id>` or publish the "
                      "event's type (a configuration error).",
    ("webhook", 404): "No webhook source with this id.",
    ("webhook", 409): "The vendor sent again an event id the hub accepted with other content.",
    ("readyz", 503): "RabbitMQ or Redis is unreachable.",
}


#: The problem types a route answers with a status, where not every type of that status can happen there.
_PROBLEM_KINDS: dict[tuple[str, int], tuple[Kind, ...]] = {
    ("events", 400): tuple(kind for kind in Kind if kind.status == 400 and kind is not Kind.INVALID_PARAMETER),
    ("readiness", 400): (Kind.INVALID_PARAMETER,),
    ("webhook", 400): (Kind.MALFORMED_JSON, Kind.JSON_TOO_COMPLEX, Kind.INVALID_CLOUDEVENT, Kind.INVALID_HEADER),
}


def responses(route: str, *statuses: int) -> dict[int | str, Json]:
    """The ``responses=`` of one route: its success answers and a problem response for each error status."""
    found: dict[int | str, Json] = {}
    for status in statuses:
        if (route, status) in _SUCCESSES:
            found[status] = copy.deepcopy(_SUCCESSES[route, status])
        else:
            found[status] = _problem_response(status, _PROBLEM_DESCRIPTIONS.get((route, status)),
                                              _PROBLEM_KINDS.get((route, status)))
    return found


def _header(name: str, description: str, schema: Json, *, required: bool = False, example: Any = None) -> Json:
    parameter: Json = {"name": name, "in": "header", "required": required, "description": description,
                       "schema": schema}
    if example is not None:
        parameter["example"] = example
    return parameter


_CE_STRING: Json = {"type": "string", "minLength": 1, "maxLength": MAX_ATTRIBUTE_LENGTH, "pattern": _HEADER_PATTERN}


def _ce_header(attribute: str, description: str, schema: Json = _CE_STRING, *, example: str | None = None) -> Json:
    return _header(f"ce-{attribute}", f"Binary mode: {description}", dict(schema), example=example)


_CE_HEADERS: list[Json] = [
    _ce_header("specversion", "required; `1.0`.", {"type": "string", "enum": ["1.0"]}, example="1.0"),
    _ce_header("id", "required; unique per source.", example="evt-0002"),
    _ce_header("source", "required; the publishing system instance.", example=_EXAMPLE_SOURCE),
    _ce_header("type", "required; `<system>.<entity>.<event>.v<major>`.",
               {"type": "string", "maxLength": MAX_ATTRIBUTE_LENGTH, "pattern": _TYPE_PATTERN},
               example="erp.project.created.v1"),
    _ce_header("subject", "the business key.", example="ENG-ACME-0001"),
    _ce_header("time", "RFC 3339 date-time.", {"type": "string", "format": "date-time"}),
    _ce_header("dataschema", "the type's `urn:hub:schema:<Avro full name>:<version>`."),
    _ce_header("partitionkey", "extension: canonical entity id."),
    _ce_header("traceparent", "extension: W3C trace context.", {"type": "string", "pattern": _TRACEPARENT_PATTERN}),
    _ce_header("sequence", "extension: the source's version of the record."),
    _header("webhook-source", "With Standard Webhooks signatures: the id of the signing source, so only its "
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
        STRUCTURED: {"schema": _ref("CloudEvent")},
        BATCH: {"schema": _ref("CloudEventBatch"), "example": [_EXAMPLE_EVENT]},
        "application/json": {"schema": {**_JSON_OBJECT, "description": "Binary mode: the event's data, in the "
                                        "JSON form of the type's Avro schema."},
                             "example": _EXAMPLE_DATA},
        "application/avro": {"schema": {"type": "string", "format": "binary",
                                        "description": "Binary mode: the event's data as schemaless Avro binary."}},
    }},
    "security": EVENTS_SECURITY,
}
#: ``openapi_extra`` of ``GET /v1/invoices/{number}/readiness``.
READINESS_REQUEST: Json = {"security": [{"ApiKey": []}]}


@dataclass(frozen=True)
class VendorWebhook:
    """How one vendor's webhooks look in the document: its signature headers, query and body."""

    title: str
    description: str
    parameters: tuple[Json, ...] = ()
    body: Json = field(default_factory=lambda: {"type": "object"})
    body_required: bool = True
    extra_responses: Mapping[int, Json] = field(default_factory=dict)


_SIGNATURE: Json = {"type": "string", "minLength": 1}

#: The vendors the ingress has adapters for, by path segment.
VENDOR_WEBHOOKS: dict[str, VendorWebhook] = {
    "docusign": VendorWebhook(
        title="DocuSign Connect",
        description="DocuSign Connect (JSON, HMAC on): `envelope-completed` becomes `esign.envelope.completed.v1`; "
                    "other events are acknowledged and not published.",
        parameters=(_header("X-DocuSign-Signature-1", "Base64 HMAC-SHA256 of the raw body with a Connect key; "
                            "`X-DocuSign-Signature-2`... are also tried while keys rotate.", _SIGNATURE,
                            required=True),),
        body={**_JSON_OBJECT, "description": "A DocuSign Connect message."},
    ),
    "graph": VendorWebhook(
        title="Microsoft Graph change notifications",
        description="Microsoft Graph change notifications. A subscription's validation request carries "
                    "`validationToken`, echoed as 200 `text/plain` (the body is then not read); otherwise the "
                    "body is required, every notification's `clientState` is checked, and they become "
                    "`dms.change.notified.v1` (the item is fetched later by an actor).",
        parameters=({"name": "validationToken", "in": "query", "required": False,
                     "description": "Graph's subscription validation: echoed back as it came.",
                     "schema": {"type": "string", "minLength": 1}},),
        body=_GRAPH_NOTIFICATIONS,
        body_required=False,
        extra_responses={200: {"description": "The `validationToken`, echoed (subscription validation).",
                               "content": {"text/plain": {"schema": {"type": "string"}}}}},
    ),
    "box": VendorWebhook(
        title="Box webhooks v2",
        description="Box webhooks v2: either signature over body and delivery timestamp, refused when older "
                    "than 10 minutes.",
        parameters=(
            _header("BOX-SIGNATURE-PRIMARY", "Base64 HMAC-SHA256 with the primary key.", _SIGNATURE, required=True),
            _header("BOX-SIGNATURE-SECONDARY", "Base64 HMAC-SHA256 with the secondary key (either may verify).",
                    _SIGNATURE),
            _header("BOX-DELIVERY-TIMESTAMP", "When Box sent it (RFC 3339); signed with the body.",
                    {"type": "string", "format": "date-time"}, required=True),
            _header("BOX-SIGNATURE-VERSION", "Always `1`.", {"type": "string", "enum": ["1"]}, required=True),
            _header("BOX-SIGNATURE-ALGORITHM", "Always `HmacSHA256`.", {"type": "string", "enum": ["HmacSHA256"]},
                    required=True),
        ),
        body={**_JSON_OBJECT, "description": "A Box webhook v2 payload."},
    ),
}

_ERRORS = (
    "Every error is `application/problem+json` (RFC 9457), the `Problem` schema. Besides the statuses listed "
    "per operation, any request may be answered 404 (no such path) or 405 (wrong method, with `Allow`), and the "
    "HTTP server answers a request it cannot parse with 400 (`invalid-header`), 431 (headers over 16 KiB) or "
    "501 (a Transfer-Encoding other than `chunked`) before any route sees it. An unexpected failure is 500 "
    "(`internal`): nothing was accepted that a re-send would duplicate."
)


def generator(app: FastAPI, *, vendors: Iterable[str]) -> Callable[[], Json]:
    """A replacement for ``app.openapi``: :func:`document`, built on first use and kept."""
    mounted = tuple(sorted(vendors))

    def openapi() -> Json:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, vendors=mounted)
        return app.openapi_schema

    return openapi


def document(app: FastAPI, *, vendors: Iterable[str]) -> Json:
    """The OpenAPI document of ``app``: FastAPI's, completed, with the webhook route written per vendor."""
    doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                      description=f"{app.description}\n\n{_ERRORS}", routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # Parameters are plain strings the app checks itself: FastAPI's own 422 never happens.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(copy.deepcopy(_COMPONENTS["schemas"]))
    components["securitySchemes"] = copy.deepcopy(_COMPONENTS["securitySchemes"])
    paths: Json = doc["paths"]
    for path_item in paths.values():
        for operation in path_item.values():
            _drop_fastapi_validation_error(operation)
    generic = paths.pop("/v1/webhooks/{vendor}/{source_id}", None)
    if generic is not None:
        for vendor in sorted(vendors):
            paths[f"/v1/webhooks/{vendor}/{{source_id}}"] = {"post": _vendor_operation(generic["post"], vendor)}
    return doc


def _drop_fastapi_validation_error(operation: Json) -> None:
    answer = operation.get("responses", {}).get("422", {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    if schema.get("$ref", "").endswith("/HTTPValidationError"):
        del operation["responses"]["422"]


def _vendor_operation(generic: Json, vendor: str) -> Json:
    spec = VENDOR_WEBHOOKS.get(vendor, VendorWebhook(title=vendor, description=f"Webhooks of {vendor}."))
    operation = copy.deepcopy(generic)
    operation["summary"] = f"{spec.title} webhooks of one configured source"
    operation["description"] = spec.description
    operation["operationId"] = f"receive_{vendor}_webhook"
    parameters = [p for p in operation.get("parameters", []) if p["name"] != "vendor"]
    operation["parameters"] = parameters + copy.deepcopy(list(spec.parameters))
    operation["requestBody"] = {"required": spec.body_required,
                                "content": {"application/json": {"schema": copy.deepcopy(spec.body)}}}
    merged = {**operation["responses"], **{str(status): copy.deepcopy(answer)
                                           for status, answer in spec.extra_responses.items()}}
    operation["responses"] = dict(sorted(merged.items()))
    return operation
