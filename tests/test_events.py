"""The CloudEvents contract and its codecs, through the real RabbitMQ where bytes travel."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pika
import pytest
from cloudevents.core.formats.json import JSONFormat

from hub.cli.scenario import acme_engagement, project_created
from hub.errors import InvalidEvent, SchemaViolation, UnknownEventType
from hub.events import (
    AVRO_CONTENT_TYPE,
    MAX_EXTENSION_BYTES,
    MAX_EXTENSIONS,
    CloudEvent,
    from_amqp,
    from_message_body,
    make_event,
    to_amqp,
    to_message_body,
    validate_event,
)
from hub.registry import SchemaRegistry
from hub.runtime import Runtime
from hub.topics import RabbitTopicBus, exchange_name, rabbit_subscription
from tests.support.rabbit import AMQP_URL


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def test_a_new_event_follows_the_contract(registry: SchemaRegistry) -> None:
    event = project_created(registry, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    attributes = event.get_attributes()
    assert attributes["specversion"] == "1.0"
    assert attributes["type"] == "erp.project.created.v1"
    assert attributes["subject"] == "ENG-ACME-0001"
    assert attributes["partitionkey"] == "project:ENG-ACME-0001"
    assert attributes["datacontenttype"] == AVRO_CONTENT_TYPE
    assert attributes["dataschema"] == registry.for_type("erp.project.created.v1").dataschema
    assert isinstance(event.get_data(), bytes)
    assert validate_event(event, registry)["project_code"] == "ENG-ACME-0001"


def test_a_type_outside_the_naming_rule_is_refused(registry: SchemaRegistry) -> None:
    with pytest.raises(InvalidEvent, match="system"):
        make_event(registry, type="ProjectCreated", source="erp", data={})


def test_an_unregistered_type_is_refused(registry: SchemaRegistry) -> None:
    with pytest.raises(UnknownEventType):
        make_event(registry, type="erp.project.archived.v1", source="erp", data={})


def test_data_that_breaks_the_schema_names_the_field(registry: SchemaRegistry) -> None:
    data = acme_engagement() | {"region": "MARS"}
    with pytest.raises(SchemaViolation) as caught:
        make_event(registry, type="erp.project.created.v1", source="erp", data=data)
    assert caught.value.field is not None and "region" in caught.value.field


def test_the_message_body_round_trip_keeps_avro_bytes(registry: SchemaRegistry) -> None:
    event = project_created(registry)
    back = from_message_body(to_message_body(event))
    assert back.get_data() == event.get_data()
    assert back.get_attributes() == event.get_attributes()


def test_a_dataschema_of_another_schema_is_refused(registry: SchemaRegistry) -> None:
    event = project_created(registry)
    body = to_message_body(event) | {"dataschema": "urn:hub:schema:hub.erp.ProjectCreated:99"}
    with pytest.raises(InvalidEvent, match="dataschema"):
        validate_event(from_message_body(body), registry)


def _utf8_payload_event(registry: SchemaRegistry) -> tuple[object, bytes]:
    # Avro of plain ASCII strings and small ints is itself valid UTF-8: the SDK's JSON format would
    # hand such data back as str.
    data = {"client_id": "C1", "name": "ACME", "country": "DE", "status": "active",
            "updated_at": datetime.fromtimestamp(0.05, UTC)}
    event = make_event(registry, type="erp.client.upserted.v1", source="erp", data=data)
    payload = event.get_data()
    assert isinstance(payload, bytes)
    return event, payload


@pytest.mark.integration
def test_ce_headers_and_avro_bytes_survive_rabbitmq(registry: SchemaRegistry) -> None:
    event, payload = _utf8_payload_event(registry)
    payload.decode("utf-8")  # the hard case: binary data that is also valid text
    exchange = f"t{uuid.uuid4().hex[:8]}.events"
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange)
    try:
        with rabbit_subscription(AMQP_URL, "erp.#", exchange=exchange) as receive:
            bus.publish(event, message_id="m-1")  # type: ignore[arg-type]
            delivery = receive(10.0)
    finally:
        bus.close()
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        connection.channel().exchange_delete(exchange)
        connection.close()
    assert delivery is not None
    assert delivery.routing_key == "erp.client.upserted.v1"
    assert delivery.content_type == AVRO_CONTENT_TYPE
    assert delivery.message_id == "m-1"
    assert delivery.headers["ce-id"] == event.get_id()  # type: ignore[attr-defined]
    received = delivery.event()
    assert received.get_data() == payload
    assert isinstance(received.get_data(), bytes)
    assert received.get_attributes() == event.get_attributes()  # type: ignore[attr-defined]
    assert validate_event(received, registry)["client_id"] == "C1"


def test_the_amqp_binding_round_trip_in_memory(registry: SchemaRegistry) -> None:
    event = project_created(registry)
    message = to_amqp(event)
    assert message.headers["ce-type"] == "erp.project.created.v1"
    assert message.content_type == AVRO_CONTENT_TYPE
    back = from_amqp(message.headers, message.content_type, message.body)
    assert back.get_data() == event.get_data()


def _with_extensions(registry: SchemaRegistry, **extensions: str) -> CloudEvent:
    return make_event(registry, type="erp.project.created.v1", source="erp", data=acme_engagement(),
                      partitionkey="project:ENG-ACME-0001", extensions=extensions)


def test_extensions_are_carried_through_the_message_body_and_the_amqp_binding(registry: SchemaRegistry) -> None:
    event = _with_extensions(registry, comexampleextension1="value", tenant="acme", approved="true")
    assert event.get_attributes()["tenant"] == "acme"
    back = from_message_body(to_message_body(event))
    assert back.get_attributes() == event.get_attributes()
    message = to_amqp(back)
    assert {name: message.headers[f"ce-{name}"] for name in ("comexampleextension1", "tenant", "approved")} == {
        "comexampleextension1": "value", "tenant": "acme", "approved": "true"}
    assert from_amqp(message.headers, message.content_type, message.body).get_extension("tenant") == "acme"


@pytest.mark.parametrize(
    "extensions",
    [
        {"Tenant": "x"}, {"my_ext": "x"}, {"a" * 21: "x"}, {"": "x"}, {"data": "x"}, {"subject": "x"},
        {"partitionkey": "x"}, {"time": "x"}, {"long": "x" * (MAX_EXTENSION_BYTES + 1)},
        {f"e{index}": "x" for index in range(MAX_EXTENSIONS)},  # sixteen more than partitionkey
    ],
)
def test_a_malformed_extension_is_refused(registry: SchemaRegistry, extensions: dict[str, str]) -> None:
    with pytest.raises(InvalidEvent):
        _with_extensions(registry, **extensions)


@pytest.mark.parametrize("name", ["id", "source", "subject", "partitionkey", "sequence", "tenant"])
@pytest.mark.parametrize("bad", ["a\r\nb", "nul\x00", "c1\x9f", "lone \ud800", "nonchar \ufdd0"])
def test_a_string_attribute_that_is_no_cloudevents_string_is_refused_naming_it(
    registry: SchemaRegistry, name: str, bad: str
) -> None:
    values: dict[str, Any] = {"id": "evt-1", "source": "erp", "subject": "ENG-ACME-0001"}
    extensions: dict[str, str] = {}
    if name == "tenant":
        extensions[name] = bad
    else:
        values[name] = bad
    with pytest.raises(InvalidEvent) as caught:
        make_event(registry, type="erp.project.created.v1", data=acme_engagement(), extensions=extensions, **values)
    assert caught.value.field == name


@pytest.mark.parametrize(
    "time",
    [datetime(2025, 3, 14, 9, 26), datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
     datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))],
    ids=["naive", "before year 1 in UTC", "after year 9999 in UTC"],
)
def test_a_time_without_a_utc_instant_is_refused(registry: SchemaRegistry, time: datetime) -> None:
    with pytest.raises(InvalidEvent) as caught:
        make_event(registry, type="erp.project.created.v1", source="erp", data=acme_engagement(), time=time)
    assert caught.value.field == "time"


@pytest.mark.integration
def test_an_extension_arrives_as_a_ce_header_on_rabbitmq(registry: SchemaRegistry) -> None:
    event = _with_extensions(registry, tenant="acme", comexampleothervalue="5")
    exchange = f"t{uuid.uuid4().hex[:8]}.events"
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange)
    try:
        with rabbit_subscription(AMQP_URL, "erp.#", exchange=exchange) as receive:
            bus.publish(event, message_id="m-ext")
            delivery = receive(10.0)
    finally:
        bus.close()
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        connection.channel().exchange_delete(exchange)
        connection.close()
    assert delivery is not None
    assert delivery.headers["ce-tenant"] == "acme"
    assert delivery.headers["ce-comexampleothervalue"] == "5"
    assert delivery.event().get_extension("tenant") == "acme"


@pytest.mark.integration
def test_two_hubs_on_one_broker_keep_their_topics_apart(registry: SchemaRegistry, prefix: str) -> None:
    """Each prefix publishes on its own ``<prefix>.events`` (``hub.events`` for the default): a consumer of
    one hub never gets the other's events, as two suites or two tenants on one broker need."""
    assert exchange_name("hub") == "hub.events"
    ours, theirs = exchange_name(prefix), exchange_name(f"{prefix}x")
    first, _ = _utf8_payload_event(registry)
    second, _ = _utf8_payload_event(registry)
    bus_ours, bus_theirs = RabbitTopicBus(AMQP_URL, exchange=ours), RabbitTopicBus(AMQP_URL, exchange=theirs)
    try:
        with rabbit_subscription(AMQP_URL, "erp.#", exchange=theirs) as receive:
            bus_ours.publish(first, message_id="m-ours")  # type: ignore[arg-type]
            bus_theirs.publish(second, message_id="m-theirs")  # type: ignore[arg-type]
            # Confirmed in this order: had the first been routed here, it would arrive first.
            delivery = receive(10.0)
    finally:
        bus_ours.close()
        bus_theirs.close()
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        connection.channel().exchange_delete(theirs)
        connection.close()
    assert delivery is not None and delivery.message_id == "m-theirs"


