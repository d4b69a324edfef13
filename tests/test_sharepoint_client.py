"""The Graph client against the simulator over real HTTP (and ``MockTransport`` for error mapping alone).

Past 400 lines on purpose: every call of the client against the one simulator it is held to.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from actors.provisioning.actor import execute, read_state
from connectors.http import CircuitBreaker, RetryPolicy
from connectors.settings import GraphSettings
from connectors.sharepoint.client import DeltaResult, DeltaTokenExpired, DriveItem, GraphClient, ItemNotFound
from connectors.sharepoint.inbound import check_client_state, parse_notifications
from connectors.sharepoint.platform import GraphPlatform
from hub.errors import UpstreamRejected, UpstreamUnavailable
from hub.ingress.server import serve_in_thread
from hub.workspace import EnsureFolder, plan_workspace, reconcile
from simulators.sharepoint import SimulatorConfig, create_app
from tests.support.graph_receiver import Receiver
from tests.support.graph_tenant import BARE
from tests.support.rabbit import wait_until
from tests.test_provisioning_plan import POLICY, project

TOKEN = "client-test-token"
#: A tenant for tests of one call at a time: the drive's id is its name, the site grants nothing of its own
#: (an item's permissions are the invited ones), any field name is a column.
def settings_for(base: str) -> GraphSettings:
    """Hub settings pointing Graph at ``base``."""
    return GraphSettings(url=f"{base}/v1.0", token=SecretStr(TOKEN), drive_id="workspaces")


@pytest.fixture
def sim() -> Iterator[str]:
    """The simulator's base URL (its drive addressed by name, a site granting nothing of its own, any field)."""
    # Its notification receivers are plain http on loopback: the simulator's test exception.
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN, http_notification_hosts=frozenset({"127.0.0.1"}),
                                                    **BARE))) as url:
        yield url


@pytest.fixture
def graph(sim: str) -> Iterator[GraphClient]:
    """A client made from settings, as the hub makes it."""
    client = GraphClient.from_settings(settings_for(sim))
    yield client
    client.close()


def sim_json(sim: str, what: str) -> Any:
    """An admin view of the simulator: ``state`` or ``requests``."""
    return httpx.get(f"{sim}/_sim/{what}").json()


def items(sim: str) -> dict[str, Any]:
    """The simulator's items of the ``workspaces`` drive, by path."""
    found: dict[str, Any] = sim_json(sim, "state")["drives"]["workspaces"]["items"]
    return found


def set_faults(sim: str, **plan: Any) -> None:
    """Replace the simulator's fault plan."""
    httpx.put(f"{sim}/_sim/faults", json=plan).raise_for_status()


Recording = Callable[..., GraphClient]


@pytest.fixture
def recording(sim: str) -> Iterator[Recording]:
    """Makes clients that record each request they send (and may act just before one); closes them."""
    made: list[httpx.Client] = []

    def make(sent: list[httpx.Request], *, read_timeout_s: float = 5.0,
             before: Callable[[httpx.Request], None] | None = None, **options: Any) -> GraphClient:
        def hook(request: httpx.Request) -> None:
            sent.append(request)
            if before is not None:
                before(request)
        client = httpx.Client(timeout=httpx.Timeout(read_timeout_s, connect=2.0), event_hooks={"request": [hook]})
        made.append(client)
        return GraphClient.from_settings(settings_for(sim), client=client, **options)

    yield make
    for client in made:
        client.close()


def test_ensure_folder_builds_the_tree_once_however_often_it_runs(sim: str, graph: GraphClient) -> None:
    paths = [f"ACME-1001/{name}" for name in ("Contracts", "SOWs", "Deliverables", "Correspondence", "Invoices")]
    first = [graph.ensure_folder(p) for p in paths]
    again = [graph.ensure_folder(p.upper()) for p in reversed(paths)]
    assert {f.id for f in first} == {f.id for f in again}
    assert first[0].path == "ACME-1001/Contracts" and first[0].is_folder
    assert first[0].web_url == "https://sim.sharepoint.example/sites/hub/workspaces/ACME-1001/Contracts"
    counts = sim_json(sim, "requests")
    assert counts["creates"] == {"workspaces/ACME-1001": 1, **{f"workspaces/{p}": 1 for p in paths}}
    assert counts["conflicts"] == {}
    assert sorted(items(sim)) == sorted(["ACME-1001", *paths])


