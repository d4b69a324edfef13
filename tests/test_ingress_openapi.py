"""The ingress's OpenAPI document itself: content modes, headers, statuses, problems, security schemes."""

from __future__ import annotations

import re
from typing import Any

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from opentelemetry import trace

from actors.exceptions import MemoryExceptionInbox
from actors.exceptions.desk import ExceptionDesk
from actors.exceptions.router import exceptions_router
from actors.invoice_readiness import MemoryReadinessStore
from actors.invoice_readiness.router import held_router, readiness_router
from connectors.webhooks import adapters
from hub.catalogue import SchemaCatalogue
from hub.events import TYPE_PATTERN, CloudEvent, valid_string
from hub.ingress.app import Ingress, create_app
from hub.ingress.auth import QuotaGate, RedisReplayGuard
from hub.ingress.outcomes import OutcomeStore
from hub.ingress.problems import PROBLEM_JSON, Kind, Problem
from hub.ingress.queries import QueryGuard
from hub.ingress.schemas import schemas_router
from hub.ingress.sources import SourceRegistry
from hub.registry import SchemaRegistry
from observability.flight import Writes


class _NoPublisher:
    """The document needs no publisher: nothing is ever served by this app."""

    ready = False

    async def publish(self, event: CloudEvent, *, root_id: str | None = None,
                      writes: Writes | None = None) -> list[str]:
        raise AssertionError("the document's app serves nothing")


async def _no_answer(number: str) -> dict[str, Any]:
    raise AssertionError("the document's app serves nothing")


def ingress_document() -> dict[str, Any]:
    """The document the ingress serves at ``/openapi.json``, from its routes and the routers ``hub serve``
    mounts: nothing connects."""
    registry = SchemaRegistry.load()
    client = fakeredis.FakeAsyncRedis()
    ingress = Ingress(registry=registry, sources=SourceRegistry([]), publisher=_NoPublisher(),
                      quotas=QuotaGate(client), replay_guard=RedisReplayGuard(client),
                      outcomes=OutcomeStore(client, prefix="openapi"), redis=client, adapters=adapters(registry),
                      tracer=trace.NoOpTracer())
    guard = QueryGuard(ingress)
    catalogue = SchemaCatalogue.load(registry)
    routers = [held_router(MemoryReadinessStore(), guard=guard), readiness_router(_no_answer, guard=guard),
               exceptions_router(ExceptionDesk(MemoryExceptionInbox()), guard=guard),
               schemas_router(catalogue, {"asyncapi": "3.0.0"})]
    return create_app(ingress, routers=routers).openapi()


DOCUMENT = ingress_document()
WEBHOOK_STATUSES = {202, 400, 401, 403, 404, 409, 413, 429, 503}
#: Every route and exactly the statuses it answers (router 404/405 and HTTP-server refusals are document-wide).
STATUSES: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/events"): {202, 400, 401, 403, 409, 413, 415, 422, 429, 431, 500, 501, 503},
    ("get", "/v1/invoices/{number}/readiness"): {200, 400, 401, 403, 404, 429, 503},
    ("get", "/v1/invoices/held"): {200, 400, 401, 403, 404, 429, 503},
    ("get", "/v1/exceptions"): {200, 400, 401, 403, 404, 429, 503},
    ("get", "/v1/exceptions/{case_id}"): {200, 400, 401, 403, 404, 429, 503},
    ("post", "/v1/exceptions/{case_id}/acknowledge"): {200, 400, 401, 403, 404, 429, 503},
    ("post", "/v1/exceptions/{case_id}/resolve"): {200, 400, 401, 403, 404, 429, 503},
    ("post", "/v1/webhooks/docusign/{source_id}"): WEBHOOK_STATUSES,
    ("post", "/v1/webhooks/graph/{source_id}"): WEBHOOK_STATUSES | {200},
    ("post", "/v1/webhooks/box/{source_id}"): WEBHOOK_STATUSES,
    ("get", "/v1/schemas"): {200},
    ("get", "/v1/schemas/{event_type}"): {200, 400, 404},
    ("get", "/v1/schemas/{event_type}/{version}"): {200, 400, 404},
    ("get", "/v1/schemas/{event_type}/{version}/redacted"): {200, 400, 404},
    ("get", "/v1/asyncapi.json"): {200},
    ("get", "/healthz"): {200},
    ("get", "/readyz"): {200, 503},
}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, item in DOCUMENT["paths"].items()
            for method, operation in item.items()]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return resolve(found)


