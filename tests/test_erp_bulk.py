"""The ERP simulator's bulk paths over real HTTP: keyset pages in code order, paged clients, the seed route, and
the client's generators following the cursors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from connectors.erp.client import ErpClient
from connectors.settings import ErpSettings
from hub.ingress.server import serve_in_thread
from simulators.erp import ErpSimConfig, create_app
from simulators.erp.webhooks import WebhookConfig

TOKEN = "test-erp-token"


def client_record(client_id: str) -> dict[str, Any]:
    """A client as the API takes it."""
    return {"id": client_id, "name": f"Client {client_id}", "country": "DE"}


def project_record(code: str, client_id: str = "C-0001", **overrides: Any) -> dict[str, Any]:
    """A project as the API takes it."""
    body = {"code": code, "client_id": client_id, "name": f"Project {code}", "engagement_type": "consulting",
            "practice": "Strategy", "region": "EU", "country": "DE", "partner": "p@example-firm.com",
            "billing_model": "fixed_fee"}
    return {**body, **overrides}


@pytest.fixture
def sim() -> Iterator[tuple[str, FastAPI]]:
    # A webhook target nobody listens on: a seed must not post anything there.
    config = ErpSimConfig(token=TOKEN, webhook=WebhookConfig(url="http://127.0.0.1:9/v1/events",
                                                             secret="whsec_" + "A" * 32))
    app = create_app(config)
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture
def api(sim: tuple[str, FastAPI]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sim[0]}/api/v1", headers={"authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
def erp(sim: tuple[str, FastAPI]) -> Iterator[ErpClient]:
    client = ErpClient.from_settings(ErpSettings(url=sim[0], token=SecretStr(TOKEN)))
    yield client
    client.close()


def seed(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/_sim/seed", json=body, timeout=60)


def test_a_seed_stores_clients_and_projects_at_once_without_sending_webhooks(sim: tuple[str, FastAPI],
                                                                             api: httpx.Client) -> None:
    url, _ = sim
    answer = seed(url, clients=[client_record("C-0001"), client_record("C-0002")],
                  projects=[project_record(f"P-{n:03d}", "C-0002" if n % 2 else "C-0001") for n in range(30)])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"seeded": {"clients": 2, "projects": 30}}
    project = api.get("/projects/P-007").json()
    assert (project["client_id"], project["version"]) == ("C-0002", 1)
    assert project["custom_fields"] == {"workspace_url": None}
    assert httpx.get(f"{url}/_sim/deliveries").json() == {"items": []}
    assert httpx.get(f"{url}/_sim/writes").json() == {"writes": {}, "changes": {}}


def test_projects_are_listed_in_code_order_page_by_page_each_once(sim: tuple[str, FastAPI], api: httpx.Client) -> None:
    codes = [f"P-{n:04d}" for n in (7, 3, 11, 1, 5, 9, 2, 8, 4, 10, 6)]
    assert seed(sim[0], clients=[client_record("C-0001")], projects=[project_record(c) for c in codes]).is_success
    # One more made through the API after the seed: the index knows it too.
    assert api.post("/projects", json=project_record("P-0000")).status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"order": "code", "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = api.get("/projects", params=params).json()
        seen += [p["code"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted([*codes, "P-0000"]) and pages == 3


def test_the_default_order_follows_updates_and_the_modified_since_listing_still_works(api: httpx.Client,
                                                                                     sim: tuple[str, FastAPI]) -> None:
    assert seed(sim[0], clients=[client_record("C-0001")],
                projects=[project_record(f"P-{n}", updated_at=f"2027-01-0{n}T00:00:00.000Z") for n in range(1, 6)]
                ).is_success
    api.patch("/projects/P-2", json={"name": "renamed"})
    everything = [p["code"] for p in api.get("/projects", params={"limit": 2}).json()["items"]]
    assert everything == ["P-1", "P-3"]
    listed: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "updated_since": "2027-01-03T00:00:00Z", **(
            {"cursor": cursor} if cursor else {})}
        page = api.get("/projects", params=params).json()
        listed += [p["code"] for p in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert listed == ["P-3", "P-4", "P-5", "P-2"]  # P-2 changed last, stamped after the newest seeded record
    recent = api.get("/projects", params={"order": "code", "limit": 10, "updated_since": "2027-01-04T00:00:00Z"})
    by_code = [p["code"] for p in recent.json()["items"]]
    assert by_code == ["P-2", "P-4", "P-5"]


def test_a_cursor_of_one_order_is_refused_in_the_other_and_a_page_is_at_most_1000(api: httpx.Client,
                                                                                  sim: tuple[str, FastAPI]) -> None:
    assert seed(sim[0], clients=[client_record("C-0001")], projects=[project_record(f"P-{n}") for n in range(3)]
                ).is_success
    by_code = api.get("/projects", params={"order": "code", "limit": 1}).json()["next_cursor"]
    by_update = api.get("/projects", params={"limit": 1}).json()["next_cursor"]
    refused = api.get("/projects", params={"cursor": by_code})
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_cursor")
    assert api.get("/projects", params={"order": "code", "cursor": by_update}).status_code == 422
    assert api.get("/projects", params={"limit": 1000}).status_code == 200
    assert api.get("/projects", params={"limit": 1001}).json()["error"] == "validation_failed"
    assert api.get("/projects", params={"order": "name"}).status_code == 422


def test_clients_are_paged_in_id_order(api: httpx.Client, sim: tuple[str, FastAPI]) -> None:
    assert seed(sim[0], clients=[client_record(f"C-{n:03d}") for n in (5, 1, 4, 2, 3)]).is_success
    first = api.get("/clients", params={"limit": 2}).json()
    second = api.get("/clients", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.get("/clients", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [c["id"] for page in (first, second, third) for c in page["items"]] == [f"C-00{n}" for n in range(1, 6)]
    assert third["next_cursor"] is None


def test_a_refused_seed_stores_nothing_and_answers_in_the_erps_error_shape(sim: tuple[str, FastAPI],
                                                                          api: httpx.Client) -> None:
    url, _ = sim
    invalid = seed(url, clients=[client_record("C-0001")], projects=[project_record("P-1", region="Mars")])
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "validation_failed"
    assert invalid.json()["details"][0]["loc"][:4] == ["body", "projects", 0, "region"]
    unknown = seed(url, clients=[client_record("C-0001")], projects=[project_record("P-1", "C-NOPE")])
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_client")
    twice = seed(url, clients=[client_record("C-0001")], projects=[project_record("P-1"), project_record("P-1")])
    assert (twice.status_code, twice.json()["error"]) == (409, "conflict")
    assert api.get("/clients").json()["items"] == [] and api.get("/projects").json()["items"] == []
    assert seed(url, clients=[client_record("C-0001")]).is_success
    assert seed(url, clients=[client_record("C-0001")]).json()["error"] == "conflict"


def test_the_client_iterates_every_project_by_code_and_every_client(sim: tuple[str, FastAPI], erp: ErpClient) -> None:
    codes = [f"P-{n:05d}" for n in range(2_345)]
    assert seed(sim[0], clients=[client_record(f"C-{n:04d}") for n in range(250)],
                projects=[project_record(c, f"C-{int(c[2:]) % 250:04d}") for c in reversed(codes)]).is_success
    projects = list(erp.iter_projects(order="code", page_size=1000))
    assert [p.code for p in projects] == codes
    assert [c.id for c in erp.iter_clients(page_size=100)] == [f"C-{n:04d}" for n in range(250)]
    recent = list(erp.iter_projects(updated_since=datetime(2000, 1, 1, tzinfo=UTC), page_size=500))
    assert sorted(p.code for p in recent) == codes
