"""Schemathesis against the real ingress (uvicorn, RabbitMQ, Redis): every check, a bounded run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core import NOT_SET
from schemathesis.core.parameters import ParameterLocation

from hub.ingress.binding import BATCH, STRUCTURED
from hub.ingress.problems import Kind
from hub.runtime import Runtime
from tests.support.ingress import load, serving, write_sources
from tests.test_ingress_openapi import ingress_document

pytestmark = pytest.mark.integration
EVENTS = "/v1/events"

load_all_checks()
#: Every check schemathesis has (``--checks all``), by name: a new one fails the test until it is looked at.
#: ``use_after_free``, ``ensure_resource_availability`` and ``object_level_authorization`` follow resources from
#: the operation that creates them to those that read or delete them; the ingress has none (no links, no
#: DELETE, nothing read back by id), so they find nothing to compare here, and are run so that they will once
#: it has. ``max_response_time`` is a limit, not a check, and none is set: the machine is shared.
ALL_CHECKS = [
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection", "positive_data_acceptance",
    "missing_required_header", "unsupported_method", "allow_header_conformance", "use_after_free",
    "ensure_resource_availability", "ignored_auth", "object_level_authorization",
]
#: The API key of the run's own source (the sources file keeps only its SHA-256).
API_KEY = "schemathesis-run-key-0123456789abcdef"
QUOTA = "100000/minute"
GRAPH = "/v1/webhooks/graph/{source_id}"

CONFIG = schemathesis.Config.from_dict({
    "seed": 20261206,
    "generation": {"max-examples": 25},
    "operations": [
        # The sources of the test sources file, so that requests reach the adapters (any other id is a 404).
        *({"include-path": f"/v1/webhooks/{vendor}/{{source_id}}", "parameters": {"source_id": source}}
          for vendor, source in (("docusign", "docusign"), ("graph", "sharepoint"), ("box", "box"))),
        # An event's data must fit its type's Avro schema, which JSON Schema here does not encode: a valid
        # request may still be refused for its data, 422 (or 400 invalid-batch listing per-event 422s). Widened
        # here, and narrowed back to exactly that by `positive_events_are_refused_only_for_their_data`.
        {"include-path": EVENTS, "checks": {"positive_data_acceptance": {"expected-statuses": [
            "2xx", "3xx", "401", "403", "404", "409", "429", "5xx", "400", "422"]}}},
    ],
})
schema = schemathesis.openapi.from_dict(ingress_document(), config=CONFIG)
# Binary mode's Avro data is opaque bytes to HTTP, sent as generated.
schemathesis.serializer.alias("application/avro", "application/octet-stream")
#: The document's examples of the ``ce-`` headers binary mode requires.
BINARY_EXAMPLES = {parameter["name"]: parameter["example"]
                   for parameter in schema.raw_schema["paths"][EVENTS]["post"]["parameters"]
                   if parameter["name"] in ("ce-specversion", "ce-id", "ce-source", "ce-type")}


@schema.auth().apply_to(path=["/v1/events", "/v1/invoices/{number}/readiness", "/v1/invoices/held", "/v1/exceptions",
                               "/v1/exceptions/{case_id}", "/v1/exceptions/{case_id}/acknowledge",
                               "/v1/exceptions/{case_id}/resolve"])
class ApiKey:
    """The run's source authenticates with its API key."""

    def get(self, case: Any, ctx: Any) -> str:
        return API_KEY

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def test_the_list_of_checks_is_every_check_schemathesis_has() -> None:
    assert sorted(ALL_CHECKS) == sorted(CHECKS.get_all_names())


@pytest.fixture
def ingress_url(app: Runtime, tmp_path: Path) -> Iterator[str]:
    path, _ = write_sources(tmp_path, quota=QUOTA, vendor_quota=QUOTA)
    path.write_text(path.read_text() + f"""\
  - id: schemathesis
    description: the requests schemathesis generates (events, the hard-stop check, the operations API)
    sources: ["erp-sim://acme-psa/*"]
    event_types: ["erp.*"]
    queries: [invoice_readiness, held_invoices, exceptions, exception_actions]
    credentials: [{{scheme: api_key, sha256: {hashlib.sha256(API_KEY.encode()).hexdigest()}}}]
    quota: {QUOTA}
""")
    with serving(app, load(path)) as url:
        yield url


def test_the_run_generates_from_the_document_the_ingress_serves(ingress_url: str) -> None:
    assert httpx.get(f"{ingress_url}/openapi.json").json() == schema.raw_schema