def events() -> dict[str, Any]:
    operation: dict[str, Any] = DOCUMENT["paths"]["/v1/events"]["post"]
    return operation


def header(operation: dict[str, Any], name: str) -> dict[str, Any]:
    found = [p for p in operation["parameters"] if p["in"] == "header" and p["name"].lower() == name.lower()]
    assert len(found) == 1, f"{name} is declared {len(found)} times"
    return found[0]


def test_every_route_lists_exactly_the_statuses_it_answers() -> None:
    listed = {(method, path): {int(status) for status in operation["responses"]}
              for method, path, operation in operations()}
    assert listed == STATUSES


def test_events_documents_the_three_content_modes() -> None:
    content = events()["requestBody"]["content"]
    assert events()["requestBody"]["required"] is True
    assert set(content) == {"application/cloudevents+json", "application/cloudevents-batch+json",
                            "application/json", "application/avro"}
    assert content["application/cloudevents+json"]["schema"] == {"$ref": "#/components/schemas/CloudEvent"}
    batch = resolve(content["application/cloudevents-batch+json"]["schema"])
    assert (batch["type"], batch["minItems"], batch["maxItems"]) == ("array", 1, 500)
    assert batch["items"] == {"$ref": "#/components/schemas/CloudEvent"}
    assert content["application/avro"]["schema"]["format"] == "binary"
    assert "binary" in events()["description"] and "structured" in events()["description"]


def test_events_documents_the_ce_headers_of_binary_mode() -> None:
    for attribute in ("specversion", "id", "source", "type", "subject", "time", "dataschema", "partitionkey",
                      "traceparent", "sequence"):
        parameter = header(events(), f"ce-{attribute}")
        # Required in binary mode only: the other two modes carry the attributes in the body.
        assert parameter["required"] is False
        assert parameter["description"].startswith("Binary mode")
    assert header(events(), "ce-specversion")["schema"]["enum"] == ["1.0"]
    assert "ce-datacontenttype" not in {p["name"] for p in events()["parameters"]}


def test_every_error_response_is_a_problem_and_429_and_503_say_when_to_retry() -> None:
    for method, path, operation in operations():
        for status, response in operation["responses"].items():
            if int(status) < 400:
                assert PROBLEM_JSON not in response.get("content", {}), (method, path, status)
                continue
            assert response["content"] == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}, \
                (method, path, status)
            retry_after = response.get("headers", {}).get("Retry-After")
            if int(status) in (429, 503):
                assert retry_after is not None and retry_after["required"] is True, (method, path, status)
            else:
                assert retry_after is None, (method, path, status)


def test_the_problem_schema_describes_what_the_ingress_renders() -> None:
    problems = validator({"$ref": "#/components/schemas/Problem"})
    for kind in Kind:
        problem = Problem(kind, "detail", field="data.region",
                          errors=[{"index": 0, "type": kind.uri, "status": kind.status, "detail": "x"}])
        assert problems.is_valid(problem.body(instance="/v1/events")), kind
        assert problems.is_valid(Problem(kind, "detail").body()), kind