def test_a_folder_created_by_someone_else_meanwhile_is_adopted_after_the_409(sim: str, recording: Recording
                                                                            ) -> None:
    rival: dict[str, str] = {}

    def someone_else_creates_it_first(request: httpx.Request) -> None:
        if request.method == "POST" and not rival:
            other = httpx.post(f"{sim}/v1.0/drives/workspaces/root/children", json={"name": "Raced", "folder": {}},
                               headers={"Authorization": f"Bearer {TOKEN}"})
            rival["id"] = other.json()["id"]

    client = recording([], before=someone_else_creates_it_first)
    folder = client.ensure_folder("Raced")
    assert folder.id == rival["id"]
    assert sim_json(sim, "requests")["conflicts"] == {"workspaces/Raced": 1}
    assert sim_json(sim, "requests")["creates"] == {"workspaces/Raced": 1}


def test_a_child_folder_of_a_known_parent_is_one_request_and_an_existing_one_is_adopted(
        sim: str, graph: GraphClient, recording: Recording) -> None:
    parent = graph.ensure_folder("ACME-1001")
    sent: list[httpx.Request] = []
    client = recording(sent)
    made = client.ensure_child_folder(parent.id, "SOWs", "ACME-1001/SOWs")
    assert [r.method for r in sent] == ["POST"] and made.path == "ACME-1001/SOWs" and made.is_folder
    again = client.ensure_child_folder(parent.id, "sows", "ACME-1001/sows")  # 409, then looked up
    assert again.id == made.id and [r.method for r in sent] == ["POST", "POST", "GET"]
    graph.upload("ACME-1001", "Notes", b"not a folder")
    with pytest.raises(UpstreamRejected, match="not a folder"):
        client.ensure_child_folder(parent.id, "Notes", "ACME-1001/Notes")
    assert sim_json(sim, "requests")["creates"] == {"workspaces/ACME-1001": 1, "workspaces/ACME-1001/SOWs": 1}


def test_provisioning_creates_each_missing_folder_of_a_plan_in_one_request_below_the_parent_it_read(
        sim: str, graph: GraphClient, recording: Recording) -> None:
    """The actor reads each of the plan's folders once; a missing one is created in its parent, not looked up
    again segment by segment (at 10,000 projects those lookups were most of the hub's calls)."""
    plan = plan_workspace(project(project_code="ACME-1001"), POLICY)
    graph.ensure_folder(plan.path.rpartition("/")[0])  # the client's folder, from an earlier engagement
    state, ids = read_state(GraphPlatform(graph), plan)
    sent: list[httpx.Request] = []
    client = recording(sent)
    steps = [step for step in reconcile(state, plan) if isinstance(step, EnsureFolder)]
    for step in steps:
        execute(GraphPlatform(client), plan, step, ids)
    assert [step.path for step in steps] == [plan.path, *plan.folders]
    assert [r.method for r in sent] == ["POST"] * len(steps)
    assert {path: ids[path] for path in plan.folders} == {path: items(sim)[path]["id"] for path in plan.folders}


def test_children_are_read_across_every_page(sim: str, graph: GraphClient, recording: Recording) -> None:
    parent = graph.ensure_folder("Many")
    for index in range(7):
        graph.ensure_folder(f"Many/Sub-{index}")
    sent: list[httpx.Request] = []
    children = recording(sent).children(parent.id, page_size=3)
    assert [c.name for c in children] == [f"Sub-{i}" for i in range(7)]
    # one request, then two more pages through @odata.nextLink
    assert ["skiptoken" in str(r.url) for r in sent] == [False, True, True]