#: What each operation must have answered at least once: the run reached past authentication and into the
#: adapters, and made the ingress accept (or echo) as well as refuse.
MUST_ANSWER: dict[str, set[int]] = {
    "POST /v1/events": {202, 400, 405, 409, 415, 422},
    "GET /v1/invoices/{number}/readiness": {200, 400, 401, 405},
    "GET /v1/invoices/held": {200, 400, 401, 405},
    "GET /v1/exceptions": {200, 400, 401, 405},
    "GET /v1/exceptions/{case_id}": {400, 401, 404, 405},
    "POST /v1/exceptions/{case_id}/acknowledge": {400, 401, 404, 405},
    "POST /v1/exceptions/{case_id}/resolve": {400, 401, 404, 405},
    "POST /v1/webhooks/graph/{source_id}": {200, 400, 401, 405},
    "POST /v1/webhooks/docusign/{source_id}": {401, 405},
    "POST /v1/webhooks/box/{source_id}": {401, 405},
    "GET /healthz": {200, 405},
    "GET /readyz": {200, 405},
    # Generated event types and revisions are (almost) never the registry's: their 200 is in tests/test_asyncapi.py.
    "GET /v1/schemas": {200, 405},
    "GET /v1/schemas/{event_type}": {404, 405},
    "GET /v1/schemas/{event_type}/{version}": {404, 405},
    "GET /v1/schemas/{event_type}/{version}/redacted": {404, 405},
    "GET /v1/asyncapi.json": {200, 405},
}


@pytest.fixture
def answered() -> Iterator[dict[str, set[int]]]:
    """The statuses each operation answered; afterwards, checked against :data:`MUST_ANSWER`."""
    statuses: dict[str, set[int]] = {}
    yield statuses
    assert statuses, "no case was run"
    for label, seen in statuses.items():
        assert MUST_ANSWER[label] <= seen, f"{label} never answered {sorted(MUST_ANSWER[label] - seen)}"


def as_clients_send_it(case: Any) -> None:
    """Make hold what the document says in words because OpenAPI cannot tie one part of a request to another.

    - ``ce-`` headers belong to binary mode: a structured or batch request carries none (the ingress does not
      read them there), and a valid binary one carries the four the mode requires (the document's examples
      fill in those missing).
    - JSON Schema cannot tell ``1.0`` from ``1``, the ingress can: an integer attribute goes as a JSON integer,
      as serializers write it (the ingress refuses ``1.0`` for an integer extension: 400).
    - Graph's validation request has no body, and the handshake echoes its token without reading one: a case
      whose body breaks the document goes without a token, and a valid case with neither body nor token gets one.
    """
    mode = case.meta.generation.mode if case.meta is not None else None
    headers = case.headers if case.headers is not None else {}
    if case.operation.path == EVENTS:
        if case.media_type in (STRUCTURED, BATCH):
            for name in [name for name in headers if name.lower().startswith("ce-")]:
                del headers[name]
            events = case.body if isinstance(case.body, list) else [case.body]
            for event in events:
                if isinstance(event, dict):
                    for name, value in event.items():
                        if isinstance(value, float) and value.is_integer():
                            event[name] = int(value)
        elif mode is not None and mode.is_positive:
            present = {name.lower() for name in headers}
            headers.update({name: example for name, example in BINARY_EXAMPLES.items() if name not in present})
        case.headers = headers
    elif case.operation.path == GRAPH:
        query = case.query if case.query is not None else {}
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY):
            query.pop("validationToken", None)
        elif mode is not None and mode.is_positive and case.body is NOT_SET and "validationToken" not in query:
            query["validationToken"] = "schemathesis-validation-token"
        case.query = query


DATA_PROBLEMS = {Kind.UNKNOWN_EVENT_TYPE.uri, Kind.SCHEMA_VIOLATION.uri}


def positive_events_are_refused_only_for_their_data(ctx: Any, response: Any, case: Any) -> None:
    """A valid event request is refused only for its data (or unknown type): 422, or a batch of such refusals.

    Also a batch naming one (`source`, `id`) twice, which JSON Schema cannot forbid either.
    """
    if case.operation.path != EVENTS or case.meta is None or not case.meta.generation.mode.is_positive:
        return
    if response.status_code == 422:
        assert response.json()["type"] in DATA_PROBLEMS, response.text
    elif response.status_code == 400:
        problem = response.json()
        assert case.media_type == BATCH and problem["type"] == Kind.INVALID_BATCH.uri, response.text
        for error in problem["errors"]:
            twice = error["type"] == Kind.INVALID_BATCH.uri and error.get("field") == "id"
            assert error["type"] in DATA_PROBLEMS or twice, response.text


@schema.parametrize()
# One served ingress per operation, shared by its cases on purpose: it is what is tested, not per-case state.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_ingress_answers_as_its_openapi_document_says(
    case: Any, ingress_url: str, answered: dict[str, set[int]]
) -> None:
    as_clients_send_it(case)
    response = case.call_and_validate(base_url=ingress_url, checks=CHECKS.get_by_names(ALL_CHECKS),
                                      additional_checks=[positive_events_are_refused_only_for_their_data])
    answered.setdefault(case.operation.label, set()).add(response.status_code)
