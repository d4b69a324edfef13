"""The CloudEvents HTTP binding as the ingress reads it: three modes and hostile input, no servers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from hub.demo import acme_engagement
from hub.events import validate_event
from hub.ingress.binding import BATCH, STRUCTURED, read_events
from hub.ingress.problems import Kind, Problem
from hub.registry import SchemaRegistry

SOURCE = "erp-sim://acme-psa/prod"


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def json_data() -> dict[str, Any]:
    data = acme_engagement()
    data["start_date"] = 20822  # Avro's JSON form: days since 1970-01-01
    data["end_date"] = 20999
    data["updated_at"] = 1_795_770_000_000  # epoch milliseconds
    return data


def sdk_event(**overrides: Any) -> SdkEvent:
    attributes = {"type": "erp.project.created.v1", "source": SOURCE, "id": "evt-1",
                  "subject": "ENG-ACME-0001", "datacontenttype": "application/json"}
    attributes.update(overrides)
    return SdkEvent(attributes, json_data())


def headers_of(message: ce_http.HTTPMessage) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in message.headers.items()]


def read(headers: list[tuple[bytes, bytes]], body: bytes, registry: SchemaRegistry) -> tuple[str, list[Any]]:
    content_type = next((v.decode() for k, v in headers if k == b"content-type"), None)
    return read_events(headers, content_type, body, registry)


def problem(headers: list[tuple[bytes, bytes]], body: bytes, registry: SchemaRegistry) -> Problem:
    with pytest.raises(Problem) as caught:
        read(headers, body, registry)
    return caught.value


def test_structured_mode_from_the_official_sdk(registry: SchemaRegistry) -> None:
    message = ce_http.to_structured(sdk_event(), JSONFormat())
    mode, events = read(headers_of(message), message.body, registry)
    assert mode == "structured"
    assert events[0].get_id() == "evt-1"
    assert validate_event(events[0], registry)["project_code"] == "ENG-ACME-0001"


def test_binary_mode_from_the_official_sdk(registry: SchemaRegistry) -> None:
    message = ce_http.to_binary(sdk_event(), JSONFormat())
    mode, events = read(headers_of(message), message.body, registry)
    assert mode == "binary"
    assert events[0].get_subject() == "ENG-ACME-0001"
    assert events[0].get_datacontenttype() == "application/avro"


def test_batch_mode_is_all_or_nothing_with_per_event_errors(registry: SchemaRegistry) -> None:
    good = json.loads(JSONFormat().write(sdk_event(id="a")))
    bad = json.loads(JSONFormat().write(sdk_event(id="b")))
    bad["data"]["region"] = "MARS"
    headers = [(b"content-type", BATCH.encode())]
    mode, events = read(headers, json.dumps([good, json.loads(JSONFormat().write(sdk_event(id="c")))]).encode(),
                        registry)
    assert mode == "batch" and [e.get_id() for e in events] == ["a", "c"]
    failed = problem(headers, json.dumps([good, bad]).encode(), registry)
    assert failed.kind is Kind.INVALID_BATCH
    assert failed.errors == [{"index": 1, "type": Kind.SCHEMA_VIOLATION.uri, "status": 422,
                              "detail": failed.errors[0]["detail"], "field": "data.region"}]


def test_avro_data_base64_in_structured_mode(registry: SchemaRegistry) -> None:
    payload = registry.encode("erp.project.created.v1", json_data())
    document = {"specversion": "1.0", "type": "erp.project.created.v1", "source": SOURCE, "id": "x",
                "datacontenttype": "application/avro", "data_base64": base64.b64encode(payload).decode()}
    _, events = read([(b"content-type", STRUCTURED.encode())], json.dumps(document).encode(), registry)
    assert events[0].get_data() == payload


STRUCTURED_HEADERS = [(b"content-type", STRUCTURED.encode())]


def structured_body(**changes: Any) -> bytes:
    document = json.loads(JSONFormat().write(sdk_event()))
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("changes", "kind", "field"),
    [
        ({"specversion": None}, Kind.MISSING_ATTRIBUTE, "specversion"),
        ({"specversion": "0.3"}, Kind.UNSUPPORTED_SPECVERSION, "specversion"),
        ({"id": None}, Kind.MISSING_ATTRIBUTE, "id"),
        ({"source": None}, Kind.MISSING_ATTRIBUTE, "source"),
        ({"type": None}, Kind.MISSING_ATTRIBUTE, "type"),
        ({"id": ""}, Kind.INVALID_CLOUDEVENT, "id"),
        ({"type": "erp.project.archived.v1"}, Kind.UNKNOWN_EVENT_TYPE, "type"),
        ({"type": "ProjectCreated"}, Kind.UNKNOWN_EVENT_TYPE, "type"),
        ({"datacontenttype": "text/csv"}, Kind.UNSUPPORTED_MEDIA_TYPE, "datacontenttype"),
        ({"time": "yesterday"}, Kind.INVALID_CLOUDEVENT, "time"),
        ({"traceparent": "00-abc"}, Kind.INVALID_CLOUDEVENT, "traceparent"),
        ({"Bad_Ext": "x"}, Kind.INVALID_CLOUDEVENT, "Bad_Ext"),
        ({"dataschema": "urn:hub:schema:other:1"}, Kind.INVALID_CLOUDEVENT, "dataschema"),
        ({"data": None}, Kind.MISSING_ATTRIBUTE, "data"),
        ({"data": [1, 2]}, Kind.SCHEMA_VIOLATION, "data"),
    ],
)
def test_each_broken_attribute_gets_a_precise_problem(
    registry: SchemaRegistry, changes: dict[str, Any], kind: Kind, field: str
) -> None:
    failed = problem(STRUCTURED_HEADERS, structured_body(**changes), registry)
    assert failed.kind is kind
    assert failed.field == field
    assert 400 <= failed.kind.status < 500


def test_a_schema_violation_names_the_data_field(registry: SchemaRegistry) -> None:
    data = json_data()
    del data["client_id"]
    failed = problem(STRUCTURED_HEADERS, structured_body(data=data), registry)
    assert failed.kind is Kind.SCHEMA_VIOLATION and failed.field == "data.client_id"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", Kind.MALFORMED_JSON),
        (b"\xff\xfe{}", Kind.MALFORMED_JSON),
        (b'{"a": NaN}', Kind.MALFORMED_JSON),
        (b"[" * 40 + b"]" * 40, Kind.JSON_TOO_COMPLEX),
        (b"[" * 100_000 + b"]" * 100_000, Kind.JSON_TOO_COMPLEX),
        (b'{"n": ' + b"9" * 5000 + b"}", Kind.JSON_TOO_COMPLEX),
        (b"[]", Kind.INVALID_CLOUDEVENT),
    ],
)
def test_hostile_json_is_refused(registry: SchemaRegistry, body: bytes, kind: Kind) -> None:
    assert problem(STRUCTURED_HEADERS, body, registry).kind is kind


def binary_headers(**extra: bytes) -> list[tuple[bytes, bytes]]:
    message = ce_http.to_binary(sdk_event(), JSONFormat())
    headers = headers_of(message)
    return headers + [(k.replace("_", "-").encode(), v) for k, v in extra.items()]


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ({"ce_subject": b"ENG-ACME-0002"}, Kind.DUPLICATE_HEADER),
        ({"ce_sequence": b"a\r\nb"}, Kind.INVALID_HEADER),
        ({"ce_traceparent": b"a\x00b"}, Kind.INVALID_HEADER),
        ({"ce_partitionkey": b"\xc3\x28"}, Kind.INVALID_HEADER),
        ({"ce_partitionkey": b"line\nbreak"}, Kind.INVALID_HEADER),
    ],
)
def test_hostile_ce_headers_are_refused(registry: SchemaRegistry, extra: dict[str, bytes], kind: Kind) -> None:
    message = ce_http.to_binary(sdk_event(), JSONFormat())
    assert problem(binary_headers(**extra), message.body, registry).kind is kind


def test_binary_mode_with_a_non_json_body_type_is_unsupported(registry: SchemaRegistry) -> None:
    headers = [(k, v) for k, v in binary_headers() if k != b"content-type"] + [(b"content-type", b"text/plain")]
    assert problem(headers, b"hello", registry).kind is Kind.UNSUPPORTED_MEDIA_TYPE


def test_a_request_that_is_no_cloudevent_at_all_is_unsupported(registry: SchemaRegistry) -> None:
    assert problem([(b"content-type", b"application/json")], b"{}", registry).kind is Kind.UNSUPPORTED_MEDIA_TYPE


def test_a_batch_with_the_same_id_twice_is_refused(registry: SchemaRegistry) -> None:
    event = json.loads(JSONFormat().write(sdk_event(id="same")))
    failed = problem([(b"content-type", BATCH.encode())], json.dumps([event, event]).encode(), registry)
    assert failed.kind is Kind.INVALID_BATCH and failed.errors[0]["field"] == "id"