def test_lookups_say_none_or_item_not_found(graph: GraphClient) -> None:
    assert graph.get_by_path("Nowhere/Deeper") is None
    assert graph.get_by_path("").is_folder  # type: ignore[union-attr]  # the drive's root
    with pytest.raises(ItemNotFound, match="itemNotFound"):
        graph.get_item("01NOSUCHITEM")
    with pytest.raises(UpstreamRejected, match="invalid SharePoint folder name"):
        graph.ensure_folder("ACME/Bad:Name")


def test_an_item_is_deleted_once_and_deleting_it_again_is_not_an_error(graph: GraphClient) -> None:
    folder = graph.ensure_folder("ACME/Change Orders")
    draft = graph.upload("ACME/Change Orders", "CO-1.docx", b"draft")
    graph.delete_item(draft.id)
    assert graph.get_by_path("ACME/Change Orders/CO-1.docx") is None
    assert [child.id for child in graph.children(folder.id)] == []
    graph.delete_item(draft.id)  # a retry after a lost answer: already gone


def test_grants_are_idempotent_converge_on_one_role_and_can_be_revoked(sim: str, graph: GraphClient) -> None:
    folder = graph.ensure_folder("Matter-77")
    first = graph.ensure_grant(folder.id, "Legal-NA", "read")
    assert graph.ensure_grant(folder.id, "Legal-NA", "read").id == first.id
    assert graph.ensure_grant(folder.id, "legal-na@sim.sharepoint.example", "read").id == first.id
    assert sim_json(sim, "requests")["invites"] == {"workspaces/Matter-77": 1}
    upgraded = graph.ensure_grant(folder.id, "Legal-NA", "write")
    graph.ensure_grant(folder.id, "Strategy-EU", "read")
    assert items(sim)["Matter-77"]["permissions"] == [
        {"id": upgraded.id, "group": "Legal-NA", "roles": ["write"]},
        {"id": graph.grants(folder.id)[1].id, "group": "Strategy-EU", "roles": ["read"]}]
    assert graph.revoke_grant(folder.id, "Legal-NA") == 1
    assert graph.revoke_grant(folder.id, "Legal-NA") == 0
    assert [p.principals()[0].display_name for p in graph.grants(folder.id)] == ["Strategy-EU"]


def test_an_unknown_group_is_rejected(graph: GraphClient) -> None:
    folder = graph.ensure_folder("Matter-78")
    with pytest.raises(UpstreamRejected, match="invalidRequest"):
        graph.ensure_grant(folder.id, "Conflicted-Team", "read")


def test_a_retention_label_is_applied_once(sim: str, graph: GraphClient) -> None:
    folder = graph.ensure_folder("Labelled")
    assert graph.retention_label(folder.id).name is None
    assert graph.ensure_retention_label(folder.id, "EU-10y").name == "EU-10y"
    assert graph.ensure_retention_label(folder.id, "EU-10y").name == "EU-10y"
    assert sim_json(sim, "requests")["calls"]["PATCH /drives/{drive_id}/items/{item_id}/retentionLabel"] == 1
    assert items(sim)["Labelled"]["retentionLabel"] == "EU-10y"


def test_only_differing_fields_are_patched(sim: str, recording: Recording) -> None:
    sent: list[httpx.Request] = []
    graph = recording(sent)
    folder = graph.ensure_folder("Fields")
    graph.ensure_fields(folder.id, {"Client": "ACME", "Region": "EU"})
    merged = graph.ensure_fields(folder.id, {"Client": "ACME", "Region": "NA"})
    graph.ensure_fields(folder.id, {"Client": "ACME"})
    patches = [json.loads(r.content) for r in sent if r.method == "PATCH"]
    assert patches == [{"Client": "ACME", "Region": "EU"}, {"Region": "NA"}]
    assert merged["Region"] == "NA"
    assert items(sim)["Fields"]["fields"] == {"Client": "ACME", "Region": "NA"}


