"""What consumers read to decode the events: every Avro schema revision (the URL an event's ``dataschema``
names) and the AsyncAPI document of the topic exchange. Public: a schema is a contract, not a secret.

- ``GET /v1/schemas``: every event type, its current revision and the URL of each revision;
- ``GET /v1/schemas/{type}``: the current revision, one self-contained Avro schema;
- ``GET /v1/schemas/{type}/{version}``: that revision;
- ``GET /v1/schemas/{type}/{version}/redacted``: its redacted variant, where the policy walls matters off on
  the bus (:mod:`hub.redaction`);
- ``GET /v1/asyncapi.json``: the AsyncAPI 3.0 document (:mod:`hub.asyncapi`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from hub.catalogue import SchemaCatalogue
from hub.errors import UnknownEventType
from hub.events import TYPE_PATTERN
from hub.ingress.openapi import Json, responses
from hub.ingress.problems import Kind, Problem
from hub.redaction import Redactions

__all__ = ["schemas_router"]

_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_TYPE_PARAMETER: Json = {"type": "string", "pattern": TYPE_PATTERN.pattern, "maxLength": 255,
                         "description": "An event type, `<system>.<entity>.<event>.v<major>`."}
_VERSION_PARAMETER: Json = {"type": "string", "pattern": _VERSION.pattern,
                            "description": "A revision of the type's schema (`hub.version`)."}
_AVRO: Json = {"type": "object", "required": ["type", "name"],
               "description": "A self-contained Avro schema (every named type defined where first used)."}
_LIST: Json = {"type": "array", "items": {
    "type": "object", "required": ["type", "schema", "version", "url", "versions"],
    "properties": {"type": {"type": "string"}, "schema": {"type": "string", "description": "Avro full name."},
                   "version": {"type": "integer", "description": "The current revision, the one published now."},
                   "url": {"type": "string", "format": "uri", "description": "The current revision's URL."},
                   "versions": {"type": "object", "additionalProperties": {"type": "string", "format": "uri"},
                                "description": "Every revision's URL, by revision."}}}}
_NO_SUCH = "No such event type, or no such revision of it."
_PARAMETER = {400: (Kind.INVALID_PARAMETER,)}


def _answer(description: str, schema: Json) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def schemas_router(catalogue: SchemaCatalogue, asyncapi: Mapping[str, Any], *,
                   redactions: Redactions | None = None) -> APIRouter:
    """The schema routes over ``catalogue`` (and the redacted variants of ``redactions``), and ``asyncapi``
    served as it is."""
    router = APIRouter(tags=["schemas"])

    @router.get("/v1/schemas", summary="Every event type and its schema revisions", operation_id="schemas",
                responses=responses(200, answers={200: _answer("Every event type, by name.", _LIST)}))
    async def listing() -> JSONResponse:
        return JSONResponse([
            {"type": event_type, "schema": catalogue.registry.for_type(event_type).name,
             "version": catalogue.registry.for_type(event_type).version,
             "url": catalogue.registry.for_type(event_type).dataschema,
             "versions": {str(v): catalogue.url(event_type, v) for v in catalogue.versions(event_type)}}
            for event_type in catalogue.event_types])

    @router.get("/v1/schemas/{event_type}", summary="The current schema of an event type",
                operation_id="schema_current",
                responses=responses(200, 400, 404, answers={200: _answer("The current revision.", _AVRO)},
                                    problems={404: _NO_SUCH}, kinds=_PARAMETER))
    async def current(event_type: Annotated[str, Path(json_schema_extra=_TYPE_PARAMETER)]) -> JSONResponse:
        return JSONResponse(_schema(catalogue, event_type, None))

    @router.get("/v1/schemas/{event_type}/{version}", summary="One revision of an event type's schema",
                operation_id="schema_revision",
                responses=responses(200, 400, 404, answers={200: _answer("That revision.", _AVRO)},
                                    problems={404: _NO_SUCH}, kinds=_PARAMETER))
    async def revision(event_type: Annotated[str, Path(json_schema_extra=_TYPE_PARAMETER)],
                       version: Annotated[str, Path(json_schema_extra=_VERSION_PARAMETER)]) -> JSONResponse:
        if not _VERSION.fullmatch(version):
            raise Problem(Kind.INVALID_PARAMETER, "version must be a positive integer", field="version")
        return JSONResponse(_schema(catalogue, event_type, int(version)))

    @router.get("/v1/schemas/{event_type}/{version}/redacted",
                summary="The redacted variant of an event type's schema (walled matters on the topic exchange)",
                operation_id="schema_redacted",
                responses=responses(200, 400, 404, answers={200: _answer("The redacted variant.", _AVRO)},
                                    problems={404: "No such type, revision, or redacted variant of it."},
                                    kinds=_PARAMETER))
    async def redacted(event_type: Annotated[str, Path(json_schema_extra=_TYPE_PARAMETER)],
                       version: Annotated[str, Path(json_schema_extra=_VERSION_PARAMETER)]) -> JSONResponse:
        if not _VERSION.fullmatch(version):
            raise Problem(Kind.INVALID_PARAMETER, "version must be a positive integer", field="version")
        _schema(catalogue, event_type, int(version))
        current = catalogue.registry.for_type(event_type).version
        if redactions is None or not redactions.protects(event_type) or int(version) != current:
            raise Problem(Kind.NOT_FOUND, "no redacted variant of this type and revision")
        return JSONResponse(redactions.schema(event_type)[1])

    @router.get("/v1/asyncapi.json", summary="The AsyncAPI 3.0 document of the topic exchange",
                operation_id="asyncapi",
                responses=responses(200, answers={200: _answer("AsyncAPI 3.0.0.", {"type": "object"})}))
    async def document() -> JSONResponse:
        return JSONResponse(dict(asyncapi))

    return router


def _schema(catalogue: SchemaCatalogue, event_type: str, version: int | None) -> dict[str, Any]:
    if not TYPE_PATTERN.fullmatch(event_type) or len(event_type) > 255:
        raise Problem(Kind.INVALID_PARAMETER, "not an event type, <system>.<entity>.<event>.v<major>",
                      field="event_type")
    try:
        return catalogue.schema(event_type, version)
    except UnknownEventType:
        raise Problem(Kind.NOT_FOUND, "no such event type or revision") from None
