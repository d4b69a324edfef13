"""The ERP simulator over real HTTP: records, pagination, idempotency, faults and signed webhooks.

Past 400 lines on purpose: the simulator's whole contract (records, paging, idempotency, faults, webhooks) in one
place, as the ERP's documentation is one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hub.ingress.server import serve_in_thread
from hub.registry import SchemaRegistry
from hub.runtime import Runtime
from simulators.erp import ErpSimConfig, ReadinessGate, WebhookConfig, create_app
from simulators.erp.webhooks import Outbox
from simulators.kit.clock import ManualClock
from simulators.kit.faults import FaultPlan
from simulators.kit.outbox import DAY_S, HOUR_S, OutboundRequest
from tests.support.ingress import load, serving, write_sources
from tests.support.schedules import answering, gaps, run_schedule

TOKEN = "test-erp-token"
SOURCE = "erp-sim://acme-psa/prod"


def project_body(code: str = "ENG-ACME-0001", **overrides: Any) -> dict[str, Any]:
    """The consulting scenario's engagement as the ERP API takes it."""
    body = {"code": code, "client_id": "C-ACME", "name": "ACME operating model redesign",
            "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
            "partner": "p.schmidt@example-firm.com", "billing_model": "time_and_materials",
            "value": {"amount_minor": 48_000_000, "currency": "EUR"},
            "start_date": "2027-01-04", "end_date": "2027-06-30"}
    body.update(overrides)
    return body


def seed_client(api: httpx.Client, client_id: str = "C-ACME") -> dict[str, Any]:
    """Create the ACME client."""
    response = api.post("/clients", json={"id": client_id, "name": "ACME GmbH", "country": "DE"})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@contextmanager
def running_sim(config: ErpSimConfig | None = None) -> Iterator[tuple[str, FastAPI]]:
    """The simulator on a free loopback port; yields its base URL and app."""
    app = create_app(config or ErpSimConfig(token=TOKEN))
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture
def sim() -> Iterator[tuple[str, FastAPI]]:
    with running_sim() as running:
        yield running


@pytest.fixture
def api(sim: tuple[str, FastAPI]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sim[0]}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as client:
        seed_client(client)
        yield client


def set_faults(base_url: str, **plan: Any) -> None:
    response = httpx.put(f"{base_url}/_sim/faults", json=plan)
    assert response.status_code == 200, response.text


# -- API ----------------------------------------------------------------------------------------------


