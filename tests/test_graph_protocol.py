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