def test_the_security_schemes_are_bearer_or_all_three_standard_webhooks_headers() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "http", "scheme": "bearer"}
    assert {name: (s["type"], s["in"], s["name"]) for name, s in schemes.items() if name != "ApiKey"} == {
        "WebhookId": ("apiKey", "header", "webhook-id"),
        "WebhookTimestamp": ("apiKey", "header", "webhook-timestamp"),
        "WebhookSignature": ("apiKey", "header", "webhook-signature"),
    }
    # One requirement or the other: a bearer key, or the three signature headers together.
    assert events()["security"] == [{"ApiKey": []},
                                    {"WebhookId": [], "WebhookTimestamp": [], "WebhookSignature": []}]
    assert DOCUMENT["paths"]["/v1/invoices/{number}/readiness"]["get"]["security"] == [{"ApiKey": []}]
    for path in ("/healthz", "/readyz", "/v1/webhooks/docusign/{source_id}"):
        assert "security" not in next(iter(DOCUMENT["paths"][path].values()))


@pytest.mark.parametrize(("vendor", "headers"), [
    ("docusign", {"X-DocuSign-Signature-1"}),
    ("graph", set()),
    ("box", {"BOX-SIGNATURE-PRIMARY", "BOX-SIGNATURE-SECONDARY", "BOX-DELIVERY-TIMESTAMP",
             "BOX-SIGNATURE-VERSION", "BOX-SIGNATURE-ALGORITHM"}),
])
def test_each_vendor_has_its_own_path_with_its_signature_headers(vendor: str, headers: set[str]) -> None:
    operation = DOCUMENT["paths"][f"/v1/webhooks/{vendor}/{{source_id}}"]["post"]
    parameters = {(p["in"], p["name"]) for p in operation["parameters"]}
    assert parameters - {("path", "source_id")} == {("header", name) for name in headers} | (
        {("query", "validationToken")} if vendor == "graph" else set())
    assert "/v1/webhooks/{vendor}/{source_id}" not in DOCUMENT["paths"]


def test_the_graph_handshake_is_a_plain_text_200_and_its_body_is_optional() -> None:
    operation = DOCUMENT["paths"]["/v1/webhooks/graph/{source_id}"]["post"]
    assert operation["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert operation["requestBody"]["required"] is False


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` references resolve in the document."""
    return Draft202012Validator({**schema, "components": DOCUMENT["components"]})


def test_every_schema_of_the_document_is_valid_json_schema_and_its_examples_fit() -> None:
    for name, schema in DOCUMENT["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        if "example" in schema:
            assert validator({"$ref": f"#/components/schemas/{name}"}).is_valid(schema["example"]), name
    for _, path, operation in operations():
        for parameter in operation.get("parameters", []):
            Draft202012Validator.check_schema(parameter["schema"])
            if "example" in parameter:
                assert validator(parameter["schema"]).is_valid(parameter["example"]), (path, parameter["name"])
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            if "example" in content:
                assert validator(content["schema"]).is_valid(content["example"]), (path, media_type)


def test_the_documented_examples_are_events_the_registry_accepts() -> None:
    from hub.ingress.binding import from_structured

    registry = SchemaRegistry.load()
    content = events()["requestBody"]["content"]
    example = resolve({"$ref": "#/components/schemas/CloudEvent"})["example"]
    assert from_structured(example, registry).get_type() == "erp.project.created.v1"
    assert [from_structured(e, registry).get_id() for e in content["application/cloudevents-batch+json"]["example"]]
    registry.encode("erp.project.created.v1", content["application/json"]["example"])


@given(st.text())
def test_the_cloudevents_string_pattern_refuses_what_the_ingress_refuses(text: str) -> None:
    pattern = resolve({"$ref": "#/components/schemas/CloudEvent"})["properties"]["id"]["pattern"]
    # JSON Schema patterns are ECMA-262, where "$" is the end of the text; Python's also matches before a
    # final line break, so the anchor is read as \Z here.
    assert pattern.endswith("$")
    assert (re.search(pattern[:-1] + r"\Z", text) is not None) == valid_string(text)


def test_the_type_pattern_is_the_contracts() -> None:
    event = resolve({"$ref": "#/components/schemas/CloudEvent"})
    assert event["properties"]["type"]["pattern"] == header(events(), "ce-type")["schema"]["pattern"]
    assert event["properties"]["type"]["pattern"] == TYPE_PATTERN.pattern