def test_every_api_call_needs_the_bearer_token_but_admin_endpoints_do_not(sim: tuple[str, FastAPI]) -> None:
    url, _ = sim
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}):
        response = httpx.post(f"{url}/api/v1/projects", json={"not": "checked yet"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/api/v1/clients").status_code == 401
    assert httpx.get(f"{url}/_sim/state").status_code == 200


def test_a_client_is_created_read_and_patched(api: httpx.Client) -> None:
    assert api.get("/clients/C-ACME").json()["name"] == "ACME GmbH"
    patched = api.patch("/clients/C-ACME", json={"industry": "Manufacturing", "status": "inactive"}).json()
    assert (patched["industry"], patched["status"], patched["version"]) == ("Manufacturing", "inactive", 2)
    assert [c["id"] for c in api.get("/clients").json()["items"]] == ["C-ACME"]
    assert api.post("/clients", json={"id": "C-ACME", "name": "again", "country": "DE"}).status_code == 409
    assert api.get("/clients/C-NOPE").status_code == 404


def test_a_project_is_created_read_and_patched_and_its_version_counts_changes(api: httpx.Client) -> None:
    created = api.post("/projects", json=project_body())
    assert created.status_code == 201, created.text
    project = created.json()
    assert (project["version"], project["status"], project["time_entry_enabled"]) == (1, "planned", False)
    assert project["custom_fields"] == {"workspace_url": None}
    assert created.headers["etag"] == '"1"'
    fetched = api.get("/projects/ENG-ACME-0001")
    assert fetched.json() == project
    patched = api.patch("/projects/ENG-ACME-0001", json={"custom_fields": {"workspace_url": "https://sp/ws/1",
                                                                           "matter_no": "M-7"},
                                                         "time_entry_enabled": True}).json()
    assert patched["custom_fields"] == {"workspace_url": "https://sp/ws/1", "matter_no": "M-7"}
    assert (patched["version"], patched["time_entry_enabled"]) == (2, True)
    assert patched["updated_at"] > project["updated_at"]
    unchanged = api.patch("/projects/ENG-ACME-0001", json={"custom_fields": {"workspace_url": "https://sp/ws/1"}})
    assert unchanged.json()["version"] == 2
    cleared = api.patch("/projects/ENG-ACME-0001", json={"value": None, "end_date": None}).json()
    assert (cleared["value"], cleared["end_date"], cleared["version"]) == (None, None, 3)
    assert api.patch("/projects/ENG-ACME-0001", json={"name": None}).status_code == 422
    assert api.patch("/projects/ENG-ACME-0001", json={"colour": "red"}).status_code == 422
    assert api.get("/projects/ENG-NOPE").status_code == 404


def test_project_codes_are_unique_and_need_a_known_client(api: httpx.Client) -> None:
    assert api.post("/projects", json=project_body()).status_code == 201
    assert api.post("/projects", json=project_body(name="other")).json()["error"] == "conflict"
    refused = api.post("/projects", json=project_body("ENG-X", client_id="C-NOPE"))
    assert (refused.status_code, refused.json()["error"]) == (422, "unknown_client")
    assert api.post("/projects", json=project_body("ENG-Y", region="Mars")).status_code == 422


def test_cursor_pagination_returns_every_project_once_over_more_than_two_pages(api: httpx.Client) -> None:
    codes = [f"ENG-{n:03d}" for n in range(8)]
    for code in codes:
        assert api.post("/projects", json=project_body(code, status="active" if code < "ENG-004" else "planned")
                        ).status_code == 201
    seen, pages, params = [], 0, {"limit": 3}
    while True:
        page = api.get("/projects", params=params).json()
        seen += [p["code"] for p in page["items"]]
        pages += 1
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert (seen, pages) == (codes, 3)
    active = api.get("/projects", params={"status": "active", "limit": 200}).json()
    assert [p["code"] for p in active["items"]] == codes[:4] and active["next_cursor"] is None
    touched = api.patch("/projects/ENG-001", json={"status": "on_hold"}).json()
    recent = api.get("/projects", params={"updated_since": touched["updated_at"]}).json()["items"]
    assert [p["code"] for p in recent] == ["ENG-001"]
    assert api.get("/projects", params={"cursor": "garbage!"}).status_code == 422
    assert api.get("/projects", params={"limit": 0}).status_code == 422


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(api: httpx.Client) -> None:
    key = {"idempotency-key": "create-eng-acme-0001"}
    first = api.post("/projects", json=project_body(), headers=key)
    again = api.post("/projects", json=project_body(), headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other = api.post("/projects", json=project_body(name="Another name"), headers=key)
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert len(api.get("/projects").json()["items"]) == 1


def test_the_writes_carried_out_are_counted_per_record_apart_from_those_that_changed_it_and_replays_are_not(
        sim: tuple[str, FastAPI], api: httpx.Client) -> None:
    key = {"idempotency-key": "activate-1"}
    api.post("/projects", json=project_body())
    for _ in range(2):  # the second is a replay
        api.patch("/projects/ENG-ACME-0001", json={"status": "active"}, headers=key)
    api.patch("/projects/ENG-ACME-0001", json={"status": "active"})  # carried out, changes nothing
    milestone = api.post("/projects/ENG-ACME-0001/milestones", json={
        "name": "M1", "amount": {"amount_minor": 100, "currency": "EUR"}}).json()
    api.patch(f"/projects/ENG-ACME-0001/milestones/{milestone['id']}", json={"name": "M1"})
    for _ in range(2):
        api.post("/projects/ENG-ACME-0001/billing-codes", json={"code": "ENG-ACME-0001-FEES", "active": True})
    counts = httpx.get(f"{sim[0]}/_sim/writes", timeout=10).json()
    records = ["client C-ACME", "project ENG-ACME-0001", f"milestone ENG-ACME-0001/{milestone['id']}",
               "billing_code ENG-ACME-0001/ENG-ACME-0001-FEES"]
    assert [counts["writes"][r] for r in records] == [1, 3, 2, 2]
    assert [counts["changes"][r] for r in records] == [1, 2, 1, 1]
    assert httpx.post(f"{sim[0]}/_sim/reset", timeout=10).json() == {"reset": True}
    assert httpx.get(f"{sim[0]}/_sim/writes", timeout=10).json() == {"writes": {}, "changes": {}}


def test_if_match_refuses_a_stale_version_with_412(api: httpx.Client) -> None:
    api.post("/projects", json=project_body())
    ok = api.patch("/projects/ENG-ACME-0001", json={"status": "active"}, headers={"if-match": '"1"'})
    assert (ok.status_code, ok.json()["version"], ok.headers["etag"]) == (200, 2, '"2"')
    stale = api.patch("/projects/ENG-ACME-0001", json={"status": "on_hold"}, headers={"if-match": "1"})
    assert (stale.status_code, stale.json()["version"]) == (412, 2)
    assert api.get("/projects/ENG-ACME-0001").json()["status"] == "active"


def test_milestones_invoices_and_billing_codes(api: httpx.Client) -> None:
    api.post("/projects", json=project_body())
    milestone = api.post("/projects/ENG-ACME-0001/milestones", json={
        "name": "Diagnostic", "amount": {"amount_minor": 1_000_000, "currency": "EUR"}, "due_date": "2027-02-01"})
    assert milestone.status_code == 201
    ms_id = milestone.json()["id"]
    assert api.patch(f"/projects/ENG-ACME-0001/milestones/{ms_id}", json={"status": "achieved"}
                     ).json()["status"] == "achieved"
    assert [m["id"] for m in api.get("/projects/ENG-ACME-0001/milestones").json()["items"]] == [ms_id]
    invoice = api.post("/invoices", json={"project_code": "ENG-ACME-0001", "period": "2027-02",
                                          "amount": {"amount_minor": 1_000_000, "currency": "EUR"},
                                          "milestone_id": ms_id}).json()
    assert invoice["status"] == "draft"
    final = api.post(f"/invoices/{invoice['number']}/finalize").json()
    assert final["status"] == "final"
    assert api.get("/invoices", params={"project_code": "ENG-ACME-0001", "status": "final"}).json()["items"] == [final]
    assert api.post("/invoices/INV-NOPE/finalize").status_code == 404
    assert api.post("/projects/ENG-ACME-0001/billing-codes", json={"code": "STRAT-01"}).status_code == 201
    assert api.post("/projects/ENG-ACME-0001/billing-codes", json={"code": "STRAT-01"}).status_code == 200
    assert api.get("/projects/ENG-ACME-0001/billing-codes").json()["items"][0]["active"] is True


def test_reset_forgets_everything(sim: tuple[str, FastAPI], api: httpx.Client) -> None:
    api.post("/projects", json=project_body())
    assert httpx.post(f"{sim[0]}/_sim/reset").status_code == 200
    state = httpx.get(f"{sim[0]}/_sim/state").json()
    assert state["projects"] == [] and state["clients"] == []


# -- faults ------------------------------------------------------------------------------------------


def _statuses(api: httpx.Client, count: int) -> list[httpx.Response]:
    return [api.get("/clients/C-ACME") for _ in range(count)]


def test_error_and_throttle_rates_are_seeded_and_near_their_fractions(sim: tuple[str, FastAPI],
                                                                      api: httpx.Client) -> None:
    runs = []
    for _ in range(2):
        set_faults(sim[0], error_rate=0.2, throttle_rate=0.1, retry_after_s=3, seed=42)
        responses = _statuses(api, 300)
        runs.append([r.status_code for r in responses])
        assert all(r.headers["retry-after"] == "3" for r in responses if r.status_code == 429)
    assert runs[0] == runs[1]  # the same seed injects the same faults in the same order
    errors, throttled = runs[0].count(500), runs[0].count(429)
    for seen, rate in ((errors, 0.2), (throttled, 0.1)):  # within four standard deviations of n * rate
        assert abs(seen - 300 * rate) <= 4 * math.sqrt(300 * rate * (1 - rate)), (seen, rate)
    assert errors > 0 and throttled > 0
    assert errors + throttled + runs[0].count(200) == 300


def test_an_outage_answers_503_to_every_call_until_lifted(sim: tuple[str, FastAPI], api: httpx.Client) -> None:
    set_faults(sim[0], outage=True)
    assert {r.status_code for r in _statuses(api, 5)} == {503}
    assert httpx.get(f"{sim[0]}/_sim/state").status_code == 200  # admin stays reachable
    assert httpx.get(f"{sim[0]}/_sim/faults").json()["outage"] is True
    set_faults(sim[0])
    assert {r.status_code for r in _statuses(api, 5)} == {200}


def test_faults_can_be_planned_at_construction() -> None:
    with running_sim(ErpSimConfig(token=TOKEN, faults=FaultPlan(outage=True))) as (url, _):
        assert httpx.get(f"{url}/api/v1/clients", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 503


def test_latency_is_added_to_each_call(sim: tuple[str, FastAPI], api: httpx.Client) -> None:
    set_faults(sim[0], latency_s=0.3)
    started = time.monotonic()
    assert api.get("/clients").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_a_bad_fault_plan_is_refused(sim: tuple[str, FastAPI]) -> None:
    for plan in ({"error_rate": 1.5}, {"error_rate": 0.6, "throttle_rate": 0.6}, {"colour": "red"}):
        assert httpx.put(f"{sim[0]}/_sim/faults", json=plan).status_code == 422


def test_a_ghost_write_is_applied_although_the_client_timed_out(sim: tuple[str, FastAPI], api: httpx.Client) -> None:
    set_faults(sim[0], ghost_rate=1.0)
    key = {"idempotency-key": "ghost-create"}
    with pytest.raises(httpx.ReadTimeout):
        api.post("/projects", json=project_body(), headers=key, timeout=0.5)
    with pytest.raises(httpx.ReadTimeout):
        api.patch("/projects/ENG-ACME-0001", json={"time_entry_enabled": True}, timeout=0.5)
    set_faults(sim[0])
    assert api.get("/projects/ENG-ACME-0001").json()["time_entry_enabled"] is True
    retried = api.post("/projects", json=project_body(), headers=key)
    assert (retried.status_code, retried.headers["idempotent-replayed"]) == (201, "true")


# -- outbound webhooks -------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A stand-in hub ingress that verifies Standard Webhooks signatures and records what it got."""

    secret: str
    answers: list[int] = field(default_factory=list)  # statuses to answer first, then 202
    #: When given, each request waits (up to 30 s) until it is set: a hub that answers only when told.
    hold: threading.Event | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/events")
        async def events(request: Request) -> Response:
            body = await request.body()
            headers = dict(request.headers)
            with self.lock:
                self.attempts.append(headers)
                status = self.answers.pop(0) if self.answers else 202
            if self.hold is not None:
                await asyncio.to_thread(self.hold.wait, 30)
            try:
                event = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError:
                return Response(status_code=401)
            if status == 202:
                with self.lock:
                    self.events.append({"event": event, "content_type": headers["content-type"]})
            extra = {"retry-after": "1"} if status == 429 else {}
            return Response(status_code=status, headers=extra)

        return app


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@contextmanager
def sim_posting_to(receiver: Receiver, **webhook: Any) -> Iterator[tuple[str, httpx.Client]]:
    """A receiver and a simulator posting to it (fast retries); yields the simulator URL and an API client."""
    with serve_in_thread(receiver.app()) as hub_url:
        config = ErpSimConfig(token=TOKEN, webhook=WebhookConfig(
            url=f"{hub_url}/v1/events", secret=receiver.secret, source=SOURCE,
            **{"backoff_s": 0.05, "attempts": 4, **webhook}))
        with running_sim(config) as (url, _), httpx.Client(
                base_url=f"{url}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as api:
            yield url, api


def flush(url: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/_sim/deliveries/flush", params={"timeout_s": 20}, timeout=30)
    assert response.json() == {"empty": True}
    items: list[dict[str, Any]] = httpx.get(f"{url}/_sim/deliveries").json()["items"]
    return items


def test_changes_are_delivered_as_signed_structured_cloudevents_the_registry_encodes() -> None:
    receiver = Receiver(new_secret())
    with sim_posting_to(receiver) as (url, api):
        seed_client(api)
        api.post("/projects", json=project_body())
        api.patch("/projects/ENG-ACME-0001", json={"status": "active"})
        api.patch("/projects/ENG-ACME-0001", json={"status": "active"})  # no change: no event
        log = flush(url)
    assert [d["state"] for d in log] == ["delivered"] * 3
    events = [r["event"] for r in receiver.events]
    assert all(r["content_type"].startswith("application/cloudevents+json") for r in receiver.events)
    assert [e["type"] for e in events] == ["erp.client.upserted.v1", "erp.project.created.v1",
                                           "erp.project.updated.v1"]
    created, updated = events[1], events[2]
    assert (created["id"], updated["id"]) == ("ENG-ACME-0001:v1", "ENG-ACME-0001:v2")
    assert created["source"] == SOURCE and created["specversion"] == "1.0"
    assert (created["subject"], created["partitionkey"]) == ("ENG-ACME-0001", "project:ENG-ACME-0001")
    assert updated["sequence"] == "00000000000000000002" and updated["data"]["status"] == "active"
    assert created["data"]["start_date"] == 20822 and created["data"]["value"]["currency"] == "EUR"
    assert events[0]["subject"] == "C-ACME" and events[0]["partitionkey"] == "client:C-ACME"
    registry = SchemaRegistry.load()
    for event in events:
        decoded = registry.decode(event["type"], registry.encode(event["type"], event["data"]))
        assert decoded["updated_at"].tzinfo is not None
    assert [a["webhook-id"] for a in receiver.attempts] == [e["id"] for e in events]


def test_a_receiver_answering_503_twice_gets_the_event_on_the_third_attempt() -> None:
    receiver = Receiver(new_secret(), answers=[503, 503])
    with sim_posting_to(receiver) as (url, api):
        seed_client(api)
        log = flush(url)
    assert log[0]["last_error"] is None
    assert (log[0]["attempts"], log[0]["statuses"], log[0]["state"]) == (3, [503, 503, 202], "delivered")
    assert len(receiver.events) == 1
    assert len({a["webhook-id"] for a in receiver.attempts}) == 1


def test_a_throttled_delivery_waits_for_retry_after() -> None:
    receiver = Receiver(new_secret(), answers=[429])
    with sim_posting_to(receiver) as (url, api):
        seed_client(api)
        started = time.monotonic()
        log = flush(url)
    assert time.monotonic() - started >= 0.9  # Retry-After: 1, not the 0.05 s backoff
    assert log[0]["statuses"] == [429, 202]


def test_a_permanent_refusal_is_not_retried_and_retries_stop_after_the_attempts() -> None:
    receiver = Receiver(new_secret(), answers=[400, 500, 500, 500, 500])
    with sim_posting_to(receiver) as (url, api):
        seed_client(api)
        seed_client(api, "C-OTHER")
        log = flush(url)
    assert (log[0]["statuses"], log[0]["state"]) == ([400], "failed")
    assert (log[1]["statuses"], log[1]["state"]) == ([500] * 4, "failed")
    assert receiver.events == []


def test_held_webhooks_queue_up_while_the_records_change_and_go_out_in_their_order_once_released() -> None:
    receiver = Receiver(new_secret())
    with sim_posting_to(receiver) as (url, api):
        assert httpx.post(f"{url}/_sim/deliveries/hold", timeout=10).status_code == 204
        seed_client(api)
        assert api.post("/projects", json=project_body()).status_code == 201
        # Nothing goes out while held: the flush gives up, both items still pending, never attempted.
        assert httpx.post(f"{url}/_sim/deliveries/flush", params={"timeout_s": 0.2}, timeout=10).status_code == 504
        held = httpx.get(f"{url}/_sim/deliveries").json()["items"]
        assert [(d["state"], d["attempts"]) for d in held] == [("pending", 0), ("pending", 0)]
        assert receiver.events == []
        assert httpx.post(f"{url}/_sim/deliveries/release", timeout=10).status_code == 204
        log = flush(url)
    assert [d["state"] for d in log] == ["delivered", "delivered"]
    assert [r["event"]["type"] for r in receiver.events] == ["erp.client.upserted.v1", "erp.project.created.v1"]


def test_held_webhooks_are_exported_unsent_as_the_signed_requests_and_are_then_gone_from_the_queue() -> None:
    receiver = Receiver(new_secret())
    with sim_posting_to(receiver) as (url, api):
        assert httpx.post(f"{url}/_sim/deliveries/hold", timeout=10).status_code == 204
        seed_client(api)
        assert api.post("/projects", json=project_body()).status_code == 201
        exported = httpx.post(f"{url}/_sim/deliveries/export", timeout=10).json()["requests"]
        assert httpx.post(f"{url}/_sim/deliveries/export", timeout=10).json() == {"requests": []}
        assert httpx.post(f"{url}/_sim/deliveries/release", timeout=10).status_code == 204
        log = flush(url)
    assert receiver.events == [] and receiver.attempts == []  # taken out: the simulator sends nothing more
    assert [(d["state"], d["attempts"]) for d in log] == [("exported", 0), ("exported", 0)]
    requests = [OutboundRequest.from_json(r) for r in exported]
    assert all(r.method == "POST" and r.url.endswith("/v1/events") for r in requests)
    events = [Webhook(receiver.secret).verify(r.body, r.headers) for r in requests]  # signed as sent
    assert [e["type"] for e in events] == ["erp.client.upserted.v1", "erp.project.created.v1"]
    assert [r.headers["webhook-id"] for r in requests] == [e["id"] for e in events]


def test_webhook_sending_does_not_block_the_api() -> None:
    receiver = Receiver(new_secret(), hold=threading.Event())
    assert receiver.hold is not None
    with sim_posting_to(receiver) as (url, api):
        try:
            seed_client(api)
            assert api.post("/projects", json=project_body()).status_code == 201
            # Both answered while the hub has not answered the first delivery yet (it answers when told).
            assert receiver.events == []
        finally:
            receiver.hold.set()
        flush(url)
    assert len(receiver.events) == 2


def test_an_unreachable_hub_is_retried_as_a_network_error() -> None:
    config = ErpSimConfig(token=TOKEN, webhook=WebhookConfig(url="http://127.0.0.1:9/v1/events",
                                                             secret=new_secret(), attempts=2, backoff_s=0.01))
    with running_sim(config) as (url, _), httpx.Client(
            base_url=f"{url}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as api:
        seed_client(api)
        log = flush(url)
    assert (log[0]["attempts"], log[0]["state"], log[0]["last_status"]) == (2, "failed", None)
    assert "ConnectError" in log[0]["last_error"]


def test_an_unacknowledged_event_is_retried_with_backoff_up_to_an_hour_apart_for_a_day_then_given_up() -> None:
    clock, seen = ManualClock(), []
    outbox = Outbox(WebhookConfig(url="http://hub.test/v1/events", secret=new_secret()),
                    transport=answering(lambda _: 503, clock, seen), clock=clock)
    try:
        outbox.enqueue({"id": "client:C-ACME:v1", "type": "erp.client.upserted.v1", "subject": "C-ACME"})
        run_schedule(outbox, clock)
    finally:
        outbox.close()
    times = [moment for moment, _ in seen]
    waits = gaps(times)
    assert len(times) > 5  # not five attempts and done: the ERP keeps trying
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and max(waits) == HOUR_S and waits[-1] == HOUR_S
    assert times[-1] - times[0] <= DAY_S < times[-1] + HOUR_S - times[0]  # the next one would be past the day
    [entry] = outbox.deliveries()
    assert (entry["state"], entry["attempts"], set(entry["statuses"])) == ("failed", len(times), {503})
    assert {request.headers["webhook-id"] for _, request in seen} == {"client:C-ACME:v1"}


def test_an_event_the_hub_refuses_does_not_hold_up_the_next_one() -> None:
    clock, seen = ManualClock(), []

    def refuse_the_first(request: httpx.Request) -> int:
        return 503 if request.headers["webhook-id"] == "client:C-ACME:v1" else 202

    outbox = Outbox(WebhookConfig(url="http://hub.test/v1/events", secret=new_secret()),
                    transport=answering(refuse_the_first, clock, seen), clock=clock)
    try:
        outbox.enqueue({"id": "client:C-ACME:v1", "type": "erp.client.upserted.v1", "subject": "C-ACME"})
        outbox.enqueue({"id": "client:C-OTHER:v1", "type": "erp.client.upserted.v1", "subject": "C-OTHER"})
        assert outbox.idle(timeout_s=10)
        delivered_at = {request.headers["webhook-id"]: moment for moment, request in seen}
        assert [entry["state"] for entry in outbox.deliveries()] == ["pending", "delivered"]
    finally:
        outbox.close()
    assert delivered_at["client:C-OTHER:v1"] == 0.0  # before the first one's retry, due at 0.5 s


@pytest.mark.integration
def test_the_real_ingress_accepts_what_the_simulator_posts(app: Runtime, tmp_path: Path) -> None:
    path, creds = write_sources(tmp_path)
    with serving(app, load(path)) as hub_url:
        config = ErpSimConfig(token=TOKEN, webhook=WebhookConfig(
            url=f"{hub_url}/v1/events", secret=creds.webhook_secrets[1], source=SOURCE, backoff_s=0.05))
        with running_sim(config) as (url, _), httpx.Client(
                base_url=f"{url}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as api:
            seed_client(api)
            api.post("/projects", json=project_body())
            api.patch("/projects/ENG-ACME-0001", json={"status": "active"})
            log = flush(url)
    assert [(d["type"], d["statuses"]) for d in log] == [
        ("erp.client.upserted.v1", [202]), ("erp.project.created.v1", [202]), ("erp.project.updated.v1", [202])]
    assert json.dumps(log).count("failed") == 0


# -- invoices: drafted events, the readiness gate, time entries ---------------------------------------


def add_milestone(api: httpx.Client, code: str = "ENG-ACME-0001", name: str = "Diagnostic") -> str:
    response = api.post(f"/projects/{code}/milestones", json={
        "name": name, "amount": {"amount_minor": 1_000_000, "currency": "EUR"}, "due_date": "2027-03-15"})
    assert response.status_code == 201, response.text
    milestone_id: str = response.json()["id"]
    return milestone_id


def draft_invoice(api: httpx.Client, number: str = "INV-2027-0001", **overrides: Any) -> dict[str, Any]:
    body = {"number": number, "project_code": "ENG-ACME-0001", "period": "2027-03",
            "amount": {"amount_minor": 1_000_000, "currency": "EUR"}, **overrides}
    response = api.post("/invoices", json=body)
    assert response.status_code == 201, response.text
    invoice: dict[str, Any] = response.json()
    return invoice


def days(value: date) -> int:
    return (value - date(1970, 1, 1)).days


def test_a_drafted_invoice_is_posted_as_a_signed_erp_invoice_drafted_event() -> None:
    receiver = Receiver(new_secret())
    with sim_posting_to(receiver) as (url, api):
        seed_client(api)
        api.post("/projects", json=project_body())
        ms_id = add_milestone(api)
        api.patch(f"/projects/ENG-ACME-0001/milestones/{ms_id}", json={
            "name": "Diagnostic report", "deliverables": ["Site survey", "Diagnostic report v1"]})
        with_milestone = draft_invoice(api, milestone_id=ms_id, bills=[
            {"document_class": "change_record", "reference": "CR-12"},
            {"document_class": "deliverable", "reference": "Site survey"}])  # named twice: stated once
        without = draft_invoice(api, "INV-2028-0002", period="2028-02")
        unknown = api.post("/invoices", json={"project_code": "ENG-ACME-0001", "period": "2027-03",
                                              "amount": {"amount_minor": 1, "currency": "EUR"},
                                              "milestone_id": "MS-NOPE"})
        refused = api.post("/invoices", json={"project_code": "ENG-ACME-0001", "period": "2027-03",
                                              "amount": {"amount_minor": 1, "currency": "EUR"},
                                              "bills": [{"document_class": "invoice", "reference": "X"}]})
        log = flush(url)
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_milestone")
    assert [d["state"] for d in log] == ["delivered"] * 4
    events = [r["event"] for r in receiver.events if r["event"]["type"] == "erp.invoice.drafted.v1"]
    assert len(events) == 2
    first, second = events
    assert (first["id"], first["subject"], first["partitionkey"]) == (
        "invoice:INV-2027-0001:drafted", "INV-2027-0001", "project:ENG-ACME-0001")
    assert first["source"] == SOURCE and first["time"] == with_milestone["drafted_at"]
    assert first["data"] == {
        "invoice_number": "INV-2027-0001", "project_code": "ENG-ACME-0001",
        "amount": {"amount_minor": 1_000_000, "currency": "EUR"},
        "period_start": days(date(2027, 3, 1)), "period_end": days(date(2027, 3, 31)),
        "milestone": "Diagnostic report",
        "bills": [{"document_class": "deliverable", "reference": "Site survey"},  # the milestone's, then the draft's
                  {"document_class": "deliverable", "reference": "Diagnostic report v1"},
                  {"document_class": "change_record", "reference": "CR-12"}],
        "drafted_at": int(datetime.fromisoformat(with_milestone["drafted_at"]).timestamp() * 1000),
    }
    assert second["subject"] == without["number"] and second["data"]["milestone"] is None
    assert second["data"]["bills"] == []
    assert refused.status_code == 422 and "document_class" in refused.text
    assert (second["data"]["period_start"], second["data"]["period_end"]) == (
        days(date(2028, 2, 1)), days(date(2028, 2, 29)))
    registry = SchemaRegistry.load()
    for event in events:
        decoded = registry.decode(event["type"], registry.encode(event["type"], event["data"]))
        assert decoded["period_end"].day in (29, 31) and decoded["drafted_at"].tzinfo is not None


@dataclass
class GateStub:
    """A stand-in for the hub's invoice-readiness endpoint: scripted answers, every call recorded."""

    #: ``(status, body)``: a JSON-able body, or bytes sent as they are.
    answer: tuple[int, Any] = (200, {"status": "ready", "hold_reasons": []})
    #: When given, each call waits (up to 30 s) until it is set: a gate that answers only when told.
    hold: threading.Event | None = None
    calls: list[dict[str, str | None]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/invoices/{number}/readiness")
        async def readiness(number: str, request: Request) -> Response:
            self.calls.append({"number": number, "authorization": request.headers.get("authorization")})
            if self.hold is not None:
                await asyncio.to_thread(self.hold.wait, 30)
            status, body = self.answer
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            return Response(content, status_code=status, media_type="application/json")

        return app


@contextmanager
def gated_sim(gate_url: str, *, timeout_s: float = 5.0) -> Iterator[tuple[str, httpx.Client]]:
    """A simulator asking ``gate_url`` before finalising, with ACME's engagement and a draft invoice."""
    gate = ReadinessGate(url_template=f"{gate_url}/v1/invoices/{{number}}/readiness", api_key="gate-key",
                         timeout_s=timeout_s)
    with running_sim(ErpSimConfig(token=TOKEN, readiness=gate)) as (url, _), httpx.Client(
            base_url=f"{url}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) as api:
        seed_client(api)
        assert api.post("/projects", json=project_body()).status_code == 201
        draft_invoice(api)
        yield url, api


def readiness_checks(url: str) -> list[tuple[str, str]]:
    return [(c["number"], c["outcome"]) for c in httpx.get(f"{url}/_sim/state").json()["readiness_checks"]]


def test_a_held_invoice_is_refused_and_a_ready_one_finalised_and_a_final_one_not_asked_again() -> None:
    stub = GateStub()
    reasons = [{"code": "deliverable_not_approved", "artefact": "doc-8f14e45f", "detail": "awaiting sign-off"}]
    with serve_in_thread(stub.app()) as gate_url, gated_sim(gate_url) as (url, api):
        stub.answer = (200, {"status": "held", "hold_reasons": reasons})
        held = api.post("/invoices/INV-2027-0001/finalize")
        assert (held.status_code, held.json()["error"], held.json()["hold_reasons"]) == (409, "invoice_held", reasons)
        assert held.json()["message"]
        assert api.get("/invoices/INV-2027-0001").json()["status"] == "draft"
        stub.answer = (200, {"status": "ready", "hold_reasons": []})
        final = api.post("/invoices/INV-2027-0001/finalize")
        assert (final.status_code, final.json()["status"]) == (200, "final")
        assert api.get("/invoices/INV-2027-0001").json() == final.json()
        stub.answer = (200, {"status": "held", "hold_reasons": reasons})
        again = api.post("/invoices/INV-2027-0001/finalize")  # already final: a no-op that asks nothing
        assert (again.status_code, again.json()) == (200, final.json())
        checks = readiness_checks(url)
    assert stub.calls == [{"number": "INV-2027-0001", "authorization": "Bearer gate-key"}] * 2
    assert checks == [("INV-2027-0001", "held"), ("INV-2027-0001", "ready")]


@pytest.mark.parametrize("answer", [(500, {"status": "ready"}), (404, {"error": "not_found"}), (200, b"not json"),
                                    (200, {"status": "maybe"}), (200, ["ready"]),
                                    (200, {"status": "held", "hold_reasons": "some"})])
def test_a_gate_answering_anything_else_keeps_the_invoice_draft(answer: tuple[int, Any]) -> None:
    stub = GateStub(answer=answer)
    with serve_in_thread(stub.app()) as gate_url, gated_sim(gate_url) as (url, api):
        refused = api.post("/invoices/INV-2027-0001/finalize")
        assert (refused.status_code, refused.json()["error"]) == (503, "readiness_unavailable")
        assert api.get("/invoices/INV-2027-0001").json()["status"] == "draft"
        assert readiness_checks(url) == [("INV-2027-0001", "unavailable")]
    assert len(stub.calls) == 1


def test_a_gate_that_is_down_or_too_slow_keeps_the_invoice_draft() -> None:
    with gated_sim("http://127.0.0.1:9") as (url, api):  # nobody listens on the discard port
        refused = api.post("/invoices/INV-2027-0001/finalize")
        assert (refused.status_code, refused.json()["error"]) == (503, "readiness_unavailable")
        assert "ConnectError" in refused.json()["message"]
        assert api.get("/invoices/INV-2027-0001").json()["status"] == "draft"
        assert readiness_checks(url) == [("INV-2027-0001", "unavailable")]
    stub = GateStub(hold=threading.Event())
    assert stub.hold is not None
    with serve_in_thread(stub.app()) as gate_url, gated_sim(gate_url, timeout_s=0.2) as (url, api):
        try:
            refused = api.post("/invoices/INV-2027-0001/finalize")
            # Answered while the gate has not answered yet (it answers when told): the simulator's timeout.
            assert (refused.status_code, refused.json()["error"]) == (503, "readiness_unavailable")
            assert api.get("/invoices/INV-2027-0001").json()["status"] == "draft"
        finally:
            stub.hold.set()
    assert len(stub.calls) == 1


def test_an_invoice_is_read_by_number(api: httpx.Client) -> None:
    api.post("/projects", json=project_body())
    invoice = draft_invoice(api)
    assert api.get("/invoices/INV-2027-0001").json() == invoice
    assert (invoice["status"], invoice["drafted_at"]) == ("draft", invoice["updated_at"])
    missing = api.get("/invoices/INV-NOPE")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    other = api.post("/projects", json=project_body("ENG-OTHER")).json()["code"]
    foreign = api.post("/invoices", json={"project_code": "ENG-ACME-0001", "period": "2027-03",
                                          "amount": {"amount_minor": 1, "currency": "EUR"},
                                          "milestone_id": add_milestone(api, other)})
    assert (foreign.status_code, foreign.json()["error"]) == (422, "unknown_milestone")


def test_time_is_refused_until_time_entry_is_enabled_and_the_billing_code_active(sim: tuple[str, FastAPI],
                                                                                 api: httpx.Client) -> None:
    api.post("/projects", json=project_body())
    entry = {"date": "2027-01-05", "hours": 7.5, "billing_code": "STRAT-01", "person": "a.jones@example-firm.com"}
    path = "/projects/ENG-ACME-0001/time-entries"
    disabled = api.post(path, json=entry)
    assert (disabled.status_code, disabled.json()["error"]) == (409, "time_entry_disabled")
    api.patch("/projects/ENG-ACME-0001", json={"time_entry_enabled": True})
    missing = api.post(path, json=entry)
    assert (missing.status_code, missing.json()["error"]) == (409, "billing_code_inactive")
    api.post("/projects/ENG-ACME-0001/billing-codes", json={"code": "STRAT-01", "active": False})
    inactive = api.post(path, json=entry)
    assert (inactive.status_code, inactive.json()["error"]) == (409, "billing_code_inactive")
    api.post("/projects/ENG-ACME-0001/billing-codes", json={"code": "STRAT-01"})
    booked = api.post(path, json=entry)
    assert booked.status_code == 201, booked.text
    assert booked.json()["id"] and {k: booked.json()[k] for k in entry} == entry
    assert api.get(path).json()["items"] == [booked.json()]
    assert httpx.get(f"{sim[0]}/_sim/state").json()["time_entries"] == {"ENG-ACME-0001": [booked.json()]}
    assert api.post(path, json={**entry, "hours": 0}).status_code == 422
    assert api.post("/projects/ENG-NOPE/time-entries", json=entry).status_code == 404
