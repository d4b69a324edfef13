"""The CloudEvents HTTP binding as the ingress reads it: three modes and hostile input, no servers."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from hub.cli.scenario import acme_engagement
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


@pytest.mark.parametrize("name", ["id", "source", "subject", "dataschema", "partitionkey", "sequence"])
@pytest.mark.parametrize("bad", ["a\r\nb", "a\x00b", "tab\there", "del\x7f", "c1\x85", "nonchar\ufffe", "\U0010ffff"])
def test_a_string_attribute_with_a_control_character_or_noncharacter_is_refused_naming_it(
    registry: SchemaRegistry, name: str, bad: str
) -> None:
    failed = problem(STRUCTURED_HEADERS, structured_body(**{name: bad}), registry)
    assert failed.kind is Kind.INVALID_CLOUDEVENT
    assert failed.field == name


def test_a_type_with_a_trailing_line_break_is_an_invalid_attribute_not_an_unknown_type(
    registry: SchemaRegistry,
) -> None:
    failed = problem(STRUCTURED_HEADERS, structured_body(type="erp.project.created.v1\n"), registry)
    assert (failed.kind, failed.field) == (Kind.INVALID_CLOUDEVENT, "type")


@pytest.mark.parametrize("name", ["id", "subject", "x", "data"])
def test_a_lone_surrogate_in_an_attribute_or_the_data_is_malformed_json(registry: SchemaRegistry, name: str) -> None:
    document = json.loads(structured_body())
    if name == "data":
        document["data"]["name"] = "broken \ud800"
    else:
        document[name] = "broken \ud800"
    body = json.dumps(document).encode()  # ensure_ascii writes the escape \ud800 into the text
    assert b"\\ud800" in body
    assert problem(STRUCTURED_HEADERS, body, registry).kind is Kind.MALFORMED_JSON


def test_a_duplicate_key_in_the_event_or_its_data_is_malformed_json(registry: SchemaRegistry) -> None:
    body = structured_body()
    twice_id = body.replace(b'"id": "evt-1"', b'"id": "evt-1", "id": "evt-2"')
    twice_region = body.replace(b'"region": "EU"', b'"region": "EU", "region": "ME"')
    assert twice_id != body and twice_region != body
    for duplicated in (twice_id, twice_region):
        assert problem(STRUCTURED_HEADERS, duplicated, registry).kind is Kind.MALFORMED_JSON


def test_a_control_character_in_one_batch_event_names_that_event_and_attribute(registry: SchemaRegistry) -> None:
    good = json.loads(JSONFormat().write(sdk_event(id="a")))
    bad = json.loads(JSONFormat().write(sdk_event(id="b")))
    bad["subject"] = "ENG\r\nX-Injected: 1"
    failed = problem([(b"content-type", BATCH.encode())], json.dumps([good, bad]).encode(), registry)
    assert failed.kind is Kind.INVALID_BATCH
    assert [(e["index"], e["type"], e["field"]) for e in failed.errors] == [(1, Kind.INVALID_CLOUDEVENT.uri, "subject")]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("ce_id", b"a%0D%0Ab"),
        ("ce_subject", b"a%00b"),
        ("ce_source", b"erp-sim%3A%2F%2Facme-psa%2Fprod%7F"),
        ("ce_partitionkey", b"a%C2%85b"),  # U+0085, a C1 control
        ("ce_sequence", b"%EF%BF%BE"),  # U+FFFE, a noncharacter
        ("ce_x", b"a%0Ab"),
        ("ce_traceparent", b"%ED%A0%80"),  # a surrogate, percent-encoded: not UTF-8
    ],
)
def test_a_percent_encoded_control_character_in_a_ce_header_is_refused_after_decoding(
    registry: SchemaRegistry, header: str, value: bytes
) -> None:
    message = ce_http.to_binary(sdk_event(), JSONFormat())
    attribute = header.removeprefix("ce_")
    headers = [(k, v) for k, v in binary_headers() if k != f"ce-{attribute}".encode()]
    failed = problem([*headers, (f"ce-{attribute}".encode(), value)], message.body, registry)
    assert failed.kind is Kind.INVALID_HEADER
    assert failed.field == attribute


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2018-04-05T17:31:00Z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05t18:31:00.123456789+01:00", datetime(2018, 4, 5, 17, 31, 0, 123_456, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
    ],
)
def test_time_is_read_as_rfc3339(registry: SchemaRegistry, text: str, instant: datetime) -> None:
    _, events = read(STRUCTURED_HEADERS, structured_body(time=text), registry)
    assert events[0].get_time() == instant


@pytest.mark.parametrize(
    "text",
    ["2018-04-05T18:31Z", "2018-04-05T18:31:00+0100", "2018-W14-4T18:31:00Z", "2018-095T18:31:00Z",
     "2018-04-05T24:00:00Z", "2018-04-05T18:31:00,5Z", "2018-04-05 18:31:00Z", "2018-02-30T00:00:00Z",
     "2018-04-05T18:31:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:60Z"],
)
def test_time_in_any_other_form_is_refused_in_every_mode(registry: SchemaRegistry, text: str) -> None:
    failed = problem(STRUCTURED_HEADERS, structured_body(time=text), registry)
    assert (failed.kind, failed.field) == (Kind.INVALID_CLOUDEVENT, "time")
    message = ce_http.to_binary(sdk_event(), JSONFormat())
    headers = [(k, v) for k, v in binary_headers() if k != b"ce-time"] + [(b"ce-time", text.encode())]
    failed = problem(headers, message.body, registry)
    assert (failed.kind, failed.field) == (Kind.INVALID_CLOUDEVENT, "time")


def test_well_formed_extensions_are_carried_in_their_canonical_string_form(registry: SchemaRegistry) -> None:
    document = json.loads(structured_body(comexampleextension1="value", comexampleothervalue=5, approved=True,
                                          rejected=False, negative=-(2**31), empty="", whole=3.0,
                                          **{"a" * 20: "twenty"}))
    document["nothing"] = None
    _, events = read(STRUCTURED_HEADERS, json.dumps(document).encode(), registry)
    attributes = events[0].get_attributes()
    assert {name: attributes.get(name) for name in
            ("comexampleextension1", "comexampleothervalue", "approved", "rejected", "negative", "empty", "whole",
             "a" * 20)
            } == {"comexampleextension1": "value", "comexampleothervalue": "5", "approved": "true",
                  "rejected": "false", "negative": "-2147483648", "empty": "", "whole": "3", "a" * 20: "twenty"}
    assert "nothing" not in attributes  # null is absent in the JSON format


def test_extensions_in_binary_mode_are_percent_decoded_and_case_insensitive(registry: SchemaRegistry) -> None:
    message = ce_http.to_binary(sdk_event(), JSONFormat())
    headers = [*binary_headers(), (b"ce-MyExtension", b"caf%C3%A9%20au%20lait")]
    _, events = read(headers, message.body, registry)
    assert events[0].get_attributes()["myextension"] == "café au lait"


def test_as_many_extensions_as_the_bound_are_accepted_and_one_more_is_refused(registry: SchemaRegistry) -> None:
    from hub.events import MAX_EXTENSIONS

    own = {"partitionkey": "project:ENG-ACME-0001", "sequence": "0001"}
    extra = {f"ext{index}": str(index) for index in range(MAX_EXTENSIONS - len(own))}
    _, events = read(STRUCTURED_HEADERS, structured_body(**own, **extra), registry)
    assert events[0].get_attributes()["sequence"] == "0001"
    failed = problem(STRUCTURED_HEADERS, structured_body(**own, **extra, onemore="x"), registry)
    assert failed.kind is Kind.INVALID_CLOUDEVENT and "at most" in failed.detail


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"a" * 21: "x"}, "a" * 21),
        ({"MyExt": "x"}, "MyExt"),
        ({"my_ext": "x"}, "my_ext"),
        ({"": "x"}, ""),
        ({"ratio": 1.5}, "ratio"),
        ({"nested": {"a": 1}}, "nested"),
        ({"listed": ["a"]}, "listed"),
        ({"big": 2**31}, "big"),
        ({"bigfloat": float(2**31)}, "bigfloat"),
        ({"small": -(2**31) - 1}, "small"),
        ({"long": "x" * 1025}, "long"),
        ({"wide": "é" * 513}, "wide"),  # 1026 bytes in UTF-8
        ({"broken": "a\nb"}, "broken"),
        ({"sequence": 7}, "sequence"),  # the contract's own extensions stay strings
    ],
)
def test_a_malformed_extension_is_refused_naming_it(
    registry: SchemaRegistry, changes: dict[str, Any], field: str
) -> None:
    failed = problem(STRUCTURED_HEADERS, structured_body(**changes), registry)
    assert failed.kind is Kind.INVALID_CLOUDEVENT
    assert failed.field == field


def test_data_cannot_be_an_extension_in_binary_mode(registry: SchemaRegistry) -> None:
    message = ce_http.to_binary(sdk_event(), JSONFormat())
    failed = problem([*binary_headers(), (b"ce-data", b"x")], message.body, registry)
    assert (failed.kind, failed.field) == (Kind.INVALID_CLOUDEVENT, "data")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("updated_at", 253_402_300_800_000),  # 10000-01-01T00:00:00Z in epoch milliseconds
        ("updated_at", -62_135_596_800_001),  # just before 0001-01-01
        ("start_date", 2_932_897),  # 10000-01-01 in days since 1970-01-01
        ("end_date", -719_163),  # the day before 0001-01-01
    ],
)
def test_data_the_avro_reader_could_not_read_back_is_a_schema_violation_at_the_edge(
    registry: SchemaRegistry, field: str, value: int
) -> None:
    data = json_data() | {field: value}
    failed = problem(STRUCTURED_HEADERS, structured_body(data=data), registry)
    assert (failed.kind, failed.field) == (Kind.SCHEMA_VIOLATION, f"data.{field}")
    assert failed.kind.status == 422
