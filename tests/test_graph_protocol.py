"""The Graph simulator's protocol details over real HTTP: Graph's error body on every answer that is not a
success, delta's function forms, list items with ``$expand=fields``, upload sessions and downloads through a
pre-authenticated URL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hub.ingress.server import serve_in_thread
from simulators.sharepoint import SimulatorConfig, create_app

TOKEN = "protocol-test-token"


@pytest.fixture
def sim() -> Iterator[str]:
    """The simulator's base URL (drive ``workspaces``)."""
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN))) as url:
        yield url


@pytest.fixture
def graph(sim: str) -> Iterator[httpx.Client]:
    """A raw HTTP client on the simulator's ``/v1.0`` with the bearer token."""
    with httpx.Client(base_url=f"{sim}/v1.0", headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def graph_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is Graph's error body with ``status`` and ``code``; returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
    return error


def test_unknown_routes_and_methods_answer_graphs_error_body(graph: httpx.Client) -> None:
    graph_error(graph.get("/drives/workspaces/nonsense"), 404, "itemNotFound")
    graph_error(graph.get("/no/such/route"), 404, "itemNotFound")
    graph_error(graph.post("/drives/workspaces"), 405, "notSupported")
    graph_error(graph.get("/drives/workspaces/items/root/children", params={"$top": "0"}), 400, "invalidRequest")
    graph_error(graph.post("/drives/workspaces/root/children", content=b"{not json",
                           headers={"Content-Type": "application/json"}), 400, "invalidRequest")
    graph_error(graph.get("/drives/workspaces/items/nope"), 404, "itemNotFound")
    graph_error(httpx.get(f"{graph.base_url}drives/workspaces"), 401, "InvalidAuthenticationToken")


@pytest.mark.parametrize(("plan", "status", "code"), [
    ({"outage": True, "retry_after_s": 7}, 503, "serviceNotAvailable"),
    ({"error_rate": 1.0}, 500, "generalException"),
    ({"throttle_rate": 1.0, "retry_after_s": 7}, 429, "activityLimitReached"),
])
def test_injected_faults_answer_graphs_error_body(graph: httpx.Client, sim: str, plan: dict[str, Any], status: int,
                                                  code: str) -> None:
    httpx.put(f"{sim}/_sim/faults", json=plan).raise_for_status()
    response = graph.get("/drives/workspaces/root")
    graph_error(response, status, code)
    assert response.headers["x-sim-fault"] in {"outage", "error", "throttle"}
    if status != 500:
        assert response.headers["retry-after"] == "7"


def create(graph: httpx.Client, name: str, parent: str = "root") -> str:
    """Create a folder; its id."""
    response = graph.post(f"/drives/workspaces/items/{parent}/children", json={"name": name, "folder": {}})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def token_in(link: str) -> str:
    """The ``token`` query parameter of a deltaLink."""
    url = httpx.URL(link)
    assert url.path == "/v1.0/drives/workspaces/root/delta"
    token = url.params["token"]
    assert token
    return token


def test_delta_answers_in_its_function_forms_as_in_its_query_form(graph: httpx.Client) -> None:
    first = create(graph, "First")
    plain = graph.get("/drives/workspaces/root/delta").json()
    for form in ("/drives/workspaces/root/delta()", "/drives/workspaces/items/root/delta()",
                 "/drives/workspaces/items/root/delta"):
        answer = graph.get(form).json()
        assert [v["id"] for v in answer["value"]] == [first]
        token_in(answer["@odata.deltaLink"])
    token = token_in(plain["@odata.deltaLink"])
    second = create(graph, "Second")
    for form in (f"/drives/workspaces/root/delta(token='{token}')",
                 f"/drives/workspaces/items/root/delta(token='{token}')",
                 f"/drives/workspaces/root/delta()?token={token}", f"/drives/workspaces/root/delta?token={token}"):
        answer = graph.get(form).json()
        assert [v["id"] for v in answer["value"]] == [second], form
    latest = graph.get("/drives/workspaces/items/root/delta(token='latest')").json()
    assert latest["value"] == []
    assert graph.get(latest["@odata.deltaLink"]).json()["value"] == []
    paged = graph.get("/drives/workspaces/items/root/delta()", params={"$top": 1}).json()
    assert [v["id"] for v in paged["value"]] == [first]
    assert httpx.URL(paged["@odata.nextLink"]).path == "/v1.0/drives/workspaces/root/delta"
    rest = graph.get(paged["@odata.nextLink"]).json()
    assert [v["id"] for v in rest["value"]] == [second] and "@odata.deltaLink" in rest


def test_delta_is_refused_below_the_root_and_for_a_token_it_did_not_issue(graph: httpx.Client) -> None:
    folder = create(graph, "Folder")
    graph_error(graph.get(f"/drives/workspaces/items/{folder}/delta()"), 400, "invalidRequest")
    gone = graph.get("/drives/workspaces/root/delta(token='made-up')")
    graph_error(gone, 410, "resyncRequired")
    assert httpx.URL(gone.headers["location"]).path == "/v1.0/drives/workspaces/root/delta"
    graph_error(graph.get("/drives/workspaces/root/delta(token=unquoted)"), 400, "invalidRequest")


def test_a_list_item_carries_its_fields_only_when_expanded(graph: httpx.Client) -> None:
    folder = create(graph, "ACME")
    fields = {"ClientId": "ACME", "ClientName": "ACME Corp"}
    assert graph.patch(f"/drives/workspaces/items/{folder}/listItem/fields", json=fields).status_code == 200
    plain = graph.get(f"/drives/workspaces/items/{folder}/listItem").json()
    assert "fields" not in plain and plain["contentType"]["name"] == "Folder" and plain["id"]
    expanded = graph.get(f"/drives/workspaces/items/{folder}/listItem", params={"$expand": "fields"}).json()
    assert {k: expanded["fields"][k] for k in fields} == fields and expanded["id"] == plain["id"]
    chosen = graph.get(f"/drives/workspaces/items/{folder}/listItem",
                       params={"$expand": "fields($select=ClientId)"}).json()["fields"]
    assert chosen["ClientId"] == "ACME" and "ClientName" not in chosen
    graph_error(graph.get(f"/drives/workspaces/items/{folder}/listItem", params={"$expand": "versions"}),
                400, "invalidRequest")
    graph_error(graph.get("/drives/workspaces/items/nope/listItem"), 404, "itemNotFound")
