"""Property: whatever a client sends to any route, the ingress answers 2xx or a 4xx problem, never a
5xx, and publishes nothing unless it answers 202.

Three families of input, each on real HTTP, RabbitMQ and Redis: random bytes and attribute soups on
``/v1/events``; valid CloudEvents (structured, batch, binary) with one hostile mutation; valid vendor
webhooks (Graph, DocuSign, Box) with one hostile mutation, sent with valid, wrong or no credentials.
A mutation puts JSON text where a value was: nesting 100 to 5000 levels deep, integers of 20 to 5000
digits, lone surrogate escapes (``"\\ud800"`` written literally), raw and escaped control characters,
a duplicate key, a hostile key; binary-mode headers get control characters, percent-encoded too.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.ingress import Credentials, load, serving, write_sources
from tests.support.rabbit import AMQP_URL
from tests.test_box_inbound import PAYLOAD as BOX_PAYLOAD
from tests.test_docusign_inbound import PAYLOAD as DOCUSIGN_PAYLOAD
from tests.test_ingress_app import sdk_event

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# -- random soups (the first property) -----------------------------------------------------------

CONTENT_TYPES = ["application/cloudevents+json", "application/cloudevents-batch+json", "application/json",
                 "application/avro", "text/plain", "", "application/cloudevents+json; charset=utf-8"]
ATTRIBUTES = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
              "data", "data_base64", "partitionkey", "traceparent", "x", "comexampleextension1", "Bad_Ext"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
events = st.dictionaries(st.sampled_from(ATTRIBUTES), json_values, max_size=10)
bodies = st.one_of(
    st.binary(max_size=300),
    events.map(lambda e: json.dumps(e).encode()),
    st.lists(events, max_size=3).map(lambda e: json.dumps(e).encode()),
)
ce_headers = st.dictionaries(
    st.sampled_from(["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time", "ce-x"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30), max_size=5)

# -- hostile JSON text -----------------------------------------------------------------------------

LONE_SURROGATES = ["\\ud800", "\\udfff", "\\udbff\\u0041", "\\udc00\\ud800", "\\ud83d"]
controls = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from(["\x7f", "\x85", "\ufffe", "\ufdd0"])
short_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
                     max_size=6)
#: JSON text fragments that replace one value of a valid document.
fragments = st.one_of(
    st.integers(100, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(100, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(100, 5000).map(lambda n: "[" * n),  # deep and unterminated
    st.integers(20, 5000).map(lambda n: "9" * n),
    st.integers(20, 5000).map(lambda n: "-" + "1" * n),
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1.5", "true", "null", "[]", "{}", '""',
                     "0", "-1", "2147483648", "-2147483649", "9223372036854775808", "253402300800000", "2932897",
                     '"2018-04-05T18:31Z"', '"2018-04-05T18:31:00+0100"', '"2018-W14-4T18:31:00Z"',
                     '"2018-04-05T24:00:00Z"', '"0001-01-01T00:00:00+01:00"', '"9999-12-31T23:59:60Z"']),
    st.tuples(short_text, st.sampled_from(LONE_SURROGATES), short_text).map(lambda t: f'"{t[0]}{t[1]}{t[2]}"'),
    st.tuples(short_text, controls, short_text).map(lambda t: json.dumps(t[0] + t[1] + t[2])),  # escaped
    st.tuples(short_text, st.characters(max_codepoint=0x1F), short_text).map(lambda t: f'"{t[0]}{t[1]}{t[2]}"'),
    json_values.map(json.dumps),
)
hostile_keys = st.sampled_from(['"\\ud800"', '"x\\udfff"', '"Bad_Ext"', '"data"', '"' + "a" * 21 + '"',
                                '"x\\u0000"', '"comexampleextension1"', '""', '"specversion"'])
MARK = "\u0001fuzz-mark\u0001"


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a JSON document, containers included."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        document = document[step]
    return document


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> bytes:
    """``document`` as JSON text with one hostile change: a value, a duplicate key, or a key."""
    path = draw(st.sampled_from(paths(document)))
    copied = copy.deepcopy(document)
    parent, last = _at(copied, path), path[-1]
    how = draw(st.sampled_from(["value", "duplicate", "key"]))
    if how == "key" and isinstance(last, str):
        parent[MARK] = parent.pop(last)
        return json.dumps(copied).replace(json.dumps(MARK), draw(hostile_keys), 1).encode()
    parent[last] = MARK
    fragment = draw(fragments)
    if how == "duplicate" and isinstance(last, str):
        fragment = f"{draw(fragments)}, {json.dumps(last)}: {fragment}"
    return json.dumps(copied).replace(json.dumps(MARK), fragment, 1).encode()


percent_hostile = st.sampled_from(["%0D%0A", "%00", "%7F", "%C2%85", "%ED%A0%80", "%FF", "%EF%BF%BE", "%0A", "%09",
                                   "%25", "%"])
header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.tuples(short_text, percent_hostile, short_text).map("".join),
    st.sampled_from(["2018-04-05T18:31Z", "2018-04-05T18:31:00+0100", "0.3", "erp.project.created.v1%0A"]),
).map(lambda value: value.strip(" "))  # HTTP itself has no leading or trailing blanks in a field value
header_names = st.sampled_from(["ce-id", "ce-source", "ce-type", "ce-subject", "ce-time", "ce-specversion",
                                "ce-dataschema", "ce-partitionkey", "ce-traceparent", "ce-sequence",
                                "ce-comexampleextension1", "ce-data", "ce-Bad_Ext", "ce-" + "a" * 21])

# -- the servers -----------------------------------------------------------------------------------


class Fanout:
    """Depth of the fan-out queue, through one connection for the whole module."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.connection.channel()

    def depth(self) -> int:
        return int(self.channel.queue_declare(self.queue, passive=True).method.message_count)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Credentials, Fanout]]:
    from hub.cli.compose import build_app
    from tests.conftest import hub_settings
    from tests.support.rabbit import delete_queues

    prefix = f"t{uuid.uuid4().hex[:10]}"
    path, creds = write_sources(Path(tmp_path_factory.mktemp("fuzz")), quota="100000/minute",
                                vendor_quota="100000/minute")
    runtime = build_app(hub_settings(prefix), embedded=False)
    try:
        with serving(runtime, load(path)) as url:
            fanout = Fanout(runtime.broker.get_actor("fanout").queue_name)
            try:
                yield url, creds, fanout
            finally:
                fanout.connection.close()
    finally:
        runtime.close()
        delete_queues(prefix)