def test_under_5xx_and_throttling_each_path_ends_with_one_folder_and_one_grant(sim: str, recording: Recording
                                                                                 ) -> None:
    waits: list[float] = []
    graph = recording([], retry=RetryPolicy(attempts=3, backoff_s=0.01), sleep=waits.append,
                      breaker=CircuitBreaker(threshold=1_000))
    set_faults(sim, error_rate=0.2, throttle_rate=0.2, retry_after_s=0, seed=11)
    paths = [f"Engagement-{i:02d}/Contracts" for i in range(30)]
    failures = 0
    for path in paths:
        for _ in range(50):  # as an actor's retries would
            try:
                graph.ensure_grant(graph.ensure_folder(path).id, "Strategy-EU", "write")
                break
            except UpstreamUnavailable:
                failures += 1
        else:
            pytest.fail(f"{path} never succeeded")
    injected = sim_json(sim, "state")["faults"]["injected"]
    set_faults(sim)
    assert injected["error"] > 10 and injected["throttle"] > 10 and failures > 0
    state, counts = items(sim), sim_json(sim, "requests")
    creates = counts["creates"]
    assert counts["invites"] == {f"workspaces/{p}": 1 for p in paths}  # injected faults commit nothing
    assert all(creates[f"workspaces/{p}"] == 1 and creates[f"workspaces/{p.split('/')[0]}"] == 1 for p in paths)
    assert len(state) == 60
    assert all(state[p]["permissions"] == [{"id": state[p]["permissions"][0]["id"], "group": "Strategy-EU",
                                            "roles": ["write"]}] for p in paths)


def test_throttling_honours_retry_after_then_raises_a_retryable_error(sim: str, recording: Recording) -> None:
    waits: list[float] = []
    graph = recording([], sleep=waits.append)
    set_faults(sim, throttle_rate=1.0, retry_after_s=2)
    with pytest.raises(UpstreamUnavailable) as raised:
        graph.get_by_path("Anything")
    assert waits == [2.0, 2.0] and raised.value.retry_after == 2.0


def seed_for(*ghosted: bool, rate: float = 0.5) -> int:
    """A seed whose first draws ghost exactly the requests marked True (one draw per request)."""
    def fits(seed: int) -> bool:
        draws = random.Random(seed)
        return all((draws.random() < rate) == ghost for ghost in ghosted)
    return next(s for s in range(10_000) if fits(s))


def test_a_ghost_create_is_retried_in_the_call_and_leaves_one_folder(sim: str, recording: Recording) -> None:
    graph = recording([], read_timeout_s=1.0)
    set_faults(sim, ghost_rate=0.5, seed=seed_for(False, True))  # the lookup answers, the create is lost
    # The create timed out but was committed; its retry answers 409 and the folder is looked up.
    folder = graph.ensure_folder("Ghosted")
    set_faults(sim)
    assert folder.id == items(sim)["Ghosted"]["id"]
    assert sim_json(sim, "requests")["creates"] == {"workspaces/Ghosted": 1}


def test_a_ghost_grant_then_a_retry_leaves_one_permission(sim: str, graph: GraphClient, recording: Recording
                                                          ) -> None:
    folder = graph.ensure_folder("Ghost-Grant")
    ghosting = recording([], read_timeout_s=1.0)
    set_faults(sim, ghost_rate=0.5, seed=seed_for(False, True))  # the listing answers, the invite is lost
    with pytest.raises(UpstreamUnavailable):
        ghosting.ensure_grant(folder.id, "Finance", "read")
    set_faults(sim)
    graph.ensure_grant(folder.id, "Finance", "read")
    assert [p["group"] for p in items(sim)["Ghost-Grant"]["permissions"]] == ["Finance"]
    assert sim_json(sim, "requests")["invites"] == {"workspaces/Ghost-Grant": 1}  # the retry did not invite


def test_a_subscription_is_validated_and_changes_are_notified_with_the_client_state(graph: GraphClient) -> None:
    receiver = Receiver(echo=True)
    expiration = datetime.now(UTC) + timedelta(days=2)
    with serve_in_thread(receiver.app) as base:
        subscription = graph.create_subscription("drives/workspaces/root", f"{base}/notify", "s3cret", expiration)
        folder = graph.ensure_folder("Watched")
        assert wait_until(lambda: bool(receiver.bodies), timeout=30)
    assert subscription.client_state == "s3cret" and subscription.change_type == "updated"
    assert abs((subscription.expiration - expiration).total_seconds()) < 1
    [notification] = parse_notifications(receiver.bodies[0])
    check_client_state(notification, ["s3cret"])
    # As Graph's driveItem notifications: no item; the drive's delta says what changed.
    assert (notification.subscription_id, notification.resource_id) == (subscription.id, None)
    assert folder.id in [i.id for i in graph.delta().items]
    assert [s.id for s in graph.subscriptions()] == [subscription.id]