def test_the_runtime_publishes_on_its_prefixs_exchange(app: Runtime) -> None:
    assert app.topics.exchange == f"{app.queue_prefix}.events"


@pytest.mark.parametrize(("change", "why"), [
    ({"specversion": "0.3"}, "specversion"),
    ({"data": {"code": "P-1"}}, "data_base64"),
    ({"data_base64": "not base64!"}, "JSON document"),
    ({"time": "2026-12-07 10:00:00"}, "RFC 3339"),
    ({"id": None}, "id missing"),  # the SDK would make one up: each delivery would be another event
    ({"source": ""}, "source missing"),
])
def test_a_message_body_that_is_no_event_of_ours_is_refused(registry: SchemaRegistry, change: dict[str, Any],
                                                             why: str) -> None:
    body = {k: v for k, v in (to_message_body(project_created(registry)) | change).items() if v is not None}
    with pytest.raises(InvalidEvent, match=why):
        from_message_body(body)


@pytest.mark.parametrize("shape", ["plain", "extensions", "offset time", "no data"])
def test_the_message_body_is_what_the_sdks_json_format_writes(registry: SchemaRegistry, shape: str) -> None:
    event = project_created(registry)
    if shape == "extensions":
        event = make_event(registry, type="erp.project.created.v1", source="erp", data=acme_engagement(),
                           subject="P-1", partitionkey="project:P-1", traceparent=f"00-{'a' * 32}-{'b' * 16}-01")
    elif shape == "offset time":
        event = CloudEvent(event.get_attributes() | {"time": datetime(2026, 12, 7, 10, 0, 0, 5,
                                                                      tzinfo=timezone(timedelta(hours=-5)))},
                           event.get_data())
    elif shape == "no data":
        event = CloudEvent(event.get_attributes(), None)
    assert to_message_body(event) == json.loads(JSONFormat().write(event))
