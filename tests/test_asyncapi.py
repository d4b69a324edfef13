"""Discovery: the AsyncAPI document of the topic exchange, the schema routes every ``dataschema`` resolves to,
and consumers holding an older revision decoding what newer ones wrote."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import fakeredis
import httpx
import pytest
from click.testing import CliRunner
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from jsonschema import Draft7Validator
from opentelemetry import trace

from hub.asyncapi import AVRO_SCHEMA_FORMAT, Redaction, document, example_datum
from hub.catalogue import SchemaCatalogue
from hub.cli import main
from hub.events import make_event
from hub.ingress.app import Ingress, create_app
from hub.ingress.auth import QuotaGate, RedisReplayGuard
from hub.ingress.outcomes import OutcomeStore
from hub.ingress.schemas import schemas_router
from hub.ingress.sources import SourceRegistry
from hub.redaction import Redactions
from hub.registry import SchemaRegistry

ROOT = Path(__file__).resolve().parent.parent
#: The official AsyncAPI 3.0.0 JSON schema, vendored (tests/data/asyncapi/README.md).
ASYNCAPI_SCHEMA = json.loads((ROOT / "tests" / "data" / "asyncapi" / "3.0.0.json").read_text(encoding="utf-8"))
PUBLIC_URL = "https://hub.example-firm.com"


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load(schema_base_url=f"{PUBLIC_URL}/v1/schemas")


@pytest.fixture(scope="module")
def catalogue(registry: SchemaRegistry) -> SchemaCatalogue:
    return SchemaCatalogue.load(registry)


@pytest.fixture(scope="module")
def asyncapi(catalogue: SchemaCatalogue) -> dict[str, Any]:
    return document(catalogue, prefix="hub", amqp_host="rabbitmq.example-firm.com:5672", public_url=PUBLIC_URL)


def problems(doc: dict[str, Any]) -> list[str]:
    errors = Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(doc)
    return [f"{list(error.absolute_path)}: {error.message[:200]}" for error in errors]


def test_the_asyncapi_document_validates_against_the_official_schema(asyncapi: dict[str, Any]) -> None:
    assert problems(asyncapi) == []


def test_the_validation_catches_a_broken_document_and_a_broken_avro_payload(asyncapi: dict[str, Any]) -> None:
    assert problems({**asyncapi, "asyncapi": "2.6.0"})
    broken = json.loads(json.dumps(asyncapi))
    broken["components"]["messages"]["erp.project.created.v1"]["payload"]["schema"]["fields"][0]["name"] = "a-b"
    assert problems(broken)


def test_with_walls_on_the_bus_the_document_declares_the_redacted_variants_and_the_restricted_exchange(
    catalogue: SchemaCatalogue, registry: SchemaRegistry
) -> None:
    redactions = Redactions(registry, {"erp.project.created.v1": ["name", "partner"],
                                       "dms.document.state_changed.v1": ["name", "url"]})
    walled = document(catalogue, prefix="hub", amqp_host="127.0.0.1:5672", public_url=PUBLIC_URL,
                      redaction=Redaction("hub.events.walled", redactions.schemas()))
    assert problems(walled) == []
    redacted = walled["components"]["messages"]["erp.project.created.v1.redacted"]
    assert redacted["examples"][0]["headers"]["ce-dataschema"] == (
        f"{PUBLIC_URL}/v1/schemas/erp.project.created.v1/1/redacted")
    assert {"name", "partner"}.isdisjoint(f["name"] for f in redacted["payload"]["schema"]["fields"])
    assert "erp.project.created.v1.redacted" in walled["channels"]["events"]["messages"]
    assert walled["channels"]["walled"]["address"] == "hub.events.walled"
    assert "erp.project.created.v1.redacted" not in walled["channels"]["walled"]["messages"]


def test_every_event_type_is_a_message_on_the_exchange_with_its_current_avro_schema(
    asyncapi: dict[str, Any], registry: SchemaRegistry
) -> None:
    channel = asyncapi["channels"]["events"]
    assert channel["address"] == "hub.events"
    assert channel["bindings"]["amqp"]["exchange"] == {"name": "hub.events", "type": "topic", "durable": True,
                                                       "autoDelete": False, "vhost": "/"}
    assert sorted(channel["messages"]) == registry.event_types
    for event_type in registry.event_types:
        message = asyncapi["components"]["messages"][event_type]
        assert message["payload"]["schemaFormat"] == AVRO_SCHEMA_FORMAT
        published = to_parsing_canonical_form(parse_schema(message["payload"]["schema"]))
        current = to_parsing_canonical_form(parse_schema(registry.resolved(registry.for_type(event_type).name)))
        assert published == current, event_type
        assert message["bindings"]["amqp"]["messageType"] == event_type
    assert asyncapi["channels"]["history"]["address"] == "hub.events.history"
    assert asyncapi["channels"]["history"]["bindings"]["amqp"]["is"] == "queue"
    assert asyncapi["servers"]["rabbitmq"] == {"host": "rabbitmq.example-firm.com:5672", "protocol": "amqp",
                                               "protocolVersion": "0-9-1", "description": "The hub's RabbitMQ."}


def test_each_example_is_an_event_the_registry_encodes_with_the_ce_headers_documented(
    asyncapi: dict[str, Any], registry: SchemaRegistry
) -> None:
    headers = Draft7Validator(asyncapi["components"]["schemas"]["CloudEventHeaders"])
    for event_type in registry.event_types:
        [example] = asyncapi["components"]["messages"][event_type]["examples"]
        assert registry.decode(event_type, registry.encode(event_type, example["payload"]))
        assert list(headers.iter_errors(example["headers"])) == []
        assert example["headers"]["ce-type"] == event_type
        assert example["headers"]["ce-dataschema"] == registry.for_type(event_type).dataschema


def test_hub_schemas_export_writes_the_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PUBLIC_URL", PUBLIC_URL)
    target = tmp_path / "asyncapi.json"
    result = CliRunner().invoke(main, ["schemas", "export", "--file", str(target)])
    assert result.exit_code == 0, result.output
    exported = json.loads(target.read_text())
    assert problems(exported) == []
    assert exported["components"]["messages"]["erp.project.created.v1"]["examples"][0]["headers"][
        "ce-dataschema"] == f"{PUBLIC_URL}/v1/schemas/erp.project.created.v1/1"


class Client:
    """GET requests to the ingress app with the schema routes, in process."""

    def __init__(self, catalogue: SchemaCatalogue, asyncapi: dict[str, Any]) -> None:
        redis = fakeredis.FakeAsyncRedis()
        ingress = Ingress(registry=catalogue.registry, sources=SourceRegistry([]), publisher=None,  # type: ignore[arg-type]
                          quotas=QuotaGate(redis), replay_guard=RedisReplayGuard(redis),
                          outcomes=OutcomeStore(redis, prefix="schemas"), redis=redis, adapters={},
                          tracer=trace.NoOpTracer())
        self.app = create_app(ingress, routers=[schemas_router(catalogue, asyncapi)])

    def get(self, path: str) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=PUBLIC_URL) as http:
                return await http.get(path)

        return anyio.run(call)


@pytest.fixture(scope="module")
def client(catalogue: SchemaCatalogue, asyncapi: dict[str, Any]) -> Client:
    return Client(catalogue, asyncapi)


def test_an_events_dataschema_resolves_to_the_schema_it_was_written_with(
    client: Client, registry: SchemaRegistry
) -> None:
    data = example_datum(registry.resolved("hub.erp.InvoiceDrafted"))
    event = make_event(registry, type="erp.invoice.drafted.v1", source="erp-sim://acme-psa/prod", data=data)
    dataschema = event.get_dataschema()
    assert dataschema is not None and dataschema.startswith(f"{PUBLIC_URL}/v1/schemas/")
    answer = client.get(dataschema.removeprefix(PUBLIC_URL))
    assert answer.status_code == 200
    writer = parse_schema(answer.json())
    payload = event.get_data()
    assert isinstance(payload, bytes)
    assert schemaless_reader(io.BytesIO(payload), writer, None) == registry.decode("erp.invoice.drafted.v1", payload)


def test_the_schema_routes_list_every_revision_and_refuse_what_does_not_exist(
    client: Client, catalogue: SchemaCatalogue
) -> None:
    listed = {entry["type"]: entry for entry in client.get("/v1/schemas").json()}
    assert sorted(listed) == catalogue.event_types
    assert listed["erp.invoice.drafted.v1"]["versions"] == {
        "1": f"{PUBLIC_URL}/v1/schemas/erp.invoice.drafted.v1/1",
        "2": f"{PUBLIC_URL}/v1/schemas/erp.invoice.drafted.v1/2"}
    assert client.get("/v1/schemas/erp.invoice.drafted.v1").json() == catalogue.schema("erp.invoice.drafted.v1")
    first = client.get("/v1/schemas/erp.invoice.drafted.v1/1").json()
    assert first["hub.version"] == 1 and first != catalogue.schema("erp.invoice.drafted.v1")
    for path, status in [("/v1/schemas/erp.invoice.drafted.v1/9", 404), ("/v1/schemas/erp.nothing.here.v1", 404),
                         ("/v1/schemas/not-a-type", 400), ("/v1/schemas/erp.invoice.drafted.v1/x", 400)]:
        answer = client.get(path)
        assert (answer.status_code, answer.headers["content-type"]) == (status, "application/problem+json"), path
    assert client.get("/v1/asyncapi.json").json()["asyncapi"] == "3.0.0"


# -- schema evolution for readers: every type with more than one revision ----------------------------------------


def evolved(catalogue: SchemaCatalogue) -> list[tuple[str, int, int]]:
    """(type, reader revision, writer revision) for every older reader and every newer writer."""
    return [(event_type, old, new) for event_type in catalogue.event_types
            for old in catalogue.versions(event_type) for new in catalogue.versions(event_type) if old < new]


CATALOGUE = SchemaCatalogue.load(SchemaRegistry.load())


def test_the_types_that_evolved_are_all_checked() -> None:
    several = {event_type for event_type in CATALOGUE.event_types if len(CATALOGUE.versions(event_type)) > 1}
    assert several == {t for t, _, _ in evolved(CATALOGUE)}
    assert "erp.invoice.drafted.v1" in several  # the history is there, not an empty loop


@pytest.mark.parametrize(("event_type", "reader_version", "writer_version"), evolved(CATALOGUE))
def test_a_consumer_holding_an_older_revision_decodes_what_a_newer_one_wrote(
    event_type: str, reader_version: int, writer_version: int
) -> None:
    writer = CATALOGUE.schema(event_type, writer_version)
    reader = CATALOGUE.schema(event_type, reader_version)
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(writer), example_datum(writer))
    as_written = schemaless_reader(io.BytesIO(buffer.getvalue()), parse_schema(writer), None)
    as_read = schemaless_reader(io.BytesIO(buffer.getvalue()), parse_schema(writer), parse_schema(reader))
    assert isinstance(as_read, dict)
    assert sorted(as_read) == sorted(item["name"] for item in reader["fields"])
    writer_fields = {item["name"]: item["type"] for item in writer["fields"]}
    for item in reader["fields"]:
        if item["name"] not in writer_fields:
            assert as_read[item["name"]] == item["default"], item["name"]
        elif item["type"] == writer_fields[item["name"]]:
            assert as_read[item["name"]] == as_written[item["name"]], item["name"]
