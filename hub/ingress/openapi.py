"""The ingress's OpenAPI document: what each route accepts and every status it really answers.

FastAPI builds the operations from the routes: the app's own (:mod:`hub.ingress.app`) and those of the
routers the composition root mounts, each declaring its responses with :func:`responses` and the schemas of
:mod:`hub.ingress.openapi_schemas`. The app reads raw bodies itself, so FastAPI sees no body model:
everything about a body is declared by the route. :func:`document` then adds what belongs to the whole
document (the ``Problem`` schema and the other components, the security schemes) and writes the one
vendor webhook route as one path per mounted adapter, each with its own :class:`VendorWebhook` (signature
headers, query, body, extra answers such as a handshake).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hub.ingress.openapi_schemas import COMPONENTS, JSON_OBJECT, Json, header, json_object, ref, string_schema
from hub.ingress.problems import PROBLEM_JSON, Kind

__all__ = [
    "EVENTS_RESPONSES", "HEALTHZ_RESPONSES", "JSON_OBJECT", "READYZ_RESPONSES", "WEBHOOK_PATH", "WEBHOOK_RESPONSES",
    "Json", "VendorWebhook", "document", "generator", "header", "json_object", "problem_response",
    "quota_headers", "ref", "responses", "string_schema",
]

#: The one route of every vendor's webhooks; the document writes it as one path per vendor.
WEBHOOK_PATH = "/v1/webhooks/{vendor}/{source_id}"

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


def problem_response(status: int, description: str | None = None, kinds: Iterable[Kind] | None = None) -> Json:
    """A problem+json answer with ``status``: its problem types (``kinds``, or every kind of that status)."""
    text = description or _DESCRIPTIONS[status]
    listed = ", ".join(f"`{kind.uri}`" for kind in (kinds or [kind for kind in Kind if kind.status == status]))
    response: Json = {
        "description": f"{text} Problem types: {listed}.",
        "content": {PROBLEM_JSON: {"schema": ref("Problem")}},
    }
    if status in (Kind.RATE_LIMITED.status, Kind.UNAVAILABLE.status):
        response["headers"] = {"Retry-After": _RETRY_AFTER}
    return response


def quota_headers(*, required: bool) -> Json:
    """The ``RateLimit-*`` headers of an answer that charged the source's quota."""
    return {
        "RateLimit-Limit": {"description": "The source's quota in its window.", "required": required,
                            "schema": {"type": "integer", "minimum": 0}},
        "RateLimit-Remaining": {"description": "What is left of it after this request.", "required": required,
                                "schema": {"type": "integer", "minimum": 0}},
    }


def responses(*statuses: int, answers: Mapping[int, Json] | None = None, problems: Mapping[int, str] | None = None,
              kinds: Mapping[int, Iterable[Kind]] | None = None) -> dict[int | str, Json]:
    """The ``responses=`` of one route: ``answers`` for its successes, a problem response for each other status.

    ``problems`` describes a status where the generic description is not enough; ``kinds`` lists the problem
    types of a status where not every type of that status can happen on the route.
    """
    answers, problems, kinds = answers or {}, problems or {}, kinds or {}
    return {status: copy.deepcopy(answers[status]) if status in answers
            else problem_response(status, problems.get(status), kinds.get(status)) for status in statuses}


def _accepted(description: str, *, quota_headers_required: bool) -> Json:
    return {"description": description, "headers": quota_headers(required=quota_headers_required),
            "content": {"application/json": {"schema": ref("Accepted")}}}


