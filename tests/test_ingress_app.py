"""The ingress over real HTTP (uvicorn), real RabbitMQ and real Redis."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from hub.cli.compose import build_app, build_ingress
from hub.errors import ConfigurationError
from hub.ingress.sources import SourceConfig, SourceRegistry
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.conftest import hub_settings
from tests.support.ingress import Credentials, load, serving, signed_headers, write_sources
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import queue_depth, wait_until
from tests.test_ingress_binding import json_data

pytestmark = pytest.mark.integration
SOURCE = "erp-sim://acme-psa/prod"


@pytest.fixture
def sources_file(tmp_path: Path) -> tuple[Path, Credentials]:
    return write_sources(tmp_path)


@pytest.fixture
def ingress(app: Runtime, sources_file: tuple[Path, Credentials]) -> Iterator[tuple[str, Credentials]]:
    path, creds = sources_file
    with serving(app, load(path)) as url:
        yield url, creds


def sdk_event(event_id: str = "evt-1", **overrides: Any) -> SdkEvent:
    attributes = {"type": "erp.project.created.v1", "source": SOURCE, "id": event_id,
                  "subject": "ENG-ACME-0001", "datacontenttype": "application/json", **overrides}
    return SdkEvent(attributes, json_data())


def structured(event: SdkEvent) -> tuple[dict[str, str], bytes]:
    message = ce_http.to_structured(event, JSONFormat())
    return dict(message.headers), message.body


def bearer(creds: Credentials) -> dict[str, str]:
    return {"authorization": f"Bearer {creds.api_key}"}


def fanout_depth(app: Runtime) -> int:
    return queue_depth(app.broker.get_actor("fanout").queue_name)


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:hub:problem:{kind}" and body["status"] == status
    return body


def assert_accepted_once_ready(url: str, body: bytes, headers: dict[str, str]) -> None:
    """Once the ingress is ready again, the event it refused is accepted as new: the refusal kept nothing."""
    assert wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=30)
    again = httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=30)
    assert again.status_code == 202, again.text
    assert "resent" not in again.json()["accepted"][0], "the refused attempt must not count as accepted"


@pytest.mark.parametrize("mode", ["structured", "binary", "batch"])
def test_each_cloudevents_mode_arrives_on_the_topic_exchange_decoded(
    app: Runtime, ingress: tuple[str, Credentials], mode: str
) -> None:
    url, creds = ingress
    event = sdk_event(f"evt-{mode}")
    if mode == "binary":
        message = ce_http.to_binary(event, JSONFormat())
        headers, body = dict(message.headers), message.body
    elif mode == "structured":
        headers, body = structured(event)
    else:
        headers = {"content-type": "application/cloudevents-batch+json"}
        body = json.dumps([json.loads(JSONFormat().write(event))]).encode()
    with app.subscription("erp.project.created.v1") as receive, \
            running_worker(app, threads=2):
        response = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
        assert response.status_code == 202, response.text
        assert response.json()["accepted"][0]["id"] == f"evt-{mode}"
        delivery = None
        for _ in range(10):
            delivery = receive(5.0)
            if delivery is None or delivery.event().get_id() == f"evt-{mode}":
                break
    assert delivery is not None
    received = delivery.event()
    assert received.get_id() == f"evt-{mode}"
    data = received.get_data()
    assert isinstance(data, bytes)
    assert app.registry.decode(received.get_type(), data)["project_code"] == "ENG-ACME-0001"


def test_a_webhook_signed_by_the_reference_package_is_accepted_with_either_rotated_secret(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    for index, secret in enumerate(creds.webhook_secrets):
        headers, body = structured(sdk_event(f"evt-signed-{index}"))
        response = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **signed_headers(secret, body)})
        assert response.status_code == 202, response.text
    assert fanout_depth(app) == 2


def _tampered(creds: Credentials) -> list[tuple[str, dict[str, str], bytes]]:
    headers, body = structured(sdk_event("evt-bad"))
    good = signed_headers(creds.webhook_secrets[0], body)
    flipped = bytearray(body)
    flipped[10] ^= 0x01
    reserialised = json.dumps(json.loads(body), indent=2).encode()
    wrong_secret = "whsec_" + "QUJD" * 8
    return [
        ("no credentials", headers, body),
        ("wrong api key", {**headers, "authorization": "Bearer nope"}, body),
        ("wrong secret", {**headers, **signed_headers(wrong_secret, body)}, body),
        ("flipped byte", {**headers, **good}, bytes(flipped)),
        ("re-serialised json", {**headers, **good}, reserialised),
        ("stale timestamp", {**headers, **signed_headers(creds.webhook_secrets[0], body,
                                                          timestamp=time.time() - 600)}, body),
    ]


def test_every_authentication_failure_is_401_and_publishes_nothing(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    for label, headers, body in _tampered(creds):
        response = httpx.post(f"{url}/v1/events", content=body, headers=headers)
        problem = assert_problem(response, 401, "unauthenticated")
        assert creds.webhook_secrets[0] not in json.dumps(problem), label
    assert fanout_depth(app) == 0


def test_a_replayed_webhook_id_with_a_different_body_is_refused(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    headers, body = structured(sdk_event("evt-r1"))
    first = signed_headers(creds.webhook_secrets[0], body, msg_id="msg_fixed")
    assert httpx.post(f"{url}/v1/events", content=body, headers={**headers, **first}).status_code == 202
    _, other = structured(sdk_event("evt-r2"))
    replay = signed_headers(creds.webhook_secrets[0], other, msg_id="msg_fixed")
    assert_problem(httpx.post(f"{url}/v1/events", content=other, headers={**headers, **replay}),
                   401, "unauthenticated")
    assert fanout_depth(app) == 1


def test_a_foreign_type_or_a_spoofed_source_is_403_and_nothing_is_published(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    foreign = SdkEvent({"type": "dms.change.notified.v1", "source": SOURCE, "id": "evt-f",
                        "datacontenttype": "application/json"},
                       {"platform": "sharepoint", "change_type": "updated", "resource": "drives/d1/root",
                        "notified_at": 1_795_770_000_000})
    spoofed = sdk_event("evt-s", source="docusign://docusign")
    for event in (foreign, spoofed):
        headers, body = structured(event)
        response = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
        assert_problem(response, 403, "forbidden")
    assert fanout_depth(app) == 0


def test_a_resent_event_returns_the_first_outcome_and_is_published_once(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    headers, body = structured(sdk_event("evt-once"))
    first = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
    again = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
    assert first.status_code == again.status_code == 202
    assert again.json()["accepted"][0]["resent"] is True
    assert again.json()["accepted"][0]["id"] == "evt-once"
    assert fanout_depth(app) == 1
    changed = sdk_event("evt-once", subject="ENG-OTHER")
    headers, body = structured(changed)
    assert_problem(httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)}),
                   409, "id-conflict")


def test_two_ingress_instances_share_one_quota(
    app: Runtime, prefix: str, tmp_path: Path
) -> None:
    path, creds = write_sources(tmp_path, quota="3/minute")
    sources = load(path)
    other = build_app(hub_settings(prefix), embedded=False)
    try:
        with serving(app, sources) as first, serving(other, sources) as second:
            statuses, remaining = [], []
            for index, url in enumerate([first, second, first, second]):
                headers, body = structured(sdk_event(f"evt-q{index}"))
                response = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
                statuses.append(response.status_code)
                remaining.append(response.headers.get("ratelimit-remaining"))
            assert statuses == [202, 202, 202, 429]
            assert remaining[:3] == ["2", "1", "0"]  # one quota across both instances, told to the sender
            assert int(response.headers["retry-after"]) >= 1
            assert_problem(response, 429, "rate-limited")
    finally:
        other.close()


def _raw_request(url: str, head: bytes, chunks: list[bytes]) -> tuple[bytes, int]:
    """Send a request by hand; returns the response and how many body bytes were sent before it came."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head)
        conn.settimeout(0.05)
        response = b""
        for chunk in chunks:
            with contextlib.suppress(TimeoutError):
                response += conn.recv(65536)
            if response:
                break
            try:
                conn.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        conn.settimeout(10)
        while b"\r\n\r\n" not in response:
            data = conn.recv(65536)
            if not data:
                break
            response += data
    return response, sent


