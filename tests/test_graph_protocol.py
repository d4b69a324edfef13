"""The Graph simulator's protocol details over real HTTP: Graph's error body on every answer that is not a
success, delta's function forms, list items with ``$expand=fields``, upload sessions and downloads through a
pre-authenticated URL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.settings import GraphSettings
from connectors.sharepoint.client import GraphClient
from hub.ingress.server import serve_in_thread
from simulators.sharepoint import SimulatorConfig, create_app
from tests.support.graph_tenant import BARE

TOKEN = "protocol-test-token"


@pytest.fixture
def sim() -> Iterator[str]:
    """The simulator's base URL (drive ``workspaces``)."""
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN, **BARE))) as url:
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


@pytest.fixture
def tenant() -> Iterator[tuple[str, httpx.Client]]:
    """A simulator whose pre-authenticated URLs name another host (``localhost``) than its Graph calls
    (``127.0.0.1``), as a tenant's SharePoint host differs from graph.microsoft.com; and a client on it."""
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN, preauth_host="localhost", **BARE))) as url, \
            httpx.Client(base_url=f"{url}/v1.0", headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield url, client


def test_a_download_answers_302_to_a_pre_authenticated_url_that_refuses_the_bearer_token(
        tenant: tuple[str, httpx.Client]) -> None:
    sim, graph = tenant
    create(graph, "ACME")
    file = graph.put("/drives/workspaces/root:/ACME/sow.pdf:/content", content=b"%PDF signed",
                     headers={"Content-Type": "application/pdf"}).json()
    for url in (f"/drives/workspaces/items/{file['id']}/content", "/drives/workspaces/root:/ACME/sow.pdf:/content"):
        redirect = graph.get(url)
        assert redirect.status_code == 302
        location = httpx.URL(redirect.headers["location"])
        assert location.host == "localhost" and location.params["tempauth"]
        served = httpx.get(location)
        assert served.status_code == 200 and served.content == b"%PDF signed"
        assert served.headers["content-type"] == "application/pdf"
        graph_error(httpx.get(location, headers={"Authorization": f"Bearer {TOKEN}"}), 401, "unauthenticated")
    forged = location.copy_set_param("tempauth", "0" * 64)
    graph_error(httpx.get(forged), 401, "unauthenticated")
    followed = graph.get(f"/drives/workspaces/items/{file['id']}/content", follow_redirects=True)
    assert followed.content == b"%PDF signed"  # httpx drops the token on a redirect to another host
    assert httpx.get(f"{sim}/_sim/state").json()["transfers"]["preauthRefusedTokens"] == 2


def put_range(url: str, data: bytes, start: int, total: int, **headers: str) -> httpx.Response:
    """PUT one fragment of an upload session (no bearer token: the URL is pre-authenticated)."""
    return httpx.put(url, content=data, headers={
        "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}", **headers})


def test_an_upload_session_takes_fragments_in_multiples_of_320_kib_and_commits_the_file(
        tenant: tuple[str, httpx.Client]) -> None:
    sim, graph = tenant
    acme = create(graph, "ACME")
    unit = 320 * 1024
    content = bytes(range(256)) * (9 * unit // 256) + b"tail"  # 9 units and a bit
    opened = graph.post("/drives/workspaces/root:/ACME/big.bin:/createUploadSession",
                        json={"item": {"@microsoft.graph.conflictBehavior": "fail"}})
    assert opened.status_code == 200, opened.text
    session = opened.json()
    url = session["uploadUrl"]
    assert session["nextExpectedRanges"] == ["0-"] and httpx.URL(url).host == "localhost"
    graph_error(put_range(url, content[:1000], 0, len(content)), 400, "invalidRequest")  # not a 320 KiB multiple
    graph_error(put_range(url, content[:unit], 0, len(content), Authorization=f"Bearer {TOKEN}"), 401,
                "unauthenticated")
    first = put_range(url, content[:4 * unit], 0, len(content))
    assert first.status_code == 202 and first.json()["nextExpectedRanges"] == [f"{4 * unit}-"]
    graph_error(put_range(url, content[:unit], 0, len(content)), 416, "invalidRange")  # already received
    assert httpx.get(url).json()["nextExpectedRanges"] == [f"{4 * unit}-"]
    assert graph.get("/drives/workspaces/root:/ACME/big.bin").status_code == 404  # nothing committed yet
    last = put_range(url, content[4 * unit:], 4 * unit, len(content))
    assert last.status_code == 201, last.text
    item = last.json()
    assert item["name"] == "big.bin" and item["size"] == len(content)
    download = graph.get(f"/drives/workspaces/items/{item['id']}/content", follow_redirects=True)
    assert download.content == content
    graph_error(httpx.get(url), 404, "itemNotFound")  # the session ended with the last fragment
    again = graph.post("/drives/workspaces/root:/ACME/big.bin:/createUploadSession",
                       json={"item": {"@microsoft.graph.conflictBehavior": "fail"}})
    graph_error(again, 409, "nameAlreadyExists")
    replace = graph.post(f"/drives/workspaces/items/{item['id']}/createUploadSession").json()["uploadUrl"]
    replaced = put_range(replace, b"short", 0, 5)
    assert replaced.status_code == 200 and replaced.json()["id"] == item["id"] and replaced.json()["size"] == 5
    cancelled = graph.post(f"/drives/workspaces/items/{acme}:/other.bin:/createUploadSession").json()
    assert httpx.delete(cancelled["uploadUrl"]).status_code == 204
    graph_error(put_range(cancelled["uploadUrl"], b"x", 0, 1), 404, "itemNotFound")
    graph_error(graph.post("/drives/workspaces/root:/Nope/big.bin:/createUploadSession"), 404, "itemNotFound")
    assert httpx.get(f"{sim}/_sim/state").json()["transfers"]["uploadSessions"] == {}


def test_the_hubs_client_uploads_a_large_file_through_a_session_and_downloads_it_without_its_token(
        tenant: tuple[str, httpx.Client]) -> None:
    sim, raw = tenant
    create(raw, "ACME")
    content = bytes(range(256)) * (5 * 1024 * 1024 // 256) + b"!"  # 5 MiB and a byte: past the 4 MB limit
    graph = GraphClient.from_settings(GraphSettings(url=f"{sim}/v1.0", token=SecretStr(TOKEN),
                                                    drive_id="workspaces"))
    try:
        item = graph.upload("ACME", "drawings.zip", content)
        again = graph.upload("ACME", "drawings.zip", content[::-1])  # replaces: the same item
        small = graph.upload("ACME", "note.txt", b"small")
        assert again.id == item.id and again.size == len(content)
        assert graph.download(item.id) == content[::-1] and graph.download(small.id) == b"small"
    finally:
        graph.close()
    calls = httpx.get(f"{sim}/_sim/requests").json()["calls"]
    assert calls["POST /drives/{drive_id}/root:/{path:path}:/createUploadSession"] == 2
    assert calls["PUT /drives/{drive_id}/root:/{path:path}"] == 1  # only the small file went up in one PUT
    state = httpx.get(f"{sim}/_sim/state").json()
    assert state["transfers"] == {"uploadSessions": {}, "preauthRefusedTokens": 0}
    assert state["drives"]["workspaces"]["items"]["ACME/drawings.zip"]["size"] == len(content)