#: ``POST /v1/events``.
EVENTS_RESPONSES = responses(
    202, 400, 401, 403, 409, 413, 415, 422, 429, 431, 500, 501, 503,
    answers={202: _accepted(_DESCRIPTIONS[202], quota_headers_required=True)},
    problems={400: "The request is malformed: bad JSON, a missing or invalid attribute or `ce-` header, an "
                   "invalid batch (see `errors`), a bad Content-Length or HTTP framing.",
              403: "A `type` the source may not publish or a `source` it may not claim."},
    kinds={400: tuple(kind for kind in Kind if kind.status == 400 and kind is not Kind.INVALID_PARAMETER)},
)
#: ``POST /v1/webhooks/{vendor}/{source_id}``, before each vendor adds its own answers.
WEBHOOK_RESPONSES = responses(
    202, 400, 401, 403, 404, 409, 413, 429, 503,
    answers={202: _accepted(_DESCRIPTIONS[202] + " An event the hub does not take (see the vendor's description) "
                            "is acknowledged with an empty list and no quota headers.",
                            quota_headers_required=False)},
    problems={400: "The body is not the vendor's JSON, or the notification it holds is invalid.",
              401: "The vendor's signature (or shared secret) does not verify, or the source takes no webhooks "
                   "of this vendor.",
              403: "The sources file does not let this source claim `<vendor>://<source id>` or publish the "
                   "event's type (a configuration error).",
              404: "No webhook source with this id.",
              409: "The vendor sent again an event id the hub accepted with other content."},
    kinds={400: (Kind.MALFORMED_JSON, Kind.JSON_TOO_COMPLEX, Kind.INVALID_CLOUDEVENT, Kind.INVALID_HEADER)},
)
#: ``GET /healthz``.
HEALTHZ_RESPONSES = responses(200, answers={200: {
    "description": "The process is alive.", "content": {"application/json": {"schema": {
        "type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}}})
#: ``GET /readyz``.
READYZ_RESPONSES = responses(200, 503, answers={200: {
    "description": "RabbitMQ and Redis are reachable; `redis_data` says whether Redis kept its data (`ok`), "
                   "or lost it (`lost at <time>`, for a day after a worker noticed).",
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["status", "rabbitmq", "redis", "redis_data"], "properties": {
            "status": {"type": "string", "enum": ["ready"]}, "rabbitmq": {"type": "string", "enum": ["ok"]},
            "redis": {"type": "string", "enum": ["ok"]}, "redis_data": {"type": "string"}}}}}}},
    problems={503: "RabbitMQ or Redis is unreachable."})


@dataclass(frozen=True)
class VendorWebhook:
    """How one vendor's webhooks look in the document: its signature headers, query and body (its adapter's)."""

    title: str
    description: str
    parameters: tuple[Json, ...] = ()
    body: Json = field(default_factory=lambda: {"type": "object"})
    body_required: bool = True
    extra_responses: Mapping[int, Json] = field(default_factory=dict)


_ERRORS = (
    "Every error is `application/problem+json` (RFC 9457), the `Problem` schema. Besides the statuses listed "
    "per operation, any request may be answered 404 (no such path) or 405 (wrong method, with `Allow`), and the "
    "HTTP server answers a request it cannot parse with 400 (`invalid-header`), 431 (headers over 16 KiB) or "
    "501 (a Transfer-Encoding other than `chunked`) before any route sees it. An unexpected failure is 500 "
    "(`internal`): nothing was accepted that a re-send would duplicate."
)


def generator(app: FastAPI, *, vendors: Mapping[str, VendorWebhook]) -> Callable[[], Json]:
    """A replacement for ``app.openapi``: :func:`document`, built on first use and kept."""
    mounted = dict(vendors)

    def openapi() -> Json:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, vendors=mounted)
        return app.openapi_schema

    return openapi


def document(app: FastAPI, *, vendors: Mapping[str, VendorWebhook]) -> Json:
    """The OpenAPI document of ``app``: FastAPI's, completed, with the webhook route written per vendor."""
    doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                      description=f"{app.description}\n\n{_ERRORS}", routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # Parameters are plain strings the routes check themselves: FastAPI's own 422 never happens.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(copy.deepcopy(COMPONENTS["schemas"]))
    components["securitySchemes"] = copy.deepcopy(COMPONENTS["securitySchemes"])
    paths: Json = doc["paths"]
    for path_item in paths.values():
        for operation in path_item.values():
            _drop_fastapi_validation_error(operation)
    generic = paths.pop(WEBHOOK_PATH, None)
    if generic is not None:
        for vendor in sorted(vendors):
            paths[WEBHOOK_PATH.replace("{vendor}", vendor)] = {
                "post": _vendor_operation(generic["post"], vendor, vendors[vendor])}
    return doc


def _drop_fastapi_validation_error(operation: Json) -> None:
    answer = operation.get("responses", {}).get("422", {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    if schema.get("$ref", "").endswith("/HTTPValidationError"):
        del operation["responses"]["422"]


def _vendor_operation(generic: Json, vendor: str, spec: VendorWebhook) -> Json:
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
