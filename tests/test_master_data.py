"""Master-data sync end to end: the ERP simulator's changes reach the canonical record, the
workspace metadata on SharePoint and on Box (each scenario on each platform) and the topic exchange; a
Redis that lost its data costs no canonical id. Real RabbitMQ, Redis, PostgreSQL and HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from actors.master_data import SqlMasterDataStore
from actors.master_data.store import canonical_records
from hub.crosswalk import SqlCrosswalk
from hub.events import make_event
from hub.platforms import PlatformName
from hub.runtime import Runtime
from simulators.sandbox import ERP_SOURCE
from tests.conftest import hub_settings
from tests.support.platforms import on_each_platform
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.support.signals import journeys, settled

pytestmark = pytest.mark.integration
WORKSPACE = "Engagements/ACME/ENG-ACME-0001"


def _attempts_ended(runtime: Runtime, event_id: str, actor: str) -> bool:
    """Whether ``actor`` ran the event to its end: an attempt of it succeeded or was dead-lettered."""
    return any(hop.outcome in ("ok", "dead") for hop in runtime.flight.hops(event_id) if hop.actor == actor)


def _client_name_on_workspace(scenario: Scenario) -> Any:
    folder = scenario.folder(WORKSPACE)
    return folder.fields.get("ClientName") if folder else None


@on_each_platform
def test_renaming_a_client_in_the_erp_renames_the_workspace_metadata(prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), platform=platform) as scenario, \
            scenario.runtime.subscription("hub.client.changed.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _client_name_on_workspace(scenario) == "ACME Corp", timeout=60)
        with scenario.sandbox.erp() as erp:
            erp.patch("/clients/ACME", json={"name": "ACME Group"}).raise_for_status()
        assert wait_until(lambda: _client_name_on_workspace(scenario) == "ACME Group", timeout=60)
        names = []
        for _ in range(4):
            delivery = receive(10.0)
            if delivery is None:
                break
            names.append(scenario.runtime.registry.decode("hub.client.changed.v1", delivery.body)["name"])
            if "ACME Group" in names:
                break
    assert names[0] == "ACME Corp" and names[-1] == "ACME Group"
    canonical_id = SqlCrosswalk(scenario.runtime.db).resolve("client", "erp", "ACME")
    assert canonical_id is not None and canonical_id.startswith("client_")


@on_each_platform
def test_a_replayed_older_client_version_does_not_regress_the_canonical_name(
        prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), platform=platform) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        with scenario.sandbox.erp() as erp:
            erp.patch("/clients/ACME", json={"name": "ACME Group"}).raise_for_status()
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _client_name_on_workspace(scenario) == "ACME Group", timeout=60)
        # A late copy of version 1 (a replay from a dead-letter queue, say) arrives now.
        runtime = scenario.runtime
        assert runtime.dispatcher is not None
        stale = make_event(runtime.registry, type="erp.client.upserted.v1", source=ERP_SOURCE,
                           id="ACME-v1-replayed", subject="ACME", sequence=f"{1:020d}",
                           data={"client_id": "ACME", "name": "ACME Corp", "country": "DE", "status": "active",
                                 "updated_at": datetime(2026, 1, 1, tzinfo=UTC)})
        runtime.dispatcher.dispatch(stale)
        assert wait_until(lambda: any(h.outcome == "ok" and h.actor == "master_data"
                                      for h in runtime.flight.hops("ACME-v1-replayed")), timeout=30)
        assert _client_name_on_workspace(scenario) == "ACME Group"
        cid = SqlCrosswalk(runtime.db).resolve("client", "erp", "ACME")
        assert cid is not None
        state = SqlMasterDataStore(runtime.db).load(cid)
        assert state is not None and state.values()["name"] == "ACME Group"


@on_each_platform
def test_workspace_metadata_outside_the_taxonomy_is_an_exception_and_drift_is_put_back(
        prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), platform=platform, documents=True) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _client_name_on_workspace(scenario) == "ACME Corp", timeout=60)
        # Every project event handled first: provisioning an update writes the workspace's metadata again, and would
        # put back the edit below before master data reads it.
        flight = scenario.runtime.flight
        assert wait_until(lambda: all(settled(flight, root) for root in journeys(scenario.runtime)), timeout=60)
        # Someone edits the workspace's metadata on the platform: a region outside the taxonomy, and the
        # client's name, which the ERP owns. The platform notifies the hub (a Graph change notification, a Box
        # webhook); master data reads what changed since its cursor.
        scenario.edit_metadata(WORKSPACE, {"Region": "Europa", "ClientName": "Acme (typo)"})
        data = scenario.raised(receive, "master_data.taxonomy", timeout=30)
        assert data["owner"] == "records_management" and "Europa" in data["detail"]
        assert wait_until(lambda: _client_name_on_workspace(scenario) == "ACME Corp", timeout=30)
        assert SqlMasterDataStore(scenario.runtime.db).ignored(platform) >= 1


def test_a_client_left_locked_by_a_worker_that_died_is_merged_once_the_lock_runs_out(prefix: str) -> None:
    """The lock lives 5 s here (30 s by default); the old wait for it, 12 tries 200 ms apart, dead-lettered the
    update before it ran out."""
    with running_scenario(hub_settings(prefix, lock_ttl_ms=5_000)) as scenario:
        runtime = scenario.runtime
        lock_ms = runtime.specs["master_data"].lock_ms
        cid = SqlCrosswalk(runtime.db).canonical("client", "erp", "ACME")
        # A worker took the record's lock, as the actor does, and died: nobody gives it back.
        assert runtime.redis.set(f"{prefix}:lock:mdm:{cid}", "dead-worker", nx=True, px=lock_ms)
        scenario.create_client("ACME", "ACME Corp", "DE")
        assert wait_until(lambda: _attempts_ended(runtime, "client:ACME:v1", "master_data"), timeout=60)
        hops = [hop for hop in runtime.flight.hops("client:ACME:v1")
                if hop.actor == "master_data" and hop.outcome != "published"]
        state = SqlMasterDataStore(runtime.db).load(cid)
    waits = [hop for hop in hops if hop.outcome == "retry"]
    assert waits and all((hop.error or "").startswith("EntityLocked") for hop in waits)
    assert [hop.outcome for hop in hops if hop.outcome != "retry"] == ["ok"]  # never dead-lettered
    assert state is not None and state.values()["name"] == "ACME Corp"


def _forget_redis(client: redis.Redis, prefix: str) -> int:
    """Delete every key of this hub, as a Redis restarted without persistence would have lost them."""
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    return int(client.delete(*keys)) if keys else 0


def test_a_redis_that_lost_its_data_does_not_give_an_existing_client_a_second_canonical_id(prefix: str) -> None:
    with running_scenario(hub_settings(prefix)) as scenario:
        runtime = scenario.runtime
        crosswalk, records = SqlCrosswalk(runtime.db), SqlMasterDataStore(runtime.db)

        def canonical_name() -> object:
            cid = crosswalk.resolve("client", "erp", "ACME")
            state = records.load(cid) if cid else None
            return state.values()["name"] if state else None

        scenario.create_client("ACME", "ACME Corp", "DE")
        assert wait_until(lambda: canonical_name() == "ACME Corp", timeout=60)
        known = crosswalk.resolve("client", "erp", "ACME")
        assert _forget_redis(runtime.redis, prefix) > 0
        with scenario.sandbox.erp() as erp:
            erp.patch("/clients/ACME", json={"name": "ACME Group"}).raise_for_status()
        assert known is not None
        # The client's next change lands on the record it had: no second id was minted for it.
        assert wait_until(lambda: (state := records.load(known)) is not None
                          and state.values()["name"] == "ACME Group", timeout=60)
        assert crosswalk.resolve("client", "erp", "ACME") == known
        with runtime.db.begin() as connection:
            clients = connection.execute(sa.select(canonical_records.c.canonical_id)
                                         .where(canonical_records.c.entity == "client")).scalars().all()
        assert clients == [known]
