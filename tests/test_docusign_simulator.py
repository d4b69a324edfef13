"""The DocuSign simulator over real HTTP: envelopes, signing, signed Connect notifications with retries,
and the DocuSign client downloading the signed document."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from connectors.docusign.client import DocuSignClient, EnvelopeNotFound
from connectors.docusign.inbound import EVENT_TYPE, parse, to_event, verify
from hub.errors import AuthenticationFailed
from hub.events import validate_event
from hub.ingress.server import serve_in_thread
from hub.registry import SchemaRegistry
from simulators.docusign import ConnectConfig, DocuSignSimConfig, create_app
from simulators.docusign.connect import ConnectOutbox
from simulators.kit.clock import ManualClock
from simulators.kit.outbox import DAY_S
from tests.support.schedules import answering, gaps, run_schedule

TOKEN = "ds-test-token"
HMAC_KEY = "Xq3sE0oY1nJmV3zC6jQ9yT2uR5wA8dF4hK7pL0bN6gM="
ACCOUNT = "12345678-abcd-1234-abcd-1234567890ab"
SOURCE = f"docusign://account/{ACCOUNT}"
PDF = b"%PDF-1.7\n% signed SOW ACME-2025-014\n%%EOF\n"
ENVELOPES = f"/restapi/v2.1/accounts/{ACCOUNT}/envelopes"


@dataclass
class Receiver:
    """A tiny hub stand-in: verifies the Connect HMAC and answers from a script (then 200)."""

    answers: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/webhooks/docusign")
        async def connect(request: Request) -> Response:
            body = await request.body()
            try:
                verify(body, dict(request.headers), [HMAC_KEY])
            except AuthenticationFailed:
                return Response(status_code=401)
            with self.lock:
                self.attempts += 1
                status = self.answers.pop(0) if self.answers else 200
                if status == 200:
                    self.bodies.append(body)
            return Response(status_code=status)

        return app


def envelope_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "emailSubject": "Please DocuSign: SOW ACME-2025-014",
        "documents": [{"documentId": "1", "name": "SOW ACME-2025-014.pdf", "documentClass": "SOW",
                       "documentBase64": base64.b64encode(PDF).decode()}],
        "recipients": {"signers": [
            {"name": "Anna Schmidt", "email": "a.schmidt@acme.example", "roleName": "client_signatory"},
            {"name": "Peter Weber", "email": "p.weber@firm.example", "roleName": "engagement_partner"},
        ]},
        "customFields": {"textCustomFields": [
            {"name": "project_code", "value": "ACME-2025-014"},
            {"name": "contract_value", "value": "125,000.00"},
            {"name": "contract_currency", "value": "EUR"},
            {"name": "start_date", "value": "2025-04-01"},
            {"name": "end_date", "value": "2025-09-30"},
        ]},
        "status": "sent",
    }
    body.update(overrides)
    return body


@contextmanager
def sim_notifying(receiver: Receiver | None) -> Iterator[tuple[str, httpx.Client]]:
    """The simulator (posting Connect to ``receiver`` when given); yields its URL and an API client."""
    if receiver is None:
        with serve_in_thread(create_app(DocuSignSimConfig(token=TOKEN))) as url, httpx.Client(
                base_url=url, headers={"authorization": f"Bearer {TOKEN}"}) as api:
            yield url, api
        return
    with serve_in_thread(receiver.app()) as hub_url:
        config = DocuSignSimConfig(token=TOKEN, connect=ConnectConfig(
            url=f"{hub_url}/v1/webhooks/docusign", hmac_key=HMAC_KEY, attempts=4, backoff_s=0.05,
            retry_interval_s=0.05))
        with serve_in_thread(create_app(config)) as url, httpx.Client(
                base_url=url, headers={"authorization": f"Bearer {TOKEN}"}) as api:
            yield url, api


def create_envelope(api: httpx.Client) -> str:
    response = api.post(ENVELOPES, json=envelope_body())
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "sent"
    envelope_id: str = response.json()["envelopeId"]
    return envelope_id


def flush(url: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/_sim/deliveries/flush", params={"timeout_s": 20}, timeout=30)
    assert response.json() == {"empty": True}
    items: list[dict[str, Any]] = httpx.get(f"{url}/_sim/deliveries").json()["items"]
    return items


def test_signing_completes_the_envelope_and_connect_delivers_a_verifiable_completed_event() -> None:
    receiver = Receiver()
    with sim_notifying(receiver) as (url, api):
        envelope_id = create_envelope(api)
        assert api.get(f"{ENVELOPES}/{envelope_id}").json()["status"] == "sent"
        signed = httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign")
        assert signed.status_code == 200
        envelope = api.get(f"{ENVELOPES}/{envelope_id}").json()
        assert envelope["status"] == "completed" and envelope["completedDateTime"]
        assert all(s["status"] == "completed" for s in envelope["recipients"]["signers"])
        assert [d["state"] for d in flush(url)] == ["delivered"]

    [body] = receiver.bodies
    registry = SchemaRegistry.load()
    event = to_event(parse(body), registry=registry, source=SOURCE)
    assert event is not None
    data = validate_event(event, registry)
    assert event.get_type() == EVENT_TYPE
    assert event.get_subject() == envelope_id
    assert data["project_code"] == "ACME-2025-014"
    assert data["document_class"] == "sow"
    assert data["document_name"] == "SOW ACME-2025-014.pdf"
    assert data["value"] == {"amount_minor": 12_500_000, "currency": "EUR"}
    assert data["start_date"] == date(2025, 4, 1)
    assert [s["name"] for s in data["signers"]] == ["Anna Schmidt", "Peter Weber"]


def test_an_unacknowledged_notification_is_retried_until_the_receiver_answers_2xx() -> None:
    receiver = Receiver(answers=[503, 503])
    with sim_notifying(receiver) as (url, api):
        envelope_id = create_envelope(api)
        httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign").raise_for_status()
        [delivery] = flush(url)
    assert delivery["state"] == "delivered"
    assert delivery["statuses"] == [503, 503, 200]
    assert receiver.attempts == 3 and len(receiver.bodies) == 1
    event = to_event(parse(receiver.bodies[0]), registry=SchemaRegistry.load(), source=SOURCE)
    assert event is not None and event.get_subject() == envelope_id


def test_connect_retries_an_unacknowledged_message_soon_then_daily_ten_times_then_gives_it_up() -> None:
    clock, seen = ManualClock(), []
    outbox = ConnectOutbox(ConnectConfig(url="http://hub.test/v1/webhooks/docusign", hmac_key=HMAC_KEY),
                           transport=answering(lambda _: 500, clock, seen), clock=clock)
    try:
        outbox.enqueue({"event": "envelope-completed", "retryCount": 0, "data": {"envelopeId": "env-1"}})
        run_schedule(outbox, clock)
    finally:
        outbox.close()
    times = [moment for moment, _ in seen]
    assert gaps(times) == [0.5] + [DAY_S] * 9  # the first retry soon, then no sooner than a day apart
    assert [json.loads(request.content)["retryCount"] for _, request in seen] == list(range(11))
    [entry] = outbox.deliveries()
    assert (entry["state"], entry["attempts"]) == ("failed", 11)  # for days, not five attempts


def test_the_client_reads_the_envelope_and_downloads_the_document_bytes() -> None:
    with sim_notifying(None) as (url, api):
        envelope_id = create_envelope(api)
        httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign").raise_for_status()
        client = DocuSignClient.create(url, TOKEN, account_id=ACCOUNT)
        try:
            assert client.get_envelope(envelope_id)["status"] == "completed"
            assert client.download_document(envelope_id, "1") == PDF
            with pytest.raises(EnvelopeNotFound):
                client.download_document(envelope_id, "2")
        finally:
            client.close()


def test_a_wrong_token_is_refused_and_signing_twice_conflicts() -> None:
    with sim_notifying(None) as (url, api):
        assert httpx.post(f"{url}{ENVELOPES}", json=envelope_body(),
                          headers={"authorization": "Bearer wrong"}).status_code == 401
        envelope_id = create_envelope(api)
        assert httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign").status_code == 200
        assert httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign").status_code == 409
        assert api.get(f"{ENVELOPES}/nope").status_code == 404
