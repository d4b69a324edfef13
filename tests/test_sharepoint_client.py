"""The Graph client against the simulator over real HTTP (and ``MockTransport`` for error mapping alone)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse

from connectors.http import CircuitBreaker, RetryPolicy
from connectors.sharepoint.client import DriveItem, GraphClient, ItemNotFound
from connectors.sharepoint.inbound import check_client_state, parse_notifications, validation_token
from connectors.sharepoint.simulator import SimulatorConfig, create_app
from hub.errors import UpstreamRejected, UpstreamUnavailable
from hub.ingress.server import serve_in_thread
from hub.settings import Settings, load_settings

TOKEN = "client-test-token"


def settings_for(base: str) -> Settings:
    """Hub settings pointing Graph at ``base``."""
    return load_settings({}, graph_url=f"{base}/v1.0", graph_token=TOKEN, graph_drive_id="workspaces")


@pytest.fixture
def sim() -> Iterator[str]:
    """The simulator's base URL."""
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN))) as url:
        yield url


@pytest.fixture
def graph(sim: str) -> Iterator[GraphClient]:
    """A client made from settings, as the hub makes it."""
    client = GraphClient.from_settings(settings_for(sim))
    yield client
    client.http.client.close()


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


class Receiver:
    """A notification endpoint: echoes the validation token (or not) and records notifications."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self.bodies: list[bytes] = []
        self.app = FastAPI()
        self.app.post("/graph")(self.receive)

    async def receive(self, request: Request) -> Response:
        """Answer one Graph POST."""
        token = validation_token(request.url.query)
        if token is not None:
            return PlainTextResponse(token) if self.echo else PlainTextResponse("nope")
        self.bodies.append(await request.body())
        return Response(status_code=202)


def test_a_subscription_is_validated_and_changes_are_notified_with_the_client_state(graph: GraphClient) -> None:
    receiver = Receiver(echo=True)
    expiration = datetime.now(UTC) + timedelta(days=2)
    with serve_in_thread(receiver.app) as base:
        subscription = graph.create_subscription("drives/workspaces/root", f"{base}/graph", "s3cret", expiration)
        folder = graph.ensure_folder("Watched")
        deadline = time.monotonic() + 5
        while not receiver.bodies and time.monotonic() < deadline:
            time.sleep(0.02)
    assert subscription.client_state == "s3cret" and subscription.change_type == "updated"
    assert abs((subscription.expiration - expiration).total_seconds()) < 1
    [notification] = parse_notifications(receiver.bodies[0])
    check_client_state(notification, ["s3cret"])
    assert (notification.subscription_id, notification.resource_id) == (subscription.id, folder.id)
    assert [s.id for s in graph.subscriptions()] == [subscription.id]


def test_a_subscription_whose_endpoint_does_not_echo_fails(graph: GraphClient) -> None:
    receiver = Receiver(echo=False)
    with serve_in_thread(receiver.app) as base, pytest.raises(UpstreamRejected, match="ValidationError"):
        graph.create_subscription("drives/workspaces/root", f"{base}/graph", "s", datetime.now(UTC) + timedelta(1))
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
