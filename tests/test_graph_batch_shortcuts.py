"""The hot reads a Graph ``$batch`` answers without the round trip through the whole app (a folder's children, an
item's permissions): each answered inside a batch exactly as the direct call answers it, as JSON: the same status,
headers and body, errors and injected faults included (``simulators.sharepoint.batch.Shortcuts``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.sharepoint import SimulatorConfig
from simulators.sharepoint.batch import Shortcut
from tests.test_graph_batch import DRIVE, LABELS, Sim, _running, batch, folder
from tests.test_graph_sdk import TOKEN

#: Headers of an answer that describe its transport, not the request (a batch leaves them out).
_TRANSPORT = {"content-length", "date", "server", "transfer-encoding", "connection"}
#: Per answer: when and under which ids it was given.
_PER_ANSWER = {"date", "request-id", "client-request-id"}


@pytest.fixture
def sim() -> Iterator[Sim]:
    yield from _running(SimulatorConfig(token=TOKEN, drives=(DRIVE,), graph_ids=False, retention_labels=LABELS))


def _same(batched: dict[str, Any], direct: httpx.Response) -> None:
    """The batch's entry says what the direct answer says (the ids and time of an error's ``innerError`` aside)."""

    def body(value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("error"), dict):
            inner = {k: v for k, v in value["error"].get("innerError", {}).items() if k not in _PER_ANSWER}
            return {**value, "error": {**value["error"], "innerError": inner}}
        return value

    assert batched["status"] == direct.status_code, (batched, direct.text)
    assert {k.lower(): v for k, v in batched["headers"].items()} == {
        k: v for k, v in direct.headers.items() if k not in _TRANSPORT}
    assert body(batched.get("body")) == body(direct.json())


def _tree(sim: Sim) -> tuple[str, str]:
    """A workspace with labelled folders and a direct grant, and one of its folders that inherits."""
    assert sim.seed([{"path": "Engagements/CL-1/PRJ-1", "fields": {"ProjectCode": "PRJ-1"},
                      "grants": [{"group": "Finance", "role": "read"}], "retentionLabel": "Engagement - 10y"},
                     *({"path": f"Engagements/CL-1/PRJ-1/{name}", "retentionLabel": "Client Matter - 7y"}
                       for name in ("Contracts", "Pleadings", "Billing")),
                     {"path": "Engagements/CL-1/PRJ-1/Pleadings/Drafts"}]).status_code == 200
    workspace = sim.api.get(f"/drives/{DRIVE}/root:/Engagements/CL-1/PRJ-1").json()["id"]
    inheriting = sim.api.get(f"/drives/{DRIVE}/root:/Engagements/CL-1/PRJ-1/Pleadings").json()["id"]
    return str(workspace), str(inheriting)


def test_each_hot_read_and_its_errors_answer_in_a_batch_as_the_direct_call_answers_them(sim: Sim) -> None:
    workspace, inheriting = _tree(sim)
    urls = [f"/drives/{DRIVE}/root/children",
            f"/drives/{DRIVE}/items/{workspace}/children",
            f"/drives/{DRIVE}/items/{workspace}/children?$expand=retentionLabel&$select=id,name,folder,"
            "retentionLabel&$top=2",  # paged: the next link too
            f"/drives/{DRIVE}/items/{workspace}/children?$orderby=name%20desc&$expand=listItem($expand=fields)",
            f"/drives/{DRIVE}/items/{workspace}/children?$top=2&$skiptoken=2",
            f"/drives/{DRIVE}/items/{workspace}/permissions",
            f"/drives/{DRIVE}/items/{inheriting}/permissions",
            f"/drives/{DRIVE}/items/root/permissions",
            f"/drives/{DRIVE}/items/nothing-here/permissions",  # 404
            f"/drives/{DRIVE}/items/nothing-here/children",  # 404
            f"/drives/{DRIVE}/items/{workspace}/children?$top=5000",  # 400
            f"/drives/{DRIVE}/items/{workspace}/children?$expand=thumbnails",  # 400
            f"/drives/{DRIVE}/items/{workspace}/children?$skiptoken=abc"]  # 400
    answer = batch(sim, [{"id": str(n), "method": "GET", "url": url} for n, url in enumerate(urls)])
    assert answer.status_code == 200, answer.text
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    statuses = set()
    for n, url in enumerate(urls):
        direct = sim.api.get(url)
        _same(by_id[str(n)], direct)
        statuses.add(direct.status_code)
    assert statuses == {200, 400, 404}
    assert "@odata.nextLink" in by_id["2"]["body"]
    assert {p["grantedToV2"]["group"]["displayName"] for p in by_id["5"]["body"]["value"]
            if "group" in p["grantedToV2"]} >= {"Finance"}
    assert all("inheritedFrom" in p for p in by_id["6"]["body"]["value"])


def test_a_throttled_or_failed_hot_read_in_a_batch_answers_as_the_direct_call_answers_it(sim: Sim) -> None:
    workspace, _ = _tree(sim)
    urls = [f"/drives/{DRIVE}/items/{workspace}/permissions", f"/drives/{DRIVE}/items/{workspace}/children"]
    for kind, plan in (("throttle", {"throttle_rate": 1.0, "retry_after_s": 7}), ("error", {"error_rate": 1.0})):
        sim.faults(**plan)
        direct = [sim.api.get(url) for url in urls]
        sim.faults(**{name: value / 2 if name.endswith("_rate") else value for name, value in plan.items()},
                   seed=3)
        faulted: dict[str, dict[str, Any]] = {}
        for _ in range(50):  # until the batch itself passes and each read was refused in it at least once
            answer = batch(sim, [{"id": str(n), "method": "GET", "url": url} for n, url in enumerate(urls * 5)])
            if answer.status_code == 200:
                faulted.update({str(int(r["id"]) % 2): r for r in answer.json()["responses"] if r["status"] >= 400})
            if len(faulted) == 2:
                break
        sim.faults()
        assert direct[0].headers["x-sim-fault"] == kind
        assert sorted(faulted) == ["0", "1"], kind
        for n, answered in sorted(faulted.items()):
            _same(answered, direct[int(n)])


def test_a_ghosted_hot_read_in_a_batch_answers_504_as_any_ghosted_sub_request_does(sim: Sim) -> None:
    workspace, _ = _tree(sim)
    sim.faults(ghost_rate=0.5, ghost_hold_s=0.05, seed=5)
    reads = [f"/drives/{DRIVE}/items/{workspace}/permissions", f"/drives/{DRIVE}/items/{workspace}"]  # hot, not
    answer = batch(sim, [{"id": str(n), "method": "GET", "url": url} for n, url in enumerate(reads * 10)])
    sim.faults()
    lost = [r for r in answer.json()["responses"] if r["status"] == 504]
    assert {int(r["id"]) % 2 for r in lost} == {0, 1}
    assert {r["body"]["error"]["code"] for r in lost} == {"gatewayTimeout"}
    assert len({repr(sorted(r["headers"].items())) for r in lost}) == 1


def test_a_shortcut_matches_its_routes_path_as_the_router_does() -> None:
    route = Shortcut("/drives/{drive_id}/items/{item_id}/children", lambda _, params: params)
    assert route.pattern.match("/drives/d1/items/01ABC/children").groupdict() == {  # type: ignore[union-attr]
        "drive_id": "d1", "item_id": "01ABC"}
    assert route.pattern.match("/drives/d1/items/a/b/children") is None
    assert route.pattern.match("/drives/d1/items/a/children/more") is None
    assert route.pattern.match("/drives/d1/items//children") is None


def test_the_shortcuts_check_the_token_and_count_each_call_as_the_route_does(sim: Sim) -> None:
    workspace = folder(sim, "W")
    url = f"/drives/{DRIVE}/items/{workspace}/children"
    batch(sim, [{"id": "1", "method": "GET", "url": url}, {"id": "2", "method": "GET", "url": f"/v1.0{url}"}])
    sim.api.get(url)
    calls = httpx.get(f"{sim.url}/_sim/requests").json()["calls"]
    assert calls["GET /drives/{drive_id}/items/{item_id}/children"] == 3