def test_a_subscription_whose_endpoint_does_not_echo_fails(graph: GraphClient) -> None:
    receiver = Receiver(echo=False)
    with serve_in_thread(receiver.app) as base, pytest.raises(UpstreamRejected, match="ValidationError"):
        graph.create_subscription("drives/workspaces/root", f"{base}/notify", "s", datetime.now(UTC) + timedelta(1))
    assert graph.subscriptions() == []


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> GraphClient:
    """A client on ``MockTransport``, built from settings as in production (no sockets to close)."""
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return GraphClient.from_settings(settings_for("https://graph.example"), client=client, sleep=lambda _: None)


def graph_error(status: int, code: str, **headers: str) -> httpx.Response:
    """A Graph error answer."""
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} happened"}}, headers=headers)


def test_the_injected_client_gets_the_base_url_and_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "1", "name": "A B", "folder": {"childCount": 0}})
    item = mock_client(handler).get_by_path("A B#1")
    assert isinstance(item, DriveItem)
    assert str(seen[0].url) == "https://graph.example/v1.0/drives/workspaces/root:/A%20B%231"
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(("answer", "error", "match"), [
    (graph_error(404, "itemNotFound"), ItemNotFound, "404 itemNotFound: itemNotFound happened"),
    (graph_error(403, "accessDenied"), UpstreamRejected, "403 accessDenied"),
    (graph_error(401, "InvalidAuthenticationToken"), UpstreamRejected, "InvalidAuthenticationToken"),
    (httpx.Response(400, text="<html>bad</html>"), UpstreamRejected, "400 unknown: <html>bad</html>"),
    (graph_error(503, "serviceNotAvailable", **{"Retry-After": "7"}), UpstreamUnavailable, "503"),
    (graph_error(429, "activityLimitReached", **{"Retry-After": "1"}), UpstreamUnavailable, "429"),
])
def test_graph_answers_map_onto_the_hub_error_tree(answer: httpx.Response, error: type[Exception],
                                                   match: str) -> None:
    graph = mock_client(lambda _: answer)
    with pytest.raises(error, match=match) as raised:
        graph.get_item("x")
    if answer.status_code == 503:
        assert isinstance(raised.value, UpstreamUnavailable) and raised.value.retry_after == 7.0


def test_a_409_whose_folder_then_vanished_is_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(409, "nameAlreadyExists") if request.method == "POST" else graph_error(404, "itemNotFound")
    with pytest.raises(UpstreamUnavailable, match="cannot be found"):
        mock_client(handler).ensure_folder("Flaky")


def delete_item(sim: str, item_id: str) -> None:
    """Delete an item the way another user would, straight on the simulator."""
    httpx.delete(f"{sim}/v1.0/drives/workspaces/items/{item_id}",
                 headers={"Authorization": f"Bearer {TOKEN}"}).raise_for_status()