def post(fanout: Fanout, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST, then check the property: no 5xx, problem+json errors, publishes only with a 202."""
    before = fanout.depth()
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    assert response.status_code < 500, response.text
    if response.status_code not in (200, 202):
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
        problem = response.json()
        assert problem["type"].startswith("urn:hub:problem:") and problem["status"] == response.status_code
    published = 0
    if response.status_code == 202:
        published = sum(1 for outcome in response.json()["accepted"] if not outcome.get("resent"))
    assert fanout.depth() == before + published
    return response


# -- /v1/events ------------------------------------------------------------------------------------


@FUZZ
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES), extra=ce_headers)
def test_no_input_produces_a_5xx_or_publishes_anything(
    server: tuple[str, Credentials, Fanout], body: bytes, content_type: str, extra: dict[str, Any]
) -> None:
    url, creds, fanout = server
    headers = {"authorization": f"Bearer {creds.api_key}", "content-type": content_type, **extra}
    post(fanout, f"{url}/v1/events", body, headers)


def _structured_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(JSONFormat().write(sdk_event("evt-fuzz")))
    document["comexampleextension1"] = "value"
    return document


STRUCTURED = _structured_document()
BATCH = [STRUCTURED, _structured_document() | {"id": "evt-fuzz-2"}]
BINARY = ce_http.to_binary(sdk_event("evt-fuzz-binary"), JSONFormat())


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["structured", "batch", "binary body", "binary header"]))
def test_a_valid_event_with_one_hostile_change_never_produces_a_5xx(
    server: tuple[str, Credentials, Fanout], data: st.DataObject, mode: str
) -> None:
    url, creds, fanout = server
    auth = {"authorization": f"Bearer {creds.api_key}"}
    if mode == "structured":
        body, headers = data.draw(mutated(STRUCTURED)), {"content-type": "application/cloudevents+json"}
    elif mode == "batch":
        body, headers = data.draw(mutated(BATCH)), {"content-type": "application/cloudevents-batch+json"}
    elif mode == "binary body":
        body, headers = data.draw(mutated(json.loads(BINARY.body))), dict(BINARY.headers)
    else:
        headers = dict(BINARY.headers) | {data.draw(header_names): data.draw(header_values)}
        body = BINARY.body
    post(fanout, f"{url}/v1/events", body, headers | auth)


# -- vendor webhooks -------------------------------------------------------------------------------


def graph_payload(creds: Credentials) -> dict[str, Any]:
    return {"value": [{
        "id": "n-fuzz", "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "clientState": creds.graph_state,
        "changeType": "updated", "resource": "drives/b!abc/root", "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {"@odata.type": "#Microsoft.Graph.DriveItem", "id": "01ABCDEF"}}]}


def vendor_headers(vendor: str, creds: Credentials, body: bytes, credentials: str) -> dict[str, str]:
    """Headers of a vendor request whose credentials are ``valid``, ``wrong`` or ``none``."""
    headers = {"content-type": "application/json"}
    if vendor == "docusign" and credentials != "none":
        key = creds.docusign_key if credentials == "valid" else "not-the-key"
        headers["x-docusign-signature-1"] = base64.b64encode(
            hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    if vendor == "box" and credentials != "none":
        timestamp = datetime.now(UTC).isoformat(timespec="seconds")
        keys = creds.box_keys if credentials == "valid" else ("wrong", "keys")
        primary, secondary = (base64.b64encode(hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256)
                                               .digest()).decode() for key in keys)
        headers |= {"box-delivery-timestamp": timestamp, "box-signature-primary": primary,
                    "box-signature-secondary": secondary, "box-signature-version": "1",
                    "box-signature-algorithm": "HmacSHA256"}
    return headers


whole_bodies = fragments.map(str.encode)


@settings(FUZZ, max_examples=200)
@given(data=st.data(), vendor=st.sampled_from(["graph", "docusign", "box"]),
       credentials=st.sampled_from(["valid", "valid", "wrong", "none"]), whole=st.booleans())
def test_a_vendor_webhook_with_one_hostile_change_never_produces_a_5xx(
    server: tuple[str, Credentials, Fanout], data: st.DataObject, vendor: str, credentials: str, whole: bool
) -> None:
    url, creds, fanout = server
    source = {"graph": "sharepoint", "docusign": "docusign", "box": "box"}[vendor]
    if vendor == "graph":
        payload = graph_payload(creds)
        if credentials == "wrong":
            payload["value"][0]["clientState"] = "forged"
        elif credentials == "none":
            del payload["value"][0]["clientState"]
    else:
        payload = DOCUSIGN_PAYLOAD if vendor == "docusign" else BOX_PAYLOAD
    body = data.draw(whole_bodies) if whole else data.draw(mutated(payload))
    query = ""
    if vendor == "graph" and data.draw(st.integers(0, 9)) == 0:
        # The handshake echoes the token, percent-decoded: never a 5xx either, whatever it decodes to.
        query = "?validationToken=" + data.draw(header_values).replace(" ", "+").replace("#", "%23")
    post(fanout, f"{url}/v1/webhooks/{vendor}/{source}{query}", body,
         vendor_headers(vendor, creds, body, credentials))
