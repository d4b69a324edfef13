"""The Graph simulator over real HTTP: Graph's shapes, errors, faults, admin views and change notifications.

Past 400 lines on purpose: the simulator's Graph contract, route by route, in one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sharepoint.inbound import check_client_state, parse_notifications
from hub.ingress.server import serve_in_thread
from simulators.kit.clock import ManualClock
from simulators.kit.outbox import HOUR_S
from simulators.sharepoint import SimulatorConfig, create_app
from simulators.sharepoint.notify import Notifier
from tests.support.graph_receiver import Receiver
from tests.support.schedules import answering, gaps, run_schedule

TOKEN = "sim-test-token"


@pytest.fixture
def sim() -> Iterator[str]:
    """The simulator's base URL (drives ``workspaces`` and ``archive``, addressed by name; a site granting
    nothing of its own; any field), fast notification retries."""
    config = SimulatorConfig(token=TOKEN, drives=("workspaces", "archive"), notify_backoff_s=0.05, graph_ids=False,
                             site_groups=False, columns=None,
                             http_notification_hosts=frozenset({"127.0.0.1"}))  # its receivers: plain http
    with serve_in_thread(create_app(config)) as url:
        yield url


@pytest.fixture
def graph(sim: str) -> Iterator[httpx.Client]:
    """A raw HTTP client on the simulator's ``/v1.0`` with the bearer token."""
    with httpx.Client(base_url=f"{sim}/v1.0", headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll until ``condition`` holds, else fail."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)


def create(graph: httpx.Client, name: str, parent: str = "root", **extra: Any) -> httpx.Response:
    """POST a folder creation."""
    return graph.post(f"/drives/workspaces/items/{parent}/children", json={"name": name, "folder": {}, **extra})


def later(minutes: int = 60) -> str:
    """An expiration ``minutes`` from now."""
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def test_a_call_without_the_bearer_token_is_refused_like_graph(sim: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = httpx.get(f"{sim}/v1.0/drives/workspaces/root", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_a_created_folder_has_graphs_driveitem_shape(graph: httpx.Client) -> None:
    parent = create(graph, "ACME", **{"@microsoft.graph.conflictBehavior": "fail"})
    assert parent.status_code == 201
    child = create(graph, "SOWs & Contracts", parent.json()["id"]).json()
    assert child["name"] == "SOWs & Contracts"
    assert child["folder"] == {"childCount": 0}
    assert child["parentReference"] == {"driveId": "workspaces", "driveType": "documentLibrary",
                                        "id": parent.json()["id"], "path": "/drives/workspaces/root:/ACME"}
    assert child["webUrl"] == "https://sim.sharepoint.example/sites/hub/workspaces/ACME/SOWs%20%26%20Contracts"
    assert child["eTag"] and child["createdDateTime"].endswith("Z") and child["lastModifiedDateTime"]
    assert graph.get(f"/drives/workspaces/items/{parent.json()['id']}").json()["folder"]["childCount"] == 1


def test_an_existing_name_answers_409_name_already_exists_whatever_its_case(graph: httpx.Client) -> None:
    create(graph, "Contracts")
    conflict = create(graph, "contracts", **{"@microsoft.graph.conflictBehavior": "fail"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "nameAlreadyExists"
    assert create(graph, "Contracts").status_code == 409  # fail is the default here
    assert create(graph, "Contracts", **{"@microsoft.graph.conflictBehavior": "rename"}).json()["name"] == \
        "Contracts 1"
    replaced = graph.post("/drives/workspaces/root/children?@microsoft.graph.conflictBehavior=replace",
                          json={"name": "Contracts", "folder": {}})
    assert replaced.status_code == 200


def test_items_are_found_by_path_and_a_missing_path_is_item_not_found(graph: httpx.Client) -> None:
    acme = create(graph, "ACME").json()
    graph.post("/drives/workspaces/root:/ACME:/children", json={"name": "Invoices", "folder": {}})
    found = graph.get("/drives/workspaces/root:/acme/INVOICES")
    assert found.status_code == 200 and found.json()["parentReference"]["id"] == acme["id"]
    missing = graph.get("/drives/workspaces/root:/ACME/Nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "itemNotFound"
    assert graph.get("/drives/nodrive/root").status_code == 404


def test_children_are_paged_with_an_odata_next_link(graph: httpx.Client) -> None:
    parent = create(graph, "Paged").json()["id"]
    for index in range(5):
        create(graph, f"F{index}", parent)
    names: list[str] = []
    pages = 0
    url: str | None = f"/drives/workspaces/items/{parent}/children?$top=2"
    while url:
        body = graph.get(url).json()
        names += [item["name"] for item in body["value"]]
        url, pages = body.get("@odata.nextLink"), pages + 1
    assert names == ["F0", "F1", "F2", "F3", "F4"]
    assert pages == 3


def test_an_invalid_folder_name_or_body_is_an_invalid_request(graph: httpx.Client) -> None:
    for name in ("a:b", "trailing.", " padded", ""):
        assert create(graph, name).json()["error"]["code"] == "invalidRequest"
    assert graph.post("/drives/workspaces/root/children", json={"name": "x"}).status_code == 400
    assert graph.post("/drives/workspaces/root/children", json=["x"]).status_code == 400


def test_known_groups_are_granted_and_unknown_groups_are_refused(graph: httpx.Client, sim: str) -> None:
    item = create(graph, "Matter").json()["id"]
    url = f"/drives/workspaces/items/{item}"
    unknown = graph.post(f"{url}/invite", json={"recipients": [{"alias": "Nobody-XX"}], "roles": ["read"]})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalidRequest"
    bad_role = graph.post(f"{url}/invite", json={"recipients": [{"alias": "Legal-NA"}], "roles": ["owner"]})
    assert bad_role.status_code == 400
    granted = graph.post(f"{url}/invite", json={
        "recipients": [{"alias": "Legal-NA"}, {"email": "finance@sim.sharepoint.example"}],
        "roles": ["write"], "requireSignIn": True, "sendInvitation": False}).json()["value"]
    assert [p["grantedToV2"]["group"]["displayName"] for p in granted] == ["Legal-NA", "Finance"]
    assert granted[0]["roles"] == ["write"]
    listed = graph.get(f"{url}/permissions").json()["value"]
    assert [p["id"] for p in listed] == [p["id"] for p in granted]
    assert graph.delete(f"{url}/permissions/{granted[0]['id']}").status_code == 204
    assert graph.delete(f"{url}/permissions/{granted[0]['id']}").status_code == 404
    state = httpx.get(f"{sim}/_sim/state").json()["drives"]["workspaces"]["items"]["Matter"]
    assert state["permissions"] == [{"id": granted[1]["id"], "group": "Finance", "roles": ["write"]}]


def test_retention_labels_and_fields_are_applied_and_shown_in_the_state(graph: httpx.Client, sim: str) -> None:
    item = create(graph, "Labelled").json()["id"]
    url = f"/drives/workspaces/items/{item}"
    assert graph.get(f"{url}/retentionLabel").json()["name"] is None
    assert graph.patch(f"{url}/retentionLabel", json={"name": "EU-10y"}).status_code == 201
    assert graph.patch(f"{url}/retentionLabel", json={"name": "EU-7y"}).status_code == 200
    assert graph.get(f"{url}/retentionLabel").json()["name"] == "EU-7y"
    graph.patch(f"{url}/listItem/fields", json={"Client": "ACME", "Region": "EU"})
    fields = graph.patch(f"{url}/listItem/fields", json={"Region": "NA"}).json()
    assert fields["Client"] == "ACME" and fields["Region"] == "NA"
    assert graph.patch(f"{url}/listItem/fields", json={"id": "9"}).status_code == 400
    state = httpx.get(f"{sim}/_sim/state").json()["drives"]["workspaces"]["items"]["Labelled"]
    assert state["retentionLabel"] == "EU-7y"
    assert state["fields"] == {"Client": "ACME", "Region": "NA"}


def test_reset_forgets_items_and_counts(graph: httpx.Client, sim: str) -> None:
    create(graph, "Gone")
    assert httpx.get(f"{sim}/_sim/requests").json()["creates"] == {"workspaces/Gone": 1}
    httpx.post(f"{sim}/_sim/reset")
    assert httpx.get(f"{sim}/_sim/state").json()["drives"]["workspaces"]["items"] == {}
    assert httpx.get(f"{sim}/_sim/requests").json()["creates"] == {}
    assert graph.get("/drives/workspaces/root:/Gone").status_code == 404


def test_faults_are_set_at_runtime_and_carry_retry_after(graph: httpx.Client, sim: str) -> None:
    httpx.put(f"{sim}/_sim/faults", json={"throttle_rate": 1.0, "retry_after_s": 3})
    throttled = graph.get("/drives/workspaces/root")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "3"
    httpx.put(f"{sim}/_sim/faults", json={"outage": True})
    assert graph.get("/drives/workspaces/root").status_code == 503
    assert httpx.get(f"{sim}/_sim/state").status_code == 200  # admin endpoints are never faulted
    httpx.put(f"{sim}/_sim/faults", json={})
    assert graph.get("/drives/workspaces/root").status_code == 200


def subscribe(graph: httpx.Client, url: str, resource: str = "drives/workspaces/root") -> httpx.Response:
    """POST a subscription for ``updated`` changes."""
    return graph.post("/subscriptions", json={"changeType": "updated", "notificationUrl": url,
                                              "resource": resource, "expirationDateTime": later(),
                                              "clientState": "state-42"})


def test_a_subscription_is_created_only_after_the_endpoint_echoes_the_token(graph: httpx.Client) -> None:
    receiver = Receiver()
    with serve_in_thread(receiver.app) as base:
        created = subscribe(graph, f"{base}/notify")
    assert created.status_code == 201
    assert created.json()["clientState"] == "state-42" and created.json()["resource"] == "drives/workspaces/root"
    [(token, content_type)] = receiver.validations
    assert " " in token and content_type.startswith("text/plain")  # decoded once, as Graph's token
    assert graph.get(f"/subscriptions/{created.json()['id']}").status_code == 200


def test_an_endpoint_that_does_not_echo_makes_the_subscription_fail(graph: httpx.Client) -> None:
    receiver = Receiver(echo=False)
    with serve_in_thread(receiver.app) as base:
        refused = subscribe(graph, f"{base}/notify")
        unreachable = subscribe(graph, f"{base}/elsewhere")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ValidationError"
    assert unreachable.status_code == 400
    assert graph.get("/subscriptions").json()["value"] == []


def test_a_subscription_request_graph_would_refuse_is_refused(graph: httpx.Client) -> None:
    body = {"changeType": "updated", "notificationUrl": "http://127.0.0.1:9/x", "resource": "drives/workspaces/root",
            "expirationDateTime": later(), "clientState": "s"}
    for change in ({"changeType": "created"}, {"expirationDateTime": later(-5)}, {"resource": "me/messages"},
                   {"expirationDateTime": later(60 * 24 * 60)}, {"clientState": "x" * 129}):
        assert graph.post("/subscriptions", json={**body, **change}).status_code == 400


def test_a_change_under_the_resource_is_notified_with_the_client_state(graph: httpx.Client) -> None:
    receiver = Receiver(fail_first=1)  # the first delivery fails and is retried
    with serve_in_thread(receiver.app) as base:
        subscription = subscribe(graph, f"{base}/notify").json()
        item = create(graph, "Notified").json()
        wait_for(lambda: len(receiver.bodies) >= 1)
        graph.patch(f"/drives/workspaces/items/{item['id']}/retentionLabel", json={"name": "EU-10y"})
        wait_for(lambda: len(receiver.bodies) >= 2)
    notifications = [n for body in receiver.bodies for n in parse_notifications(body)]
    for notification in notifications:
        check_client_state(notification, ["state-42"])  # the hub's own check accepts them
        assert notification.subscription_id == subscription["id"]
        assert notification.change_type == "updated" and notification.resource == "drives/workspaces/root"
    # As Graph's driveItem notifications: no item id, only the type; the drive's delta says what changed.
    assert {n.resource_id for n in notifications} == {None}
    assert {json.dumps(n["resourceData"]) for body in receiver.bodies for n in json.loads(body)["value"]} == {
        '{"@odata.type": "#Microsoft.Graph.DriveItem"}'}


def test_a_subscription_below_a_drives_root_is_refused_and_only_its_drive_is_notified(graph: httpx.Client,
                                                                                     sim: str) -> None:
    watched = create(graph, "Watched").json()["id"]
    receiver = Receiver()
    with serve_in_thread(receiver.app) as base:
        below = subscribe(graph, f"{base}/notify", resource=f"drives/workspaces/items/{watched}")
        assert below.status_code == 400 and below.json()["error"]["code"] == "InvalidRequest"  # as SharePoint
        subscribe(graph, f"{base}/notify")
        graph.post("/drives/archive/root/children", json={"name": "Elsewhere", "folder": {}})
        inside = create(graph, "Inside", watched).json()["id"]
        # One thread delivers the notifications in the order of the changes: once the simulator counts one
        # delivered, a notification of the earlier change in the other drive would have been delivered first.
        wait_for(lambda: httpx.get(f"{sim}/_sim/state").json()["notifications"]["delivered"] >= 1)
    assert len([n for body in receiver.bodies for n in parse_notifications(body)]) == 1
    assert httpx.get(f"{sim}/_sim/state").json()["notifications"]["delivered"] == 1
    assert inside in [v["id"] for v in graph.get("/drives/workspaces/root/delta").json()["value"]]


def put_file(graph: httpx.Client, path: str, content: bytes, content_type: str | None = "application/pdf",
             **params: str) -> httpx.Response:
    """PUT a file's content by path below the ``workspaces`` root."""
    headers = {"Content-Type": content_type} if content_type else {}
    return graph.put(f"/drives/workspaces/root:/{path}:/content", content=content, headers=headers, params=params)


def delta_pages(graph: httpx.Client, url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page of a delta round from ``url``: (the items, the raw pages)."""
    pages: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        response = graph.get(next_url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        next_url = pages[-1].get("@odata.nextLink")
    return [v for page in pages for v in page["value"]], pages


def token_of(page: dict[str, Any]) -> str:
    """The ``token`` query parameter of a page's deltaLink."""
    token = httpx.URL(page["@odata.deltaLink"]).params["token"]
    assert token
    return token


def test_an_upload_creates_a_file_and_a_repeat_replaces_its_content(graph: httpx.Client, sim: str) -> None:
    acme = create(graph, "ACME").json()
    created = graph.put(f"/drives/workspaces/items/{acme['id']}:/sow.pdf:/content", content=b"%PDF-1 v1",
                        headers={"Content-Type": "application/pdf"})
    assert created.status_code == 201
    file = created.json()
    assert file["name"] == "sow.pdf" and file["file"] == {"mimeType": "application/pdf"} and "folder" not in file
    assert file["size"] == 9
    assert file["parentReference"] == {"driveId": "workspaces", "driveType": "documentLibrary", "id": acme["id"],
                                       "path": "/drives/workspaces/root:/ACME"}
    assert file["webUrl"] == "https://sim.sharepoint.example/sites/hub/workspaces/ACME/sow.pdf"
    replaced = put_file(graph, "acme/SOW.pdf", b"%PDF-1 version 2")  # names are case-insensitive
    assert replaced.status_code == 200
    assert replaced.json()["id"] == file["id"] and replaced.json()["name"] == "sow.pdf"
    assert replaced.json()["eTag"] != file["eTag"] and replaced.json()["size"] == 16
    [child] = graph.get(f"/drives/workspaces/items/{acme['id']}/children").json()["value"]
    assert child["id"] == file["id"] and child["file"]["mimeType"] == "application/pdf" and child["size"] == 16
    folder = graph.get(f"/drives/workspaces/items/{acme['id']}").json()
    assert folder["folder"] == {"childCount": 1} and folder["size"] == 16  # a folder's size sums its files
    state = httpx.get(f"{sim}/_sim/state").json()["drives"]["workspaces"]["items"]
    assert state["ACME/sow.pdf"] | {"eTag": None, "webUrl": None} == {
        "id": file["id"], "name": "sow.pdf", "parentId": acme["id"], "eTag": None, "kind": "file", "size": 16,
        "mimeType": "application/pdf", "webUrl": None, "permissions": [], "retentionLabel": None, "fields": {}}
    assert state["ACME"]["kind"] == "folder" and state["ACME"]["mimeType"] is None
    assert httpx.get(f"{sim}/_sim/requests").json()["uploads"] == {"workspaces/ACME/sow.pdf": 2}


def fetch(graph: httpx.Client, url: str) -> httpx.Response:
    """GET a file's content as Graph serves it: a 302 to a pre-authenticated URL, followed without the token."""
    redirect = graph.get(url)
    if redirect.status_code != 302:
        return redirect
    return httpx.get(redirect.headers["location"])


def test_a_file_is_downloaded_with_its_content_type(graph: httpx.Client) -> None:
    acme = create(graph, "ACME").json()["id"]
    pdf = put_file(graph, "ACME/signed.pdf", b"%PDF-1.7 \x00\xff binary").json()
    notes = put_file(graph, "ACME/notes.txt", b"plain words", content_type=None).json()  # type from the name
    download = fetch(graph, f"/drives/workspaces/items/{pdf['id']}/content")
    assert download.status_code == 200
    assert download.content == b"%PDF-1.7 \x00\xff binary"
    assert download.headers["content-type"] == "application/pdf"
    by_path = fetch(graph, "/drives/workspaces/root:/ACME/notes.txt:/content")
    assert by_path.content == b"plain words" and by_path.headers["content-type"] == "text/plain"
    assert notes["file"]["mimeType"] == "text/plain"
    folder = fetch(graph, f"/drives/workspaces/items/{acme}/content")
    assert folder.status_code == 400 and folder.json()["error"]["code"] == "invalidRequest"
    missing = fetch(graph, "/drives/workspaces/items/01NOSUCHITEM/content")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "itemNotFound"
    again = graph.put(f"/drives/workspaces/items/{pdf['id']}/content", content=b"v2",
                      headers={"Content-Type": "application/pdf"})
    assert again.status_code == 200 and again.json()["id"] == pdf["id"]
    assert fetch(graph, f"/drives/workspaces/items/{pdf['id']}/content").content == b"v2"


def test_uploads_graph_would_refuse_are_refused(graph: httpx.Client, sim: str) -> None:
    create(graph, "ACME")
    create(graph, "Contracts", graph.get("/drives/workspaces/root:/ACME").json()["id"])
    file = put_file(graph, "ACME/sow.pdf", b"x").json()
    missing = put_file(graph, "ACME/Nope/sow.pdf", b"x")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "itemNotFound"
    under_file = graph.put(f"/drives/workspaces/items/{file['id']}:/inner.pdf:/content", content=b"x")
    assert under_file.status_code == 400
    assert create(graph, "Sub", file["id"]).status_code == 400  # a file cannot contain a folder either
    assert put_file(graph, "ACME/bad*name.pdf", b"x").status_code == 400
    onto_folder = put_file(graph, "ACME/contracts", b"x")
    assert onto_folder.status_code == 409 and onto_folder.json()["error"]["code"] == "nameAlreadyExists"
    assert put_file(graph, "ACME/sow.pdf", b"y", **{"@microsoft.graph.conflictBehavior": "fail"}).status_code == 409
    renamed = put_file(graph, "ACME/sow.pdf", b"z", **{"@microsoft.graph.conflictBehavior": "rename"})
    assert renamed.status_code == 201 and renamed.json()["name"] == "sow 1.pdf"
    assert fetch(graph, f"/drives/workspaces/items/{file['id']}/content").content == b"x"  # refusals kept it
    assert sorted(httpx.get(f"{sim}/_sim/state").json()["drives"]["workspaces"]["items"]) == [
        "ACME", "ACME/Contracts", "ACME/sow 1.pdf", "ACME/sow.pdf"]


def test_fields_labels_and_grants_work_on_files(graph: httpx.Client, sim: str) -> None:
    create(graph, "ACME")
    file = put_file(graph, "ACME/sow.pdf", b"x").json()["id"]
    url = f"/drives/workspaces/items/{file}"
    assert graph.patch(f"{url}/listItem/fields", json={"DocumentType": "SOW", "Signed": True}).status_code == 200
    assert graph.patch(f"{url}/retentionLabel", json={"name": "EU-10y"}).status_code == 201
    grant = graph.post(f"{url}/invite", json={"recipients": [{"alias": "Finance"}], "roles": ["read"]})
    assert grant.status_code == 200
    assert graph.get(f"{url}/listItem/fields").json()["DocumentType"] == "SOW"
    assert graph.get(f"{url}/retentionLabel").json()["name"] == "EU-10y"
    state = httpx.get(f"{sim}/_sim/state").json()["drives"]["workspaces"]["items"]["ACME/sow.pdf"]
    assert state["fields"] == {"DocumentType": "SOW", "Signed": True} and state["retentionLabel"] == "EU-10y"
    assert [p["group"] for p in state["permissions"]] == ["Finance"]


def test_delta_lists_every_item_then_only_what_changed_each_once(graph: httpx.Client) -> None:
    acme = create(graph, "ACME").json()["id"]
    sows = create(graph, "SOWs", acme).json()["id"]
    first = put_file(graph, "ACME/SOWs/a.pdf", b"a").json()["id"]
    second = put_file(graph, "ACME/SOWs/b.pdf", b"b").json()["id"]
    everything, pages = delta_pages(graph, "/drives/workspaces/root/delta")
    assert sorted(v["id"] for v in everything) == sorted([acme, sows, first, second])  # no root, each once
    assert [p.get("@odata.nextLink") for p in pages] == [None]
    files = {v["id"]: v for v in everything if "file" in v}
    assert files[first]["file"] == {"mimeType": "application/pdf"} and files[first]["size"] == 1
    assert files[first]["parentReference"] == {"driveId": "workspaces", "driveType": "documentLibrary", "id": sows}
    token = token_of(pages[-1])

    graph.patch(f"/drives/workspaces/items/{first}/listItem/fields", json={"Status": "Signed"})
    graph.patch(f"/drives/workspaces/items/{first}/listItem/fields", json={"Status": "Filed"})
    graph.patch(f"/drives/workspaces/items/{second}/retentionLabel", json={"name": "EU-10y"})
    changed, pages = delta_pages(graph, f"/drives/workspaces/root/delta?token={token}")
    assert [v["id"] for v in changed] == [first, second]  # twice changed, listed once, in change order
    assert changed[0]["eTag"] == graph.get(f"/drives/workspaces/items/{first}").json()["eTag"]
    assert delta_pages(graph, f"/drives/workspaces/root/delta?token={token_of(pages[-1])}")[0] == []


def test_delta_pages_follow_next_links_and_the_last_carries_the_delta_link(graph: httpx.Client) -> None:
    parent = create(graph, "Paged").json()["id"]
    ids = [parent] + [create(graph, f"F{index}", parent).json()["id"] for index in range(4)]
    for top in ("$top=2", "top=2"):
        values, pages = delta_pages(graph, f"/drives/workspaces/root/delta?{top}")
        assert len(pages) == 3 and [len(p["value"]) for p in pages] == [2, 2, 1]
        assert all("$skiptoken" in httpx.URL(p["@odata.nextLink"]).params for p in pages[:-1])
        assert all(p["@odata.nextLink"].startswith("http://") for p in pages[:-1])  # full URLs
        assert "@odata.deltaLink" not in pages[0] and "@odata.nextLink" not in pages[-1]
        assert sorted(v["id"] for v in values) == sorted(ids)


def test_delta_latest_starts_from_now(graph: httpx.Client) -> None:
    create(graph, "Before")
    latest = graph.get("/drives/workspaces/root/delta", params={"token": "latest"}).json()
    assert latest["value"] == [] and "@odata.nextLink" not in latest
    later_item = create(graph, "After").json()["id"]
    changed, _ = delta_pages(graph, f"/drives/workspaces/root/delta?token={token_of(latest)}")
    assert [v["id"] for v in changed] == [later_item]


def test_an_unknown_or_stale_delta_token_is_410_resync_required(graph: httpx.Client, sim: str) -> None:
    create(graph, "Item")
    token = token_of(graph.get("/drives/workspaces/root/delta").json())
    for bad in ("not-a-token", token[:-2], token_of(graph.get("/drives/archive/root/delta").json())):
        gone = graph.get("/drives/workspaces/root/delta", params={"token": bad})
        assert gone.status_code == 410
        error = gone.json()["error"]
        assert error["code"] == "resyncRequired" and error["innerError"]["code"] == "resyncChangesApplyDifferences"
        assert gone.headers["location"].endswith("/v1.0/drives/workspaces/root/delta")  # a fresh start
    httpx.post(f"{sim}/_sim/reset")  # tokens from before a reset are no longer known
    assert graph.get("/drives/workspaces/root/delta", params={"token": token}).status_code == 410
    assert graph.get("/drives/workspaces/root/delta", params={"$skiptoken": "x"}).status_code == 410


def test_deleted_items_are_gone_and_delta_reports_them_as_deleted(graph: httpx.Client, sim: str) -> None:
    acme = create(graph, "ACME").json()["id"]
    old = create(graph, "Old", acme).json()["id"]
    inside = put_file(graph, "ACME/Old/draft.pdf", b"draft").json()["id"]
    kept = put_file(graph, "ACME/keep.pdf", b"keep").json()["id"]
    token = token_of(graph.get("/drives/workspaces/root/delta").json())
    assert graph.delete(f"/drives/workspaces/items/{old}").status_code == 204  # with its subtree
    assert graph.get(f"/drives/workspaces/items/{old}").status_code == 404
    assert graph.get(f"/drives/workspaces/items/{inside}").status_code == 404
    assert graph.delete(f"/drives/workspaces/items/{old}").status_code == 404
    assert graph.delete("/drives/workspaces/items/root").status_code == 403
    changed, _ = delta_pages(graph, f"/drives/workspaces/root/delta?token={token}")
    assert [v["id"] for v in changed] == [inside, old, acme]  # children before their folder, then the parent
    assert changed[0]["deleted"] == {"state": "deleted"} and "name" not in changed[0]
    assert changed[0]["file"]["mimeType"] == "application/pdf" and "folder" in changed[1]
    assert "deleted" not in changed[2] and changed[2]["folder"] == {"childCount": 1}
    everything, _ = delta_pages(graph, "/drives/workspaces/root/delta")
    assert sorted(v["id"] for v in everything) == sorted([acme, kept])  # a fresh enumeration: no tombstones
    state = httpx.get(f"{sim}/_sim/state").json()["drives"]["workspaces"]
    assert sorted(state["items"]) == ["ACME", "ACME/keep.pdf"] and sorted(state["deleted"]) == sorted([old, inside])
    assert httpx.get(f"{sim}/_sim/requests").json()["deletes"] == {"workspaces/ACME/Old": 1}


def test_an_item_deleted_while_paging_a_full_enumeration_is_reported(graph: httpx.Client) -> None:
    ids = [create(graph, f"F{index}").json()["id"] for index in range(4)]
    first = graph.get("/drives/workspaces/root/delta?$top=2").json()
    assert [v["id"] for v in first["value"]] == ids[:2]
    graph.delete(f"/drives/workspaces/items/{ids[0]}")
    rest, pages = delta_pages(graph, first["@odata.nextLink"])
    assert [(v["id"], "deleted" in v) for v in rest] == [(ids[2], False), (ids[3], False), (ids[0], True)]
    assert "@odata.deltaLink" in pages[-1]


def test_uploads_and_deletes_are_notified(graph: httpx.Client) -> None:
    acme = create(graph, "ACME").json()["id"]
    receiver = Receiver()
    with serve_in_thread(receiver.app) as base:
        subscribe(graph, f"{base}/notify")
        token = token_of(graph.get("/drives/workspaces/root/delta", params={"token": "latest"}).json())
        file = put_file(graph, "ACME/sow.pdf", b"v1").json()["id"]
        wait_for(lambda: len(receiver.bodies) >= 1)
        put_file(graph, "ACME/sow.pdf", b"v2")
        wait_for(lambda: len(receiver.bodies) >= 2)
        graph.delete(f"/drives/workspaces/items/{file}")
        wait_for(lambda: len(receiver.bodies) >= 3)
        # A sentinel change after them: notifications go out in order, so once the simulator has delivered the
        # fourth, any further notification of the three changes above would have arrived before it.
        sentinel = create(graph, "Sentinel", acme).json()["id"]
        wait_for(lambda: len(receiver.bodies) >= 4)
    notifications = [n for body in receiver.bodies for n in parse_notifications(body)]
    assert [n.resource_id for n in notifications] == [None] * 4  # Graph names no item: delta does
    changed, _ = delta_pages(graph, f"/drives/workspaces/root/delta?token={token}")
    assert [(v["id"], "deleted" in v) for v in changed if v["id"] != acme] == [(file, True), (sentinel, False)]
    for notification in notifications:
        check_client_state(notification, ["state-42"])


def test_an_unacknowledged_notification_is_retried_with_backoff_for_four_hours_then_dropped() -> None:
    clock, seen = ManualClock(), []
    notifier = Notifier(clock=clock, transport=answering(lambda _: 503, clock, seen))
    try:
        notifier.submit("http://hub.test/notify", {"value": [{"id": "n-1"}]})
        run_schedule(notifier, clock)
        stats = notifier.stats()
    finally:
        notifier.close()
    times = [moment for moment, _ in seen]
    waits = gaps(times)
    assert len(times) > 5 and waits[:3] == pytest.approx([0.2, 0.4, 0.8]) and max(waits) == pytest.approx(1_800)
    assert times[-1] - times[0] <= 4 * HOUR_S < times[-1] + waits[-1] - times[0]  # the next one: past 4 hours
    assert (stats["failed"], stats["delivered"], stats["pending"], stats["attempted"]) == (1, 0, 0, len(times))