def test_an_upload_creates_the_file_once_and_a_repeat_replaces_its_content(sim: str, graph: GraphClient) -> None:
    folder = graph.ensure_folder("ACME/ENG-1/SOWs")
    first = graph.upload("ACME/ENG-1/SOWs", "SOW signed.pdf", b"%PDF v1", content_type="application/pdf")
    again = graph.upload("ACME/ENG-1/SOWs", "SOW signed.pdf", b"%PDF v1", content_type="application/pdf")
    replaced = graph.upload("acme/eng-1/sows", "sow SIGNED.pdf", b"%PDF version 2", content_type="application/pdf")
    assert first.id == again.id == replaced.id
    assert len({first.e_tag, again.e_tag, replaced.e_tag}) == 3  # each upload is a new version
    assert replaced.is_file and not replaced.is_folder and not replaced.is_deleted
    assert replaced.file is not None and replaced.file.mime_type == "application/pdf" and replaced.size == 14
    assert replaced.path == "ACME/ENG-1/SOWs/SOW signed.pdf" and replaced.name == "SOW signed.pdf"
    assert [c.id for c in graph.children(folder.id)] == [first.id]
    assert graph.download(first.id) == b"%PDF version 2"
    assert sim_json(sim, "requests")["uploads"] == {"workspaces/ACME/ENG-1/SOWs/SOW signed.pdf": 3}
    root_file = graph.upload("", "readme.txt", b"hello", content_type="text/plain")
    assert root_file.path == "readme.txt" and graph.get_by_path("readme.txt").id == root_file.id  # type: ignore[union-attr]