def test_an_oversized_body_is_413_without_being_read_whatever_its_framing(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    auth = f"Authorization: Bearer {creds.api_key}\r\n".encode()
    declared = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n" + auth
                + b"Content-Length: 10000000000\r\n\r\n")
    response, sent = _raw_request(url, declared, [b"x" * 65536] * 64)
    assert response.startswith(b"HTTP/1.1 413")
    assert sent < app.settings.max_body_bytes
    chunked_head = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
                    + auth + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    response, sent = _raw_request(url, chunked_head, [chunk] * 200)  # 12.8 MiB offered
    assert response.startswith(b"HTTP/1.1 413")
    assert sent < 4 * app.settings.max_body_bytes, "the server must stop reading near the limit"
    assert fanout_depth(app) == 0


def test_router_errors_and_hostile_bodies_are_problem_json_never_5xx(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    url, creds = ingress
    assert_problem(httpx.get(f"{url}/v1/nothing"), 404, "not-found")
    assert_problem(httpx.get(f"{url}/v1/events"), 405, "method-not-allowed")
    hostile = [
        ({"content-type": "application/cloudevents+json"}, b"{" * 5000),
        ({"content-type": "application/cloudevents+json"}, b"\xff\xfe"),
        ({"content-type": "text/plain"}, b"hello"),
        ({"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "x", "ce-source": SOURCE,
          "ce-type": "erp.project.created.v1"}, b"[]"),
    ]
    for headers, body in hostile:
        response = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert fanout_depth(app) == 0


def test_the_ingress_refuses_sources_built_without_a_place_for_its_adapters_keys(app: Runtime) -> None:
    bare = SourceConfig.model_validate({
        "id": "erp-acme", "description": "built with the runtime's model alone", "sources": [SOURCE],
        "event_types": ["erp.*"], "quota": "1/second", "credentials": [{"scheme": "api_key", "sha256": "0" * 64}]})
    with pytest.raises(ConfigurationError, match="source 'erp-acme' has no place for the box, docusign, graph"):
        build_ingress(app, sources=SourceRegistry([bare]))


def test_health_readiness_and_the_openapi_document(ingress: tuple[str, Credentials]) -> None:
    url, _ = ingress
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
    document = httpx.get(f"{url}/openapi.json").json()
    assert "/v1/events" in document["paths"]
    assert "application/cloudevents+json" in document["paths"]["/v1/events"]["post"]["requestBody"]["content"]


def test_a_stopped_broker_gives_503_with_retry_after_and_never_202(
    prefix: str, sources_file: tuple[Path, Credentials]
) -> None:
    proxy = TcpProxy(("127.0.0.1", 5672))
    runtime = build_app(hub_settings(prefix, amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"),
                        embedded=False)
    path, creds = sources_file
    try:
        with serving(runtime, load(path)) as url:
            proxy.cut()
            headers, body = structured(sdk_event("evt-down"))
            response = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)},
                                  timeout=30)
            problem = assert_problem(response, 503, "unavailable")
            assert int(response.headers["retry-after"]) >= 1
            assert "evt-down" not in json.dumps(problem.get("accepted", []))
            assert httpx.get(f"{url}/readyz").status_code == 503
            proxy.restore()
            assert_accepted_once_ready(url, body, {**headers, **bearer(creds)})
    finally:
        runtime.close()
        proxy.close()


