"""Never accept and lose: hostile input on every route is a 4xx that costs no quota, and well-formed
extensions reach the topic exchange. Real HTTP (uvicorn), real RabbitMQ and Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat

from hub.runtime import Runtime
from hub.topics import Delivery
from hub.workers import running_worker
from tests.support.ingress import Credentials, load, serving, write_sources
from tests.test_ingress_app import assert_problem, bearer, fanout_depth, sdk_event, structured

pytestmark = pytest.mark.integration

Request = tuple[dict[str, str], bytes]


@pytest.fixture
def ingress(app: Runtime, tmp_path: Path) -> Iterator[tuple[str, Credentials]]:
    path, creds = write_sources(tmp_path, quota="20/minute", vendor_quota="20/minute")
    with serving(app, load(path)) as url:
        yield url, creds


def graph_body(creds: Credentials, *, resource_id: str = "01ABCDEF", notification_id: str = "n-1") -> bytes:
    return json.dumps({"value": [{
        "id": notification_id, "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        "clientState": creds.graph_state, "changeType": "updated", "resource": "drives/b!abc/root",
        "resourceData": {"id": resource_id}}]}).encode()


def docusign_request(creds: Credentials, body: bytes) -> Request:
    signature = base64.b64encode(hmac.new(creds.docusign_key.encode(), body, hashlib.sha256).digest()).decode()
    return {"x-docusign-signature-1": signature, "content-type": "application/json"}, body


def box_request(creds: Credentials, body: bytes) -> Request:
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    signatures = [base64.b64encode(hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).digest()
                                   ).decode() for key in creds.box_keys]
    return {"box-delivery-timestamp": timestamp, "box-signature-primary": signatures[0],
            "box-signature-secondary": signatures[1], "box-signature-version": "1",
            "box-signature-algorithm": "HmacSHA256", "content-type": "application/json"}, body


def box_body() -> bytes:
    from tests.test_box_inbound import PAYLOAD

    return json.dumps(PAYLOAD).encode()


def surrogate_in_subject() -> bytes:
    _, body = structured(sdk_event("evt-lone"))
    document = json.loads(body) | {"subject": "ENG-\ud800"}
    return json.dumps(document).encode()  # ensure_ascii: the text holds the escape \ud800


def surrogate_in_data() -> bytes:
    _, body = structured(sdk_event("evt-lone-data"))
    document = json.loads(body)
    document["data"]["name"] = "Operating model \udfff"
    return json.dumps(document).encode()


def surrogate_in_batch() -> bytes:
    good = json.loads(structured(sdk_event("evt-batch-ok"))[1])
    return json.dumps([good, json.loads(surrogate_in_subject())]).encode()


def binary_with(name: str, value: str) -> Request:
    message = ce_http.to_binary(sdk_event("evt-binary-bad"), JSONFormat())
    return {**dict(message.headers), name: value}, message.body


def events_good(creds: Credentials, _: int) -> Request:
    headers, body = structured(sdk_event("evt-good"))
    return headers | bearer(creds), body


def events_bad(creds: Credentials) -> list[Request]:
    structured_headers = {"content-type": "application/cloudevents+json"} | bearer(creds)
    return [
        (structured_headers, surrogate_in_subject()),
        (structured_headers, surrogate_in_data()),
        ({"content-type": "application/cloudevents-batch+json"} | bearer(creds), surrogate_in_batch()),
        (binary_with("ce-subject", "%ED%A0%80")[0] | bearer(creds), binary_with("ce-subject", "")[1]),
        (binary_with("ce-id", "a%0D%0Ab")[0] | bearer(creds), binary_with("ce-id", "")[1]),
    ]


def graph_good(creds: Credentials, attempt: int) -> Request:
    # Graph notifications are stamped on receipt: a re-send of one notification id would be a conflict.
    return {"content-type": "application/json"}, graph_body(creds, notification_id=f"n-{attempt}")


def graph_bad(creds: Credentials) -> list[Request]:
    json_headers = {"content-type": "application/json"}
    return [(json_headers, graph_body(creds, resource_id=bad)) for bad in ("\ud800", "01\r\nAB")]


def docusign_good(creds: Credentials, _: int) -> Request:
    return docusign_request(creds, _docusign_body())


def docusign_bad(creds: Credentials) -> list[Request]:
    return [docusign_request(creds, _docusign_body().replace(b'"envelopeId": "', b'"envelopeId": "\\ud800'))]


def box_good(creds: Credentials, _: int) -> Request:
    return box_request(creds, box_body())


def box_bad(creds: Credentials) -> list[Request]:
    return [box_request(creds, box_body().replace(b'"FILE.UPLOADED"', b'"FILE.\\udc00"'))]


#: Route -> (path, a good request for an attempt number, the bad requests).
ROUTES: dict[str, tuple[str, Callable[[Credentials, int], Request], Callable[[Credentials], list[Request]]]] = {
    "events": ("/v1/events", events_good, events_bad),
    "graph": ("/v1/webhooks/graph/sharepoint", graph_good, graph_bad),
    "docusign": ("/v1/webhooks/docusign/docusign", docusign_good, docusign_bad),
    "box": ("/v1/webhooks/box/box", box_good, box_bad),
}


def _docusign_body() -> bytes:
    from tests.test_docusign_inbound import BODY

    return BODY


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_lone_surrogate_or_control_character_is_a_400_that_costs_no_quota(
    app: Runtime, ingress: tuple[str, Credentials], route: str
) -> None:
    url, creds = ingress
    path, good, bads = ROUTES[route]
    headers, body = good(creds, 1)
    first = httpx.post(f"{url}{path}", content=body, headers=headers)
    assert first.status_code == 202, first.text
    remaining = int(first.headers["ratelimit-remaining"])
    for bad_headers, bad_body in bads(creds):
        response = httpx.post(f"{url}{path}", content=bad_body, headers=bad_headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] in {"urn:hub:problem:malformed-json", "urn:hub:problem:invalid-header",
                                           "urn:hub:problem:invalid-cloudevent", "urn:hub:problem:invalid-batch"}
    headers, body = good(creds, 2)  # a re-send or a new event: charged as one either way
    again = httpx.post(f"{url}{path}", content=body, headers=headers)
    assert again.status_code == 202, again.text
    assert int(again.headers["ratelimit-remaining"]) == remaining - 1
    assert fanout_depth(app) == (2 if route == "graph" else 1)


@pytest.mark.parametrize(
    "body",
    [b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"value": [{"clientState": "x", "n": ' + b"9" * 5000 + b"}]}"],
    ids=["nested 5000 levels", "5000-digit integer"],
)
def test_a_hostile_graph_body_without_credentials_is_json_too_complex_and_tells_nothing(
    app: Runtime, ingress: tuple[str, Credentials], body: bytes
) -> None:
    url, creds = ingress
    response = httpx.post(f"{url}/v1/webhooks/graph/sharepoint", content=body,
                          headers={"content-type": "application/json"})
    problem = assert_problem(response, 400, "json-too-complex")
    assert creds.graph_state not in response.text
    assert "9" * 30 not in json.dumps(problem)
    assert fanout_depth(app) == 0


@pytest.mark.parametrize("vendor", ["docusign", "box"])
def test_a_hostile_signed_vendor_body_is_json_too_complex_and_an_unsigned_one_unauthenticated(
    app: Runtime, ingress: tuple[str, Credentials], vendor: str
) -> None:
    url, creds = ingress
    deep = b'{"event": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    signed = docusign_request(creds, deep) if vendor == "docusign" else box_request(creds, deep)
    target = f"{url}/v1/webhooks/{vendor}/{vendor}"
    assert_problem(httpx.post(target, content=deep, headers={"content-type": "application/json"}),
                   401, "unauthenticated")
    assert_problem(httpx.post(target, content=signed[1], headers=signed[0]), 400, "json-too-complex")
    assert fanout_depth(app) == 0


def _receive(receive: Callable[[float], Delivery | None], event_id: str) -> Delivery | None:
    for _ in range(20):
        delivery = receive(5.0)
        if delivery is None or delivery.headers.get("ce-id") == event_id:
            return delivery
    return None


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_extension_given_at_the_edge_arrives_as_a_ce_header_on_the_topic_exchange(
    app: Runtime, ingress: tuple[str, Credentials], mode: str
) -> None:
    url, creds = ingress
    event_id = f"evt-ext-{uuid.uuid4().hex[:8]}"
    if mode == "structured":
        headers, body = structured(sdk_event(event_id))
        document: dict[str, Any] = json.loads(body) | {"comexampleextension1": "value", "comexampleothervalue": 5,
                                                       "approved": True}
        body = json.dumps(document).encode()
    else:
        message = ce_http.to_binary(sdk_event(event_id), JSONFormat())
        headers = dict(message.headers) | {"ce-comexampleextension1": "value", "ce-comexampleothervalue": "5",
                                           "ce-approved": "true"}
        body = message.body
    with app.subscription("erp.project.created.v1") as receive, \
            running_worker(app, threads=2):
        response = httpx.post(f"{url}/v1/events", content=body, headers=headers | bearer(creds))
        assert response.status_code == 202, response.text
        delivery = _receive(receive, event_id)
    assert delivery is not None
    assert {name: delivery.headers.get(f"ce-{name}") for name in
            ("comexampleextension1", "comexampleothervalue", "approved")} == {
        "comexampleextension1": "value", "comexampleothervalue": "5", "approved": "true"}
    assert delivery.event().get_extension("comexampleothervalue") == "5"


def test_a_percent_encoded_line_break_in_a_ce_header_is_refused_over_http(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    headers, body = binary_with("ce-id", "a%0D%0Ab")
    problem = assert_problem(httpx.post(f"{url}/v1/events", content=body, headers=headers | bearer(creds)),
                             400, "invalid-header")
    assert problem["field"] == "id"
    assert fanout_depth(app) == 0
