"""Graph change notifications as SharePoint sends them: an https notification URL (the validation handshake
and the notifications over TLS, checked against the endpoint's certificate), a drive's root only, and a
notification naming no item, so master data finds the changed workspaces through the drive's delta."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from actors.document_intake import SubscriptionKeeper
from actors.master_data import DEFAULT_MAPPING, MasterData, MemoryDeltaCursor, MemoryMasterDataStore
from actors.master_data import load_master_data_mapping as load_mapping
from connectors.platform import Platforms
from connectors.settings import GraphSettings
from connectors.sharepoint.client import GraphClient, Subscription
from connectors.sharepoint.inbound import parse_notifications
from connectors.sharepoint.platform import GraphPlatform
from hub.actor import RecordingEmitter, unit_context
from hub.crosswalk import SqlCrosswalk
from hub.db import connect_database, upgrade
from hub.events import make_event
from hub.ingress.server import serve_in_thread
from hub.registry import SchemaRegistry
from hub.store import MemoryLocks
from simulators.sharepoint import SimulatorConfig, create_app
from tests.support.graph_receiver import Receiver
from tests.support.graph_tenant import BARE
from tests.support.rabbit import wait_until
from tests.support.tls import TlsFiles, loopback_tls

TOKEN = "notify-test-token"
REGISTRY = SchemaRegistry.load()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    """An authority made for this test and a loopback server certificate it signed."""
    return loopback_tls(tmp_path)


def later(minutes: int = 60) -> str:
    """An expiration ``minutes`` from now."""
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def subscribe(graph: httpx.Client, url: str, resource: str = "drives/workspaces/root") -> httpx.Response:
    """POST a subscription for ``updated`` changes."""
    return graph.post("/subscriptions", json={"changeType": "updated", "notificationUrl": url, "resource": resource,
                                              "expirationDateTime": later(), "clientState": "state-7"})


@contextmanager
def simulator(config: SimulatorConfig) -> Iterator[httpx.Client]:
    """A raw client on a running simulator."""
    with serve_in_thread(create_app(config)) as sim, \
            httpx.Client(base_url=f"{sim}/v1.0", headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def test_a_subscription_needs_an_https_url_validated_over_tls_and_notifications_name_no_item(tls: TlsFiles) -> None:
    receiver = Receiver()
    # The simulator stops first: its notifier closes its TLS connections before the endpoint stops.
    with serve_in_thread(receiver.app, tls=tls.server) as base, \
            simulator(SimulatorConfig(token=TOKEN, notify_ca_file=tls.ca, **BARE)) as graph:
        assert base.startswith("https://")
        plain = subscribe(graph, f"http{base.removeprefix('https')}/notify")
        assert plain.status_code == 400 and plain.json()["error"]["code"] == "InvalidRequest"
        folder = graph.post("/drives/workspaces/root/children", json={"name": "ACME", "folder": {}}).json()
        below = subscribe(graph, f"{base}/notify", resource=f"drives/workspaces/items/{folder['id']}")
        assert below.status_code == 400 and "is not supported" in below.json()["error"]["message"]
        created = subscribe(graph, f"{base}/notify")
        assert created.status_code == 201, created.text
        graph.patch(f"/drives/workspaces/items/{folder['id']}/listItem/fields", json={"ClientId": "ACME"})
        assert wait_until(lambda: bool(receiver.bodies), timeout=30)
    [notification] = json.loads(receiver.bodies[0])["value"]
    assert notification["resourceData"] == {"@odata.type": "#Microsoft.Graph.DriveItem"}
    assert notification["resource"] == "drives/workspaces/root" and notification["clientState"] == "state-7"
    assert parse_notifications(receiver.bodies[0])[0].resource_id is None


def test_an_endpoint_whose_certificate_the_simulator_does_not_trust_fails_validation(tls: TlsFiles,
                                                                                    tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    stranger = loopback_tls(tmp_path / "other")  # another authority's certificate
    receiver = Receiver()
    with serve_in_thread(receiver.app, tls=stranger.server) as base, \
            simulator(SimulatorConfig(token=TOKEN, notify_ca_file=tls.ca, **BARE)) as graph:
        refused = subscribe(graph, f"{base}/notify")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ValidationError"


def notified() -> dict[str, Any]:
    """A ``dms.change.notified.v1`` as the ingress makes it from a Graph driveItem notification: no item."""
    return {"platform": "sharepoint", "change_type": "updated", "resource": "drives/workspaces/root",
            "resource_id": None, "subscription_id": "s-1", "tenant_id": None, "notified_at": datetime.now(UTC)}


@pytest.fixture
def crosswalk() -> Iterator[SqlCrosswalk]:
    """The crosswalk on the embedded mode's SQLite database."""
    db = connect_database("", prefix="t", embedded=True)
    upgrade(db, [])
    yield SqlCrosswalk(db)
    db.close()