def test_an_upload_below_a_folders_id_needs_no_path_and_goes_through_a_session_past_the_limit(
        sim: str, graph: GraphClient) -> None:
    folder = graph.ensure_folder("ACME/ENG-1/SOWs")
    small = graph.upload_into(folder.id, "SOW signed.pdf", b"%PDF v1", content_type="application/pdf")
    again = graph.upload("ACME/ENG-1/SOWs", "SOW signed.pdf", b"%PDF v2", content_type="application/pdf")
    large = bytes(range(256)) * (4 * 1024 * 1024 // 256) + b"!"  # past the 4 MB simple-upload limit
    big = graph.upload_into(folder.id, "drawings.zip", large)
    assert small.id == again.id and small.file is not None and small.file.mime_type == "application/pdf"
    assert graph.download(big.id) == large and sorted(c.name for c in graph.children(folder.id)) == [
        "SOW signed.pdf", "drawings.zip"]
    calls = sim_json(sim, "requests")["calls"]
    assert calls["POST /drives/{drive_id}/items/{reference:path}/createUploadSession"] == 1  # below the folder's id
    assert calls["PUT /drives/{drive_id}/items/{reference:path}"] == 1  # the small file, in one PUT
    with pytest.raises(ItemNotFound):
        graph.upload_into("01NOSUCHFOLDER", "sow.pdf", b"x")
    with pytest.raises(UpstreamRejected, match="invalid SharePoint file name"):
        graph.upload_into(folder.id, "a:b.pdf", b"x")


def test_an_upload_into_a_missing_folder_or_onto_a_folder_is_rejected(sim: str, graph: GraphClient) -> None:
    graph.ensure_folder("ACME/Contracts")
    with pytest.raises(ItemNotFound, match="itemNotFound"):
        graph.upload("ACME/Missing", "sow.pdf", b"x")
    with pytest.raises(UpstreamRejected, match="nameAlreadyExists"):
        graph.upload("ACME", "Contracts", b"x")
    for bad in ("a:b.pdf", "trailing.", "", "sub/name.pdf"):
        with pytest.raises(UpstreamRejected, match="invalid SharePoint file name"):
            graph.upload("ACME", bad, b"x")
    assert sorted(items(sim)) == ["ACME", "ACME/Contracts"]


def test_a_download_of_a_folder_or_of_nothing_is_rejected(graph: GraphClient) -> None:
    folder = graph.ensure_folder("ACME")
    with pytest.raises(UpstreamRejected, match="400 invalidRequest"):
        graph.download(folder.id)
    with pytest.raises(ItemNotFound):
        graph.download("01NOSUCHITEM")


def test_a_ghost_upload_is_retried_in_the_call_and_leaves_one_file(sim: str, graph: GraphClient,
                                                                   recording: Recording) -> None:
    graph.ensure_folder("Ghosted")
    sent: list[httpx.Request] = []
    ghosting = recording(sent, read_timeout_s=1.0)
    set_faults(sim, ghost_rate=0.5, seed=seed_for(True, False))  # the first PUT commits but its answer is lost
    uploaded = ghosting.upload("Ghosted", "sow.pdf", b"signed", content_type="application/pdf")
    set_faults(sim)
    assert [r.method for r in sent] == ["PUT", "PUT"] and sent[1].content == b"signed"
    assert uploaded.id == items(sim)["Ghosted/sow.pdf"]["id"]
    assert sorted(items(sim)) == ["Ghosted", "Ghosted/sow.pdf"]
    assert graph.download(uploaded.id) == b"signed"


def test_fields_and_retention_labels_work_on_files(sim: str, graph: GraphClient) -> None:
    graph.ensure_folder("ACME")
    file = graph.upload("ACME", "sow.pdf", b"x", content_type="application/pdf")
    graph.ensure_fields(file.id, {"DocumentType": "SOW", "Envelope": "env-1"})
    graph.ensure_retention_label(file.id, "EU-10y")
    assert graph.fields(file.id)["Envelope"] == "env-1"
    assert graph.retention_label(file.id).name == "EU-10y"
    assert items(sim)["ACME/sow.pdf"]["fields"] == {"DocumentType": "SOW", "Envelope": "env-1"}
    assert items(sim)["ACME/sow.pdf"]["retentionLabel"] == "EU-10y"


def test_delta_reads_everything_then_only_the_changed_items_once_each(graph: GraphClient) -> None:
    folder = graph.ensure_folder("ACME/SOWs")
    first = graph.upload("ACME/SOWs", "a.pdf", b"a", content_type="application/pdf")
    second = graph.upload("ACME/SOWs", "b.pdf", b"b", content_type="application/pdf")
    untouched = graph.upload("ACME/SOWs", "c.pdf", b"c", content_type="application/pdf")
    everything = graph.delta()
    assert isinstance(everything, DeltaResult) and everything.token
    assert sorted(i.id for i in everything.items) == sorted(
        [graph.get_by_path("ACME").id, folder.id, first.id, second.id, untouched.id])  # type: ignore[union-attr]
    by_id = {i.id: i for i in everything.items}
    assert by_id[first.id].is_file and by_id[first.id].size == 1 and by_id[folder.id].is_folder
    assert by_id[first.id].path is None  # delta gives no parentReference.path: track items by id
    assert by_id[first.id].parent_reference.id == folder.id  # type: ignore[union-attr]

    graph.ensure_fields(first.id, {"Status": "Signed"})
    graph.ensure_fields(first.id, {"Status": "Filed"})
    graph.ensure_retention_label(second.id, "EU-10y")
    changed = graph.delta(everything.token)
    assert [i.id for i in changed.items] == [first.id, second.id]
    assert changed.items[0].e_tag == graph.get_item(first.id).e_tag  # the current state
    assert graph.delta(changed.token).items == []


def test_delta_follows_every_next_link() -> None:
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN, page_size=2, **BARE))) as base:
        client = httpx.Client(timeout=5.0)
        sent: list[httpx.Request] = []
        client.event_hooks["request"] = [sent.append]
        graph = GraphClient.from_settings(settings_for(base), client=client)
        graph.ensure_folder("Paged")
        uploaded = [graph.upload("Paged", f"doc-{index}.pdf", b"x").id for index in range(4)]
        sent.clear()
        result = graph.delta()
        client.close()
    assert sorted(i.id for i in result.items if i.is_file) == sorted(uploaded)
    assert len(result.items) == 5
    assert ["skiptoken" in str(r.url) for r in sent] == [False, True, True]


def test_delta_latest_gives_only_later_changes(graph: GraphClient) -> None:
    graph.ensure_folder("Before")
    latest = graph.delta("latest")
    assert latest.items == [] and latest.token != "latest"
    file = graph.upload("Before", "after.pdf", b"x")
    assert [i.id for i in graph.delta(latest.token).items if i.is_file] == [file.id]


def test_an_unknown_or_stale_delta_token_raises_delta_token_expired(sim: str, graph: GraphClient) -> None:
    graph.ensure_folder("ACME")
    token = graph.delta().token
    with pytest.raises(DeltaTokenExpired, match="410 resyncRequired") as raised:
        graph.delta("made-up")
    assert isinstance(raised.value, UpstreamRejected) and not raised.value.retryable
    httpx.post(f"{sim}/_sim/reset").raise_for_status()
    with pytest.raises(DeltaTokenExpired):
        graph.delta(token)
    graph.ensure_folder("Fresh")
    assert [i.name for i in graph.delta(None).items] == ["Fresh"]  # the caller starts over


