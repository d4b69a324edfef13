"""The Graph simulator's bulk read paths over real HTTP: JSON batching, children ordered, narrowed and expanded,
the seed route; the hub's client on them (``iter_children``, ``batch``); and Microsoft's own SDK on them."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.http import RetryPolicy
from connectors.settings import GraphSettings
from connectors.sharepoint.client import BatchRequest, GraphClient, ItemNotFound
from hub.errors import UpstreamUnavailable
from hub.ingress.server import serve_in_thread
from simulators.sharepoint import SimulatorConfig, create_app
from simulators.sharepoint.drive import DriveTree
from tests.test_graph_sdk import TOKEN, Sdk

DRIVE = "workspaces"
LABELS = frozenset({"Client Matter - 7y", "Engagement - 10y"})
_SDK_MODULES = r"(msgraph|kiota_abstractions)(\.|$)"


@dataclass
class Sim:
    """The simulator's base URL, an API client on ``/v1.0`` and the app."""

    url: str
    api: httpx.Client
    app: Any

    def seed(self, folders: list[dict[str, Any]], **extra: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/_sim/seed", json={"folders": folders, **extra}, timeout=60)

    def faults(self, **plan: Any) -> None:
        assert httpx.put(f"{self.url}/_sim/faults", json=plan).status_code == 200

    def graph(self, **retry: Any) -> GraphClient:
        settings = GraphSettings(url=f"{self.url}/v1.0/", token=SecretStr(TOKEN), drive_id=DRIVE)
        return GraphClient.from_settings(settings, retry=RetryPolicy(**retry) if retry else None,
                                         sleep=lambda _: None)


def _running(config: SimulatorConfig) -> Iterator[Sim]:
    app = create_app(config)
    with serve_in_thread(app) as url, httpx.Client(base_url=f"{url}/v1.0",
                                                   headers={"authorization": f"Bearer {TOKEN}"}) as api:
        yield Sim(url, api, app)


@pytest.fixture
def sim() -> Iterator[Sim]:
    """A strict tenant (site groups, built-in columns only, published labels) whose drive id is its name."""
    yield from _running(SimulatorConfig(token=TOKEN, drives=(DRIVE,), graph_ids=False, retention_labels=LABELS))


def batch(sim: Sim, requests: list[dict[str, Any]]) -> httpx.Response:
    return sim.api.post("/$batch", json={"requests": requests})


def folder(sim: Sim, name: str, parent: str = "root") -> str:
    response = sim.api.post(f"/drives/{DRIVE}/items/{parent}/children", json={"name": name, "folder": {}})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# -- $batch ---------------------------------------------------------------------------------------------------


def test_a_batch_answers_each_request_by_id_as_the_direct_call_answers_it(sim: Sim) -> None:
    ids = [folder(sim, f"W{n}") for n in range(20)]
    invite = {"recipients": [{"alias": "Finance"}], "roles": ["read"]}
    assert sim.api.post(f"/drives/{DRIVE}/items/{ids[3]}/invite", json=invite).status_code == 200
    answer = batch(sim, [{"id": f"p{n}", "method": "GET", "url": f"/drives/{DRIVE}/items/{i}/permissions"}
                         for n, i in enumerate(ids)])
    assert answer.status_code == 200, answer.text
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert sorted(by_id) == sorted(f"p{n}" for n in range(20))
    for n, item_id in enumerate(ids):
        direct = sim.api.get(f"/drives/{DRIVE}/items/{item_id}/permissions")
        assert (by_id[f"p{n}"]["status"], by_id[f"p{n}"]["body"]) == (200, direct.json())
        assert by_id[f"p{n}"]["headers"]["Content-Type"] == "application/json"
    assert [p["grantedToV2"].get("group", {}).get("displayName") for p in by_id["p3"]["body"]["value"]][-1] == "Finance"
    calls = httpx.get(f"{sim.url}/_sim/requests").json()["calls"]
    permissions = next(k for k in calls if k.startswith("GET ") and k.endswith("/permissions"))
    assert calls[permissions] == 40  # each sub-request checked and counted as a call of its own
    assert calls["POST /$batch"] == 1


def test_a_batch_of_more_than_20_or_with_a_duplicate_id_or_a_bodiless_content_is_refused_in_graphs_shape(
        sim: Sim) -> None:
    get = {"method": "GET", "url": f"/drives/{DRIVE}/root"}
    too_many = batch(sim, [{"id": str(n), **get} for n in range(21)])
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "BadRequest"
    assert "20" in too_many.json()["error"]["message"]
    assert batch(sim, [{"id": "a", **get}, {"id": "A", **get}]).json()["error"]["code"] == "BadRequest"
    no_type = batch(sim, [{"id": "1", "method": "POST", "url": f"/drives/{DRIVE}/root/children",
                           "body": {"name": "X", "folder": {}}}])
    assert no_type.status_code == 400
    assert batch(sim, []).status_code == 400
    assert batch(sim, [{"id": "1", **get, "dependsOn": ["nope"]}]).status_code == 400
    assert sim.api.post("/$batch", content=b"not json").status_code == 400
    unauthorised = httpx.post(f"{sim.url}/v1.0/$batch", json={"requests": [{"id": "1", **get}]})
    assert unauthorised.status_code == 401


def test_a_request_runs_after_what_it_depends_on_and_fails_424_when_that_failed(sim: Sim) -> None:
    create = {"id": "1", "method": "POST", "url": f"/drives/{DRIVE}/root/children",
              "body": {"name": "ACME", "folder": {}}, "headers": {"Content-Type": "application/json"}}
    read = {"id": "2", "method": "GET", "url": f"/drives/{DRIVE}/root:/ACME", "dependsOn": ["1"]}
    answered = {r["id"]: r for r in batch(sim, [read, create]).json()["responses"]}
    assert answered["1"]["status"] == 201 and answered["2"]["status"] == 200
    assert answered["2"]["body"]["id"] == answered["1"]["body"]["id"]
    again = {r["id"]: r for r in batch(sim, [create, read]).json()["responses"]}
    assert again["1"]["status"] == 409 and again["1"]["body"]["error"]["code"] == "nameAlreadyExists"
    assert again["2"]["status"] == 424


def test_a_sub_request_goes_through_fault_injection_and_a_throttled_one_carries_retry_after(sim: Sim) -> None:
    ids = [folder(sim, f"W{n}") for n in range(20)]
    sim.faults(throttle_rate=0.5, retry_after_s=7, seed=11)
    requests = [{"id": str(n), "method": "GET", "url": f"/drives/{DRIVE}/items/{i}/permissions"}
                for n, i in enumerate(ids)]
    answer = batch(sim, requests)
    while answer.status_code == 429:  # the batch itself is a call the plan may throttle too
        answer = batch(sim, requests)
    statuses = [r["status"] for r in answer.json()["responses"]]
    assert set(statuses) == {200, 429}
    throttled = next(r for r in answer.json()["responses"] if r["status"] == 429)
    assert throttled["headers"]["Retry-After"] == "7"
    assert throttled["body"]["error"]["code"] == "activityLimitReached"


# -- children: $orderby, $select, $expand ---------------------------------------------------------------------


def test_children_are_ordered_by_name_either_way_and_paged(sim: Sim) -> None:
    names = ["beta", "Alpha", "delta", "Charlie", "echo"]
    for name in names:
        folder(sim, name)
    ascending = sim.api.get(f"/drives/{DRIVE}/root/children", params={"$orderby": "name", "$top": 2}).json()
    rest = sim.api.get(ascending["@odata.nextLink"]).json()
    last = sim.api.get(rest["@odata.nextLink"]).json()
    assert [c["name"] for c in [*ascending["value"], *rest["value"], *last["value"]]] == sorted(names, key=str.casefold)
    descending = sim.api.get(f"/drives/{DRIVE}/root/children", params={"$orderby": "name desc", "$top": 3}).json()
    more = sim.api.get(descending["@odata.nextLink"]).json()
    assert [c["name"] for c in [*descending["value"], *more["value"]]] == sorted(names, key=str.casefold, reverse=True)
    refused = sim.api.get(f"/drives/{DRIVE}/root/children", params={"$orderby": "size"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalidRequest"
    assert sim.api.get(f"/drives/{DRIVE}/root/children", params={"$top": 1001}).status_code == 400
    assert sim.api.get(f"/drives/{DRIVE}/root/children", params={"$top": 1000}).status_code == 200


def test_children_and_an_item_expand_their_list_item_fields_and_retention_label_as_graph_shapes_them(sim: Sim) -> None:
    seeded = sim.seed([{"path": "ACME/ENG-1", "fields": {"ProjectCode": "ENG-1"}, "retentionLabel": "Engagement - 10y"},
                       {"path": "ACME/ENG-2"}])
    assert seeded.status_code == 200, seeded.text
    acme = sim.api.get(f"/drives/{DRIVE}/root:/ACME").json()["id"]
    listed = sim.api.get(f"/drives/{DRIVE}/items/{acme}/children", params={
        "$expand": "listItem($expand=fields),retentionLabel", "$select": "id,name,eTag"}).json()["value"]
    first, second = listed
    assert set(first) == {"@odata.etag", "id", "name", "eTag", "listItem", "retentionLabel"}
    assert first["listItem"]["fields"]["ProjectCode"] == "ENG-1" and first["listItem"]["id"]
    assert first["retentionLabel"]["name"] == "Engagement - 10y"
    assert second["retentionLabel"] == {"name": None, "isLabelAppliedExplicitly": False}
    one = sim.api.get(f"/drives/{DRIVE}/items/{first['id']}", params={"$expand": "retentionLabel"}).json()
    assert one["retentionLabel"]["name"] == "Engagement - 10y" and one["folder"] == {"childCount": 0}
    narrowed = sim.api.get(f"/drives/{DRIVE}/items/{first['id']}",
                           params={"$expand": "listItem($expand=fields($select=ProjectCode))"}).json()
    assert set(narrowed["listItem"]["fields"]) == {"@odata.etag", "id", "ProjectCode"}
    unknown = sim.api.get(f"/drives/{DRIVE}/items/{acme}/children", params={"$expand": "thumbnails"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == ("Parsing OData Select and Expand failed: Could not find a property "
                                                  "named 'thumbnails' on type 'microsoft.graph.driveItem'.")


# -- the seed route -------------------------------------------------------------------------------------------


def _tree(sim: Sim) -> dict[str, Any]:
    items: dict[str, Any] = httpx.get(f"{sim.url}/_sim/state").json()["drives"][DRIVE]["items"]
    return items


def test_a_seeded_tree_looks_as_the_same_tree_made_through_the_api_does() -> None:
    config = SimulatorConfig(token=TOKEN, drives=(DRIVE,), graph_ids=False, retention_labels=LABELS)
    with _running_pair(config) as (seeded, made):
        answer = seeded.seed([{"path": "Clients/ACME/ENG-1", "grants": [{"group": "Strategy-EU", "role": "write"}],
                               "fields": {"ProjectCode": "ENG-1"}, "retentionLabel": "Client Matter - 7y"},
                              {"path": "Clients/ACME/ENG-1/Contracts"}, {"path": "Clients/ACME/ENG-1/SOWs"}])
        assert answer.json() == {"seeded": {"folders": 5, "entries": 3}}
        graph = made.graph()
        workspace = graph.ensure_folder("Clients/ACME/ENG-1")
        graph.ensure_columns(["ProjectCode"])
        graph.ensure_fields(workspace.id, {"ProjectCode": "ENG-1"})
        graph.ensure_grant(workspace.id, "Strategy-EU", "write")
        graph.ensure_retention_label(workspace.id, "Client Matter - 7y")
        for name in ("Contracts", "SOWs"):
            graph.ensure_child_folder(workspace.id, name, f"Clients/ACME/ENG-1/{name}")
        graph.close()
        left, right = _tree(seeded), _tree(made)
        assert sorted(left) == sorted(right)
        for path in left:
            a, b = left[path], right[path]
            assert a["eTag"].rsplit(",", 1)[1] == b["eTag"].rsplit(",", 1)[1], path  # the same version
            assert (a["webUrl"], a["kind"], a["size"], a["retentionLabel"], a["fields"]) == (
                b["webUrl"], b["kind"], b["size"], b["retentionLabel"], b["fields"]), path
            assert sorted((p["group"], p["roles"]) for p in a["permissions"]) == sorted(
                (p["group"], p["roles"]) for p in b["permissions"]), path
        ws_id = seeded.api.get(f"/drives/{DRIVE}/root:/Clients/ACME/ENG-1").json()["id"]
        shown = seeded.api.get(f"/drives/{DRIVE}/items/{ws_id}/permissions").json()["value"]
        assert {p["grantedToV2"].get("group", p["grantedToV2"].get("siteGroup"))["displayName"] for p in shown} == {
            "Hub Owners", "Hub Members", "Hub Visitors", "Strategy-EU"}
        assert httpx.get(f"{seeded.url}/_sim/requests").json()["creates"] == {}  # no API request was made


class _running_pair:
    """Two simulators of one configuration."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._gens = [_running(config), _running(config)]

    def __enter__(self) -> tuple[Sim, Sim]:
        return next(self._gens[0]), next(self._gens[1])

    def __exit__(self, *_: object) -> None:
        for gen in self._gens:
            gen.close()


def test_a_refused_seed_changes_nothing(sim: Sim) -> None:
    before = httpx.get(f"{sim.url}/_sim/state").json()["drives"][DRIVE]
    for folders in ([{"path": "A/B"}, {"path": "A/C", "grants": [{"group": "Nobody", "role": "read"}]}],
                    [{"path": "A", "retentionLabel": "Unpublished"}],
                    [{"path": "A/bad:name"}], [{"path": "A", "grants": [{"group": "Finance", "role": "owner"}]}]):
        refused = sim.seed(folders)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalidRequest", folders
    assert httpx.get(f"{sim.url}/_sim/state").json()["drives"][DRIVE] == before


def test_seeding_keeps_folder_sizes_and_the_delta_log_true(sim: Sim) -> None:
    acme = folder(sim, "ACME")
    sim.api.put(f"/drives/{DRIVE}/items/{acme}:/sow.pdf:/content", content=b"x" * 10,
                headers={"content-type": "application/pdf"})
    token = sim.api.get(f"/drives/{DRIVE}/root/delta", params={"token": "latest"}).json()["@odata.deltaLink"]
    assert sim.seed([{"path": f"ACME/P{n}/Contracts"} for n in range(3)] + [{"path": "ACME", "fields": {
        "Title": "ACME"}}]).status_code == 200
    sim.api.put(f"/drives/{DRIVE}/root:/ACME/P1/Contracts/c.pdf:/content", content=b"y" * 5)
    tree: DriveTree = sim.app.state.graph
    with tree.lock:
        for item in tree.items.values():
            expected = len(item.content) if item.is_file else sum(
                tree.size_of(d) for d in tree.items.values() if d.is_file and tree._is_within(d, item.id))
            assert tree.size_of(item) == expected, tree.path_of(item)
    changed = _read_delta(sim, token)
    # ACME (fields, children), P0..P2 (children), three Contracts, the new file; each once.
    names = [c["name"] for c in changed]
    assert sorted(names) == sorted(["ACME", "P0", "P1", "P2", "Contracts", "Contracts", "Contracts", "c.pdf"])
    everything = _read_delta(sim, None)
    assert len(everything) == len({c["id"] for c in everything}) == 9


def _read_delta(sim: Sim, link: str | None) -> list[dict[str, Any]]:
    url: str | None = link or f"{sim.url}/v1.0/drives/{DRIVE}/root/delta"
    values: list[dict[str, Any]] = []
    while url:
        body = sim.api.get(url).json()
        values += body["value"]
        url = body.get("@odata.nextLink")
    return values


# -- the hub's client -----------------------------------------------------------------------------------------


def test_the_client_iterates_children_expanded_and_ordered(sim: Sim) -> None:
    sim.seed([{"path": f"Clients/P{n:03d}", "fields": {"Title": f"P{n:03d}"}} for n in range(25)]
             + [{"path": "Clients/P007", "retentionLabel": "Engagement - 10y"}])
    graph = sim.graph()
    clients = graph.get_by_path("Clients")
    assert clients is not None
    children = list(graph.iter_children(clients.id, expand=["listItem($expand=fields)", "retentionLabel"],
                                        orderby="name desc", page_size=10))
    assert [c.name for c in children] == [f"P{n:03d}" for n in reversed(range(25))]
    assert all(c.list_item is not None and c.list_item["Title"] == c.name for c in children)
    labelled = next(c for c in children if c.name == "P007")
    assert labelled.retention_label is not None and labelled.retention_label.name == "Engagement - 10y"
    plain = next(graph.iter_children(clients.id, select="id,name"))
    assert (plain.list_item, plain.retention_label, plain.folder) == (None, None, None)
    graph.close()


def test_the_client_batches_in_twenties_answers_in_request_order_and_retries_only_throttled_sub_requests(
        sim: Sim) -> None:
    sim.seed([{"path": f"W{n:02d}"} for n in range(45)])
    graph = sim.graph(attempts=30, backoff_s=0.0)
    ids = [c.id for c in graph.iter_children("root", orderby="name")]
    requests = [BatchRequest.get(f"{graph.item_url(i)}/permissions") for i in ids]
    sim.faults(throttle_rate=0.3, retry_after_s=0, seed=5)
    answers = graph.batch(requests)
    injected = httpx.get(f"{sim.url}/_sim/state").json()["faults"]["injected"]
    sim.faults()
    assert injected["throttle"] > 3  # more than the three batches would take: sub-requests were throttled
    assert [a.status for a in answers] == [200] * 45
    assert all(len(a.body["value"]) == 3 for a in answers)  # the site's three groups on every workspace
    missing = graph.batch([requests[0], BatchRequest.get(f"{graph.item_url('01NOPE')}/permissions")])
    assert [a.status for a in missing] == [200, 404] and not missing[1].ok
    with pytest.raises(ItemNotFound):
        graph.batch([BatchRequest.get(f"{graph.item_url('01NOPE')}/permissions")], raise_errors=True)
    graph.close()


def test_a_batch_throttled_past_the_attempts_is_raised_as_unavailable(sim: Sim) -> None:
    sim.seed([{"path": "W"}])
    graph = sim.graph(attempts=2, backoff_s=0.0)
    item = graph.get_by_path("W")
    assert item is not None
    sim.faults(throttle_rate=1.0, retry_after_s=0)
    # Every call is throttled, the batch itself too: the client's policy gives up as for any call.
    with pytest.raises(UpstreamUnavailable, match="429"):
        graph.batch([BatchRequest.get(f"{graph.item_url(item.id)}/permissions")], raise_errors=True)
    sim.faults()
    graph.close()


# -- Microsoft's SDK ------------------------------------------------------------------------------------------


with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=_SDK_MODULES)
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphServiceClient
    from msgraph.generated.drives.item.items.item.children.children_request_builder import ChildrenRequestBuilder
    from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem


@pytest.mark.filterwarnings(f"ignore::DeprecationWarning:{_SDK_MODULES}")
def test_the_sdk_sends_a_batch_request_content_and_reads_the_answers_by_id(sim: Sim) -> None:
    ids = [folder(sim, f"W{n}") for n in range(3)]

    async def calls(graph: GraphServiceClient) -> Any:
        content = BatchRequestContent()
        items = graph.drives.by_drive_id(DRIVE).items
        for n, item_id in enumerate(ids):
            info = items.by_drive_item_id(item_id).permissions.to_get_request_information()
            content.add_request(f"r{n}", BatchRequestItem(info, id=f"r{n}"))
        missing = items.by_drive_item_id("01NOPE").to_get_request_information()
        content.add_request("gone", BatchRequestItem(missing, id="gone"))
        return await BatchRequestBuilder(graph.request_adapter).post(content)

    answer = Sdk(sim.url, "", None).run(calls)  # type: ignore[arg-type]
    assert answer.get_response_status_codes() == {"r0": 200, "r1": 200, "r2": 200, "gone": 404}
    assert answer.get_response_by_id("r1").content_type == "application/json"


@pytest.mark.filterwarnings(f"ignore::DeprecationWarning:{_SDK_MODULES}")
def test_the_sdk_lists_children_expanded_with_their_fields_and_ordered_by_name(sim: Sim) -> None:
    sim.seed([{"path": f"Clients/{name}", "fields": {"Title": name.upper()}} for name in ("b", "c", "a")])
    clients = sim.api.get(f"/drives/{DRIVE}/root:/Clients").json()["id"]

    async def calls(graph: GraphServiceClient) -> Any:
        query = ChildrenRequestBuilder.ChildrenRequestBuilderGetQueryParameters(
            expand=["listItem($expand=fields)"], orderby=["name desc"], select=["id", "name"])
        return await graph.drives.by_drive_id(DRIVE).items.by_drive_item_id(clients).children.get(
            request_configuration=RequestConfiguration(query_parameters=query))

    listed = Sdk(sim.url, "", None).run(calls)  # type: ignore[arg-type]
    assert [c.name for c in listed.value] == ["c", "b", "a"]
    assert [c.list_item.fields.additional_data["Title"] for c in listed.value] == ["C", "B", "A"]

