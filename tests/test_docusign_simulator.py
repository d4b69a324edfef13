"""The DocuSign simulator over real HTTP: envelopes as DocuSign answers them (drafts, ``include=``, documents,
listing, its error body), signing, signed Connect notifications with retries, and the DocuSign client
downloading the signed document."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
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
from hub.runtime import Runtime
from simulators.docusign import ConnectConfig, DocuSignSimConfig, create_app
from simulators.docusign.connect import ConnectOutbox
from simulators.kit.clock import ManualClock
from simulators.kit.outbox import DAY_S
from tests.support.ingress import load, serving, write_sources
from tests.support.rabbit import queue_depth
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
def sim_notifying(receiver: Receiver | None, events: frozenset[str] = frozenset({"envelope-completed"})
                  ) -> Iterator[tuple[str, httpx.Client]]:
    """The simulator (posting Connect's ``events`` to ``receiver`` when given); yields its URL and an API
    client."""
    if receiver is None:
        with serve_in_thread(create_app(DocuSignSimConfig(token=TOKEN))) as url, httpx.Client(
                base_url=url, headers={"authorization": f"Bearer {TOKEN}"}) as api:
            yield url, api
        return
    with serve_in_thread(receiver.app()) as hub_url:
        config = DocuSignSimConfig(token=TOKEN, connect=ConnectConfig(
            url=f"{hub_url}/v1/webhooks/docusign", hmac_key=HMAC_KEY, attempts=4, backoff_s=0.05,
            retry_interval_s=0.05, events=events))
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
        envelope = api.get(f"{ENVELOPES}/{envelope_id}", params={"include": "recipients"}).json()
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
            assert "envelopeDocuments" not in client.get_envelope(envelope_id)  # DocuSign's plain GET
            envelope = client.get_envelope(envelope_id, include=("documents",))
            assert envelope["status"] == "completed"
            assert [d["documentId"] for d in envelope["envelopeDocuments"]] == ["1", "certificate"]
            assert client.download_document(envelope_id, "1") == PDF
            with pytest.raises(EnvelopeNotFound):
                client.get_envelope("no-such-envelope")  # DocuSign's 400 ENVELOPE_DOES_NOT_EXIST
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
        unknown = api.get(f"{ENVELOPES}/nope")
        assert unknown.status_code == 400  # DocuSign's answer for an unknown envelope, not a 404
        assert unknown.json()["errorCode"] == "ENVELOPE_DOES_NOT_EXIST"


def test_an_envelope_created_without_status_is_a_draft_and_is_sent_only_when_asked() -> None:
    with sim_notifying(None) as (_, api):
        body = envelope_body()
        del body["status"]
        created = api.post(ENVELOPES, json=body)
        assert created.status_code == 201 and created.json()["status"] == "created"
        draft_id = created.json()["envelopeId"]
        draft = api.get(f"{ENVELOPES}/{draft_id}").json()
        assert draft["status"] == "created" and "sentDateTime" not in draft
        assert [d["type"] for d in api.get(f"{ENVELOPES}/{draft_id}/documents").json()["envelopeDocuments"]] == [
            "content"]  # a draft has no certificate of completion yet
        assert api.put(f"{ENVELOPES}/{draft_id}", json={"status": "sent"}).status_code == 200
        sent = api.get(f"{ENVELOPES}/{draft_id}").json()
        assert sent["status"] == "sent" and sent["sentDateTime"]
        refused = api.post(ENVELOPES, json=envelope_body(status="completed"))
        assert refused.status_code == 400 and refused.json()["errorCode"] == "INVALID_REQUEST_PARAMETER"


def test_get_envelope_carries_recipients_custom_fields_and_documents_only_when_included() -> None:
    with sim_notifying(None) as (_, api):
        envelope_id = create_envelope(api)
        plain = api.get(f"{ENVELOPES}/{envelope_id}").json()
        assert plain["status"] == "sent" and plain["envelopeId"] == envelope_id
        assert not {"recipients", "customFields", "envelopeDocuments"} & set(plain)
        assert plain["documentsUri"] == f"/envelopes/{envelope_id}/documents"
        only = api.get(f"{ENVELOPES}/{envelope_id}", params={"include": "documents"}).json()
        assert "envelopeDocuments" in only and not {"recipients", "customFields"} & set(only)
        full = api.get(f"{ENVELOPES}/{envelope_id}", params={"include": "recipients,custom_fields,documents"}).json()
        assert [s["email"] for s in full["recipients"]["signers"]] == ["a.schmidt@acme.example", "p.weber@firm.example"]
        fields = {f["name"]: f["value"] for f in full["customFields"]["textCustomFields"]}
        assert fields["project_code"] == "ACME-2025-014" and fields["document_class"] == "SOW"
        assert full["customFields"]["listCustomFields"] == []
        assert [(d["documentId"], d["type"]) for d in full["envelopeDocuments"]] == [
            ("1", "content"), ("certificate", "summary")]
        assert all("documentClass" not in d for d in full["envelopeDocuments"])  # not a DocuSign field


def test_documents_recipients_and_custom_fields_have_routes_of_their_own() -> None:
    with sim_notifying(None) as (url, api):
        envelope_id = create_envelope(api)
        listed = api.get(f"{ENVELOPES}/{envelope_id}/documents").json()
        assert listed["envelopeId"] == envelope_id
        assert [d["uri"] for d in listed["envelopeDocuments"]] == [
            f"/envelopes/{envelope_id}/documents/1", f"/envelopes/{envelope_id}/documents/certificate"]
        document = api.get(f"{ENVELOPES}/{envelope_id}/documents/1")
        assert document.headers["content-type"] == "application/pdf" and document.content == PDF
        combined = api.get(f"{ENVELOPES}/{envelope_id}/documents/combined")
        assert combined.headers["content-type"] == "application/pdf" and combined.content.startswith(PDF)
        assert api.get(f"{ENVELOPES}/{envelope_id}/documents/certificate").content.startswith(b"%PDF")
        missing = api.get(f"{ENVELOPES}/{envelope_id}/documents/7")
        assert (missing.status_code, missing.json()["errorCode"]) == (400, "DOCUMENT_DOES_NOT_EXIST")
        recipients = api.get(f"{ENVELOPES}/{envelope_id}/recipients").json()
        assert [s["status"] for s in recipients["signers"]] == ["sent", "sent"] and recipients["recipientCount"] == "2"
        fields = api.get(f"{ENVELOPES}/{envelope_id}/custom_fields").json()
        assert {f["name"] for f in fields["textCustomFields"]} >= {"project_code", "contract_value", "document_class"}
        httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign").raise_for_status()
        signed = api.get(f"{ENVELOPES}/{envelope_id}/recipients").json()
        assert all(s["status"] == "completed" and s["signedDateTime"] for s in signed["signers"])


def test_the_listing_needs_a_from_date_unless_envelope_ids_are_given() -> None:
    with sim_notifying(None) as (_, api):
        first, second = create_envelope(api), create_envelope(api)
        refused = api.get(ENVELOPES)
        assert refused.status_code == 400
        assert refused.json() == {"errorCode": "INVALID_REQUEST_PARAMETER", "message": (
            "The request contained at least one invalid parameter. Query parameter 'from_date' must be set to a "
            "valid DateTime, or 'envelope_ids' or 'transaction_ids' must be specified.")}
        assert api.get(ENVELOPES, params={"from_date": "yesterday"}).status_code == 400
        listed = api.get(ENVELOPES, params={"from_date": "2020-01-01"}).json()
        assert [e["envelopeId"] for e in listed["envelopes"]] == [first, second]
        assert (listed["resultSetSize"], listed["totalSetSize"], listed["startPosition"]) == ("2", "2", "0")
        assert "recipients" not in listed["envelopes"][0]
        assert api.get(ENVELOPES, params={"from_date": "2999-01-01"}).json()["envelopes"] == []
        by_id = api.get(ENVELOPES, params={"envelope_ids": second, "include": "recipients"}).json()
        assert [e["envelopeId"] for e in by_id["envelopes"]] == [second] and by_id["envelopes"][0]["recipients"]
        assert api.get(ENVELOPES, params={"from_date": "2020-01-01", "status": "completed"}).json()["envelopes"] == []


def test_every_error_is_docusigns_error_body() -> None:
    with sim_notifying(None) as (url, api):
        for response in (api.get(f"{ENVELOPES}/nope"), api.get(f"{ENVELOPES}/nope/documents"),
                         api.get(f"{ENVELOPES}/nope/recipients"), api.get(f"{ENVELOPES}/nope/custom_fields"),
                         api.get(f"{ENVELOPES}/nope/documents/1")):
            assert response.status_code == 400
            assert response.json() == {
                "errorCode": "ENVELOPE_DOES_NOT_EXIST",
                "message": "The envelope specified either does not exist or you have no rights to it."}
        unknown_route = api.get(f"/restapi/v2.1/accounts/{ACCOUNT}/nothing-here")
        assert unknown_route.status_code == 404 and set(unknown_route.json()) == {"errorCode", "message"}
        malformed = api.post(ENVELOPES, json={"documents": []})
        assert malformed.status_code == 400 and malformed.json()["errorCode"] == "INVALID_REQUEST_BODY"
        assert "detail" not in malformed.json()
        bad_count = api.get(ENVELOPES, params={"from_date": "2020-01-01", "count": "many"})
        assert bad_count.status_code == 400 and bad_count.json()["errorCode"] == "INVALID_REQUEST_PARAMETER"
        no_token = httpx.get(f"{url}{ENVELOPES}/nope")  # refused before the envelope is looked for
        assert no_token.status_code == 401 and "errorCode" in no_token.json()


def test_injected_faults_answer_as_docusign_does_with_retry_after_on_outage_and_throttling() -> None:
    with sim_notifying(None) as (url, api):
        expected = {"outage": (503, "SERVICE_UNAVAILABLE", "3"), "error": (500, "UNSPECIFIED_ERROR", None),
                    "throttle": (429, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED", "3")}
        for kind, plan in (("outage", {"outage": True}), ("error", {"error_rate": 1.0}),
                           ("throttle", {"throttle_rate": 1.0})):
            httpx.put(f"{url}/_sim/faults", json={**plan, "retry_after_s": 3}).raise_for_status()
            response = api.get(f"{ENVELOPES}/nope")
            status, code, retry_after = expected[kind]
            assert (response.status_code, response.headers.get("retry-after")) == (status, retry_after), kind
            assert response.headers["x-sim-fault"] == kind
            body = response.json()
            assert set(body) == {"errorCode", "message"} and body["errorCode"] == code and body["message"]
        httpx.put(f"{url}/_sim/faults", json={}).raise_for_status()
        assert api.get(f"{ENVELOPES}/nope").json()["errorCode"] == "ENVELOPE_DOES_NOT_EXIST"  # faults lifted


def test_connect_sends_sent_delivered_and_completed_in_json_sim_shape_signed() -> None:
    receiver = Receiver()
    everything = frozenset({"envelope-sent", "envelope-delivered", "envelope-completed"})
    with sim_notifying(receiver, events=everything) as (url, api):
        envelope_id = create_envelope(api)
        body = envelope_body()
        del body["status"]
        draft = api.post(ENVELOPES, json=body).json()["envelopeId"]  # a draft: nothing is sent
        httpx.post(f"{url}/_sim/envelopes/{envelope_id}/deliver").raise_for_status()
        httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign").raise_for_status()
        assert [(d["event"], d["state"]) for d in flush(url)] == [
            ("envelope-sent", "delivered"), ("envelope-delivered", "delivered"), ("envelope-completed", "delivered")]
        api.put(f"{ENVELOPES}/{draft}", json={"status": "sent"}).raise_for_status()
        assert [d["event"] for d in flush(url)][-1] == "envelope-sent"
    messages = [json.loads(body) for body in receiver.bodies]  # each one passed the receiver's HMAC check
    assert [(m["event"], m["data"]["envelopeId"]) for m in messages] == [
        ("envelope-sent", envelope_id), ("envelope-delivered", envelope_id), ("envelope-completed", envelope_id),
        ("envelope-sent", draft)]
    for message in messages:
        assert set(message) == {"event", "apiVersion", "uri", "retryCount", "configurationId", "generatedDateTime",
                                "data"}
        assert set(message["data"]) == {"accountId", "userId", "envelopeId", "envelopeSummary"}
        assert message["uri"] == f"/restapi/v2.1/accounts/{ACCOUNT}/envelopes/{message['data']['envelopeId']}"
    sent, delivered, completed, _ = (m["data"]["envelopeSummary"] for m in messages)
    assert (sent["status"], delivered["status"], completed["status"]) == ("sent", "delivered", "completed")
    assert sent["sentDateTime"] and delivered["deliveredDateTime"] and "completedDateTime" not in delivered
    assert all(s["status"] == "delivered" for s in delivered["recipients"]["signers"])


@pytest.mark.integration
def test_the_hub_ingress_takes_in_sent_delivered_and_completed_and_routes_each_to_its_subscribers(
    app: Runtime, tmp_path: Path
) -> None:
    path, creds = write_sources(tmp_path)
    with serving(app, load(path)) as ingress_url:
        config = DocuSignSimConfig(token=TOKEN, connect=ConnectConfig(
            url=f"{ingress_url}/v1/webhooks/docusign/docusign", hmac_key=creds.docusign_key, attempts=2,
            backoff_s=0.05, retry_interval_s=0.05))
        with serve_in_thread(create_app(config)) as url, httpx.Client(
                base_url=url, headers={"authorization": f"Bearer {TOKEN}"}) as api:
            envelope_id = create_envelope(api)
            httpx.post(f"{url}/_sim/envelopes/{envelope_id}/deliver").raise_for_status()
            httpx.post(f"{url}/_sim/envelopes/{envelope_id}/sign").raise_for_status()
            deliveries = flush(url)
    assert [(d["event"], d["statuses"]) for d in deliveries] == [
        ("envelope-sent", [202]), ("envelope-delivered", [202]), ("envelope-completed", [202])]
    # Each one is an event of its own on the fan-out's queue; only the completion reaches the document workflow.
    assert queue_depth(app.broker.get_actor("fanout").queue_name) == 3
    assert queue_depth(app.broker.get_actor("document_workflow").queue_name) == 1