def test_deleted_items_come_back_from_delta_as_deleted(sim: str, graph: GraphClient) -> None:
    graph.ensure_folder("ACME/Old")
    draft = graph.upload("ACME/Old", "draft.pdf", b"draft")
    old = graph.get_by_path("ACME/Old")
    assert old is not None
    token = graph.delta().token
    delete_item(sim, old.id)
    changed = graph.delta(token)
    deleted = [i for i in changed.items if i.is_deleted]
    assert [i.id for i in deleted] == [draft.id, old.id]
    assert deleted[0].is_file and deleted[1].is_folder and deleted[0].name == ""  # SharePoint omits the name
    assert [i.name for i in changed.items if not i.is_deleted] == ["ACME"]  # its child count changed


def test_an_upload_is_notified(graph: GraphClient) -> None:
    receiver = Receiver(echo=True)
    graph.ensure_folder("Watched")
    with serve_in_thread(receiver.app) as base:
        graph.create_subscription("drives/workspaces/root", f"{base}/notify", "s3cret",
                                  datetime.now(UTC) + timedelta(days=1))
        file = graph.upload("Watched", "sow.pdf", b"v1")
        assert wait_until(lambda: bool(receiver.bodies), timeout=30)
    [notification] = parse_notifications(receiver.bodies[0])
    check_client_state(notification, ["s3cret"])
    assert notification.resource_id is None and file.id in [i.id for i in graph.delta().items]


def test_a_download_follows_graphs_redirect_without_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "graph.example":
            return httpx.Response(302, headers={"Location": "https://tenant.sharepoint.example/dl?tempauth=abc"})
        return httpx.Response(200, content=b"%PDF", headers={"Content-Type": "application/pdf"})
    assert mock_client(handler).download("01FILE") == b"%PDF"
    assert str(seen[0].url) == "https://graph.example/v1.0/drives/workspaces/items/01FILE/content"
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in seen[1].headers


def test_an_upload_sends_the_raw_bytes_with_its_content_type() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "1", "name": "a b.pdf", "file": {"mimeType": "application/pdf"},
                                         "size": 3, "parentReference": {"id": "p", "path": "/drives/w/root:/X"}})
    item = mock_client(handler).upload("X", "a b.pdf", b"\x00\x01\x02", content_type="application/pdf")
    assert seen[0].method == "PUT" and seen[0].content == b"\x00\x01\x02"
    assert seen[0].headers["content-type"] == "application/pdf"
    assert seen[0].url.raw_path.split(b"?")[0] == b"/v1.0/drives/workspaces/root:/X/a%20b.pdf:/content"
    assert seen[0].url.params["@microsoft.graph.conflictBehavior"] == "replace"
    assert item.is_file and item.path == "X/a b.pdf"


@pytest.mark.parametrize("link", ["https://graph.example/v1.0/drives/w/root/delta?token=abc%3D%3D",
                                  "https://graph.example/v1.0/drives/w/root/delta(token='abc==')",
                                  "https://graph.example/v1.0/drives/w/root/delta?(token='abc==')"])
def test_the_delta_token_is_read_from_either_form_of_delta_link(link: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [{"id": "9", "deleted": {"state": "deleted"}}],
                                         "@odata.deltaLink": link})
    result = mock_client(handler).delta("old")
    assert result.token == "abc==" and result.items[0].is_deleted


def test_a_410_from_delta_is_delta_token_expired_and_a_page_without_links_is_rejected() -> None:
    gone = mock_client(lambda _: graph_error(410, "resyncRequired", Location="https://graph.example/x"))
    with pytest.raises(DeltaTokenExpired, match="resyncRequired"):
        gone.delta("t")
    linkless = mock_client(lambda _: httpx.Response(200, json={"value": []}))
    with pytest.raises(UpstreamRejected, match="no deltaLink"):
        linkless.delta()