def test_docusign_connect_through_the_ingress_bad_signature_changes_nothing(
    app: Runtime, ingress: tuple[str, Credentials]
) -> None:
    from tests.test_docusign_inbound import BODY, sign

    url, creds = ingress
    target = f"{url}/v1/webhooks/docusign/docusign"
    bad = httpx.post(target, content=BODY, headers={"x-docusign-signature-1": sign(BODY, "not-the-key"),
                                                    "content-type": "application/json"})
    assert_problem(bad, 401, "unauthenticated")
    assert fanout_depth(app) == 0
    good = httpx.post(target, content=BODY, headers={"x-docusign-signature-1": sign(BODY, creds.docusign_key),
                                                     "content-type": "application/json"})
    assert good.status_code == 202, good.text
    assert good.json()["accepted"][0]["type"] == "esign.envelope.completed.v1"
    assert fanout_depth(app) == 1
    assert_problem(httpx.post(f"{url}/v1/webhooks/docusign/nobody", content=BODY), 404, "not-found")


def test_graph_validation_handshake_and_client_state(app: Runtime, ingress: tuple[str, Credentials]) -> None:
    url, creds = ingress
    target = f"{url}/v1/webhooks/graph/sharepoint"
    token = "Validation: Token with spaces & symbols"
    handshake = httpx.post(target, params={"validationToken": token})
    assert handshake.status_code == 200
    assert handshake.headers["content-type"].startswith("text/plain")
    assert handshake.text == token
    notification = {"value": [{
        "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "clientState": creds.graph_state,
        "changeType": "updated", "resource": "drives/b!abc/root", "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "subscriptionExpirationDateTime": "2026-12-01T11:00:00.0000000Z",
        "resourceData": {"@odata.type": "#Microsoft.Graph.DriveItem", "id": "01ABCDEF"}}]}
    ok = httpx.post(target, json=notification)
    assert ok.status_code == 202, ok.text
    notification["value"][0]["clientState"] = "forged"
    assert_problem(httpx.post(target, json=notification), 401, "unauthenticated")
    assert fanout_depth(app) == 1


def test_the_ingress_span_starts_the_trace_that_workers_and_the_flight_record_continue(
    app: Runtime, ingress: tuple[str, Credentials], spans: tuple[Any, Any]
) -> None:
    url, creds = ingress
    _, exporter = spans
    headers, body = structured(sdk_event("evt-traced"))
    with running_worker(app, threads=1):
        response = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
        assert response.status_code == 202
        assert wait_until(lambda: any(h.outcome == "ok" for h in app.flight.hops("evt-traced")))
        # the hop is recorded as the attempt ends; its span is exported a moment later
        assert wait_until(lambda: any(s.name == "process fanout" for s in exporter.get_finished_spans()))
    ingress_span = next(s for s in exporter.get_finished_spans() if s.name == "POST /v1/events")
    trace_id = f"{ingress_span.context.trace_id:032x}"
    worker_spans = [s for s in exporter.get_finished_spans() if s.name == "process fanout"]
    assert worker_spans and all(f"{s.context.trace_id:032x}" == trace_id for s in worker_spans)
    assert {h.trace_id for h in app.flight.hops("evt-traced") if h.outcome == "ok"} == {trace_id}