def test_master_data_finds_the_changed_workspace_through_delta_when_the_notification_names_none(
        crosswalk: SqlCrosswalk) -> None:
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN, **BARE))) as sim:
        graph = GraphClient.from_settings(GraphSettings(url=f"{sim}/v1.0", token=SecretStr(TOKEN),
                                                        drive_id="workspaces"))
        raw = httpx.Client(base_url=f"{sim}/v1.0", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            cursor, emitter = MemoryDeltaCursor(), RecordingEmitter()
            actor = MasterData(rules=load_mapping(DEFAULT_MAPPING), platforms=Platforms([GraphPlatform(graph)]),
                               crosswalk=crosswalk, locks=MemoryLocks(), store=MemoryMasterDataStore(), cursor=cursor)

            def notify() -> None:
                event = make_event(REGISTRY, type="dms.change.notified.v1", source="graph://sharepoint",
                                   data=notified())
                actor.handle(unit_context(actor.spec, REGISTRY, event, REGISTRY.decode(event.get_type(),
                                                                                       event.get_data()),
                                          emitter=emitter))

            workspace = graph.ensure_folder("Engagements/ACME/ENG-1")
            raw.patch(f"/drives/workspaces/items/{workspace.id}/listItem/fields", json={
                "ProjectCode": "ENG-1", "ClientId": "ACME", "ClientName": "ACME Corp", "Region": "EU"}
                      ).raise_for_status()
            notify()  # the first read: the whole drive, the workspace among it
            assert emitter.of_type("hub.exception.raised.v1") == []
            assert crosswalk.resolve("project", "sharepoint", workspace.id) is not None
            first_token = cursor.tokens["workspaces"]
            raw.patch(f"/drives/workspaces/items/{workspace.id}/listItem/fields", json={"Region": "Europa"}
                      ).raise_for_status()
            notify()  # names no item: the delta since the last read finds the workspace
            [alert] = emitter.of_type("hub.exception.raised.v1")
            data = REGISTRY.decode(alert.get_type(), alert.get_data())
            assert data["owner"] == "records_management" and data["kind"] == "master_data.taxonomy"
            assert data["subject"] == workspace.id and "Europa" in data["detail"]
            assert cursor.tokens["workspaces"] != first_token
            notify()  # nothing changed since: nothing read again, nothing raised again
            assert len(emitter.of_type("hub.exception.raised.v1")) == 1
        finally:
            graph.close()
            raw.close()


def test_the_keeper_renews_the_subscription_before_it_expires_so_notifications_go_on(tls: TlsFiles) -> None:
    receiver, stop = Receiver(), threading.Event()
    with serve_in_thread(receiver.app, tls=tls.server) as base, \
            simulator(SimulatorConfig(token=TOKEN, notify_ca_file=tls.ca, **BARE)) as raw:
        sim = str(raw.base_url).removesuffix("/v1.0/")
        graph = GraphClient.from_settings(GraphSettings(url=f"{sim}/v1.0", token=SecretStr(TOKEN),
                                                        drive_id="workspaces"))
        keeper = SubscriptionKeeper(graph, f"{base}/notify", "state-7", lifetime=timedelta(seconds=3), retry_s=0.2)
        renewing = threading.Thread(target=keeper.run, args=(stop,), daemon=True)
        renewing.start()
        try:
            assert wait_until(lambda: bool(keeper.renewals), timeout=10)
            first = keeper.renewals[0]

            def renewed_past_the_first_expiry() -> bool:
                [live] = httpx.get(f"{sim}/_sim/state").json()["subscriptions"]
                expires = datetime.fromisoformat(live["expirationDateTime"])
                now = datetime.now(UTC)
                return live["id"] == first.id and now > first.expiration and expires > now

            assert wait_until(renewed_past_the_first_expiry, timeout=15)
            assert len(keeper.renewals) >= 2 and {s.id for s in keeper.renewals} == {first.id}
            raw.post("/drives/workspaces/root/children", json={"name": "After", "folder": {}}).raise_for_status()
            assert wait_until(lambda: bool(receiver.bodies), timeout=10)  # still notified after the first expiry
        finally:
            stop.set()
            renewing.join(timeout=10)
            graph.close()
    [notification] = parse_notifications(receiver.bodies[0])
    assert notification.subscription_id == first.id


def test_the_keeper_renews_when_a_third_of_the_lifetime_is_left() -> None:
    moment = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    keeper = SubscriptionKeeper(GraphClient.from_settings(GraphSettings()), "https://hub.example/v1/webhooks/graph/x",
                                "s", lifetime=timedelta(days=3), now=lambda: moment)
    subscription = Subscription.model_validate({
        "id": "s-1", "resource": "drives/workspaces/root", "changeType": "updated",
        "notificationUrl": "https://hub.example/v1/webhooks/graph/x", "expirationDateTime": moment + timedelta(days=3)})
    assert keeper.due_in_s(subscription) == timedelta(days=2).total_seconds()
    late = subscription.model_copy(update={"expiration": moment + timedelta(hours=1)})
    assert keeper.due_in_s(late) == 0.0  # already inside the last third: renew now
    keeper.graph.close()


def test_master_data_skips_the_drives_root_and_an_item_deleted_since_the_delta(crosswalk: SqlCrosswalk) -> None:
    asked: list[str] = []

    def graph_api(request: httpx.Request) -> httpx.Response:
        """SharePoint's delta lists the root (no parent id); the folder ``gone`` was deleted meanwhile."""
        asked.append(request.url.path)
        if request.url.path.endswith("/root/delta"):
            reference = {"driveId": "workspaces", "driveType": "documentLibrary"}
            return httpx.Response(200, json={"value": [
                {"id": "ROOT", "name": "root", "root": {}, "folder": {"childCount": 1}, "parentReference": reference},
                {"id": "gone", "name": "Gone", "folder": {"childCount": 0},
                 "parentReference": {**reference, "id": "ROOT"}},
            ], "@odata.deltaLink": "https://graph.example/v1.0/drives/workspaces/root/delta?token=t2"})
        return httpx.Response(404, json={"error": {"code": "itemNotFound", "message": "gone"}})

    graph = GraphClient.from_settings(GraphSettings(url="https://graph.example/v1.0", drive_id="workspaces"),
                                      client=httpx.Client(transport=httpx.MockTransport(graph_api)))
    cursor, emitter = MemoryDeltaCursor(), RecordingEmitter()
    actor = MasterData(rules=load_mapping(DEFAULT_MAPPING), platforms=Platforms([GraphPlatform(graph)]),
                       crosswalk=crosswalk, locks=MemoryLocks(), store=MemoryMasterDataStore(), cursor=cursor)
    event = make_event(REGISTRY, type="dms.change.notified.v1", source="graph://sharepoint", data=notified())
    actor.handle(unit_context(actor.spec, REGISTRY, event, REGISTRY.decode(event.get_type(), event.get_data()),
                              emitter=emitter))
    assert asked == ["/v1.0/drives/workspaces/root/delta", "/v1.0/drives/workspaces/items/gone/listItem/fields"]
    assert cursor.tokens == {"workspaces": "t2"} and emitter.events == []
    graph.close()
