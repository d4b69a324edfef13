"""ERP-triggered provisioning end to end: ERP simulator -> signed webhook -> ingress -> workers ->
SharePoint or Box simulator (each scenario on each platform), with the link written back to the ERP. Real
RabbitMQ, Redis and HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from actors import DEFAULT_POLICY
from hub.cli import main
from hub.crosswalk import Identity, SqlCrosswalk
from hub.platforms import PlatformName
from hub.runtime import Runtime
from simulators.kit.faults import FaultPlan
from tests.conftest import hub_settings, worker_env
from tests.support.platforms import on_each_platform
from tests.support.rabbit import queue_depth, wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.support.signals import erp_events_settled

pytestmark = pytest.mark.integration


def _attempts_ended(runtime: Runtime, event_id: str, actor: str) -> bool:
    """Whether ``actor`` ran the event to its end: an attempt of it succeeded or was dead-lettered."""
    return any(hop.outcome in ("ok", "dead") for hop in runtime.flight.hops(event_id) if hop.actor == actor)


def _status(scenario: Scenario, code: str) -> str | None:
    status: str | None = scenario.erp_project(code).get("custom_fields", {}).get("workspace_status")
    return status


def _provisioned(scenario: Scenario, code: str) -> bool:
    return _status(scenario, code) == "provisioned"


def _box_collaborations(scenario: Scenario, path: str) -> list[str]:
    """Every collaboration on the Box folder at ``path``, by group name (a duplicate shows twice)."""
    folder = scenario.folder(path)
    assert folder is not None, path
    return sorted(c["accessible_by"]["name"] for c in scenario.sandbox.box_state()["collaborations"]
                  if c["item"]["id"] == folder.id)


@on_each_platform
def test_a_consulting_engagement_gets_its_workspace_and_the_erp_its_link(prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), platform=platform) as scenario, \
            scenario.runtime.subscription("dms.workspace.provisioned.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _provisioned(scenario, "ENG-ACME-0001"), timeout=60)
        workspace = scenario.folder("Engagements/ACME/ENG-ACME-0001")
        assert workspace is not None
        for folder in ("Contracts", "SOWs", "Deliverables", "Correspondence", "Invoices"):
            assert scenario.folder(f"Engagements/ACME/ENG-ACME-0001/{folder}") is not None
        assert workspace.grants == {"Strategy-EU": "write", "Finance-EU": "read"}
        assert workspace.label == "DE-Engagement-10y"  # the country overrides the EU label
        assert workspace.fields["ProjectCode"] == "ENG-ACME-0001"
        assert workspace.fields["Region"] == "EU"
        assert scenario.erp_project("ENG-ACME-0001")["custom_fields"]["workspace_url"] == workspace.url
        delivery = receive(20.0)
    assert delivery is not None
    data = scenario.runtime.registry.decode("dms.workspace.provisioned.v1", delivery.body)
    assert data["project_code"] == "ENG-ACME-0001" and data["url"] == workspace.url
    assert data["provisioning_ms"] >= 0 and data["retention_label"] == "DE-Engagement-10y"
    crosswalk = SqlCrosswalk(scenario.runtime.db)
    project = crosswalk.resolve("project", "erp", "ENG-ACME-0001")
    assert project is not None and crosswalk.resolve("project", platform, workspace.id) == project
    assert sorted(crosswalk.all_identities(project)) == sorted([Identity("erp", "ENG-ACME-0001"),
                                                                Identity(platform, workspace.id)])


@on_each_platform
def test_an_engineering_project_in_the_middle_east_gets_the_me_retention(prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), platform=platform) as scenario:
        scenario.create_client("PETRO", "Petro Gulf", "AE")
        scenario.create_project(**acme_project(code="ENG-PETRO-0007", client_id="PETRO", name="Refinery upgrade",
                                               engagement_type="engineering", practice="Infrastructure",
                                               region="ME", country="AE", billing_model="milestone"))
        assert wait_until(lambda: _provisioned(scenario, "ENG-PETRO-0007"), timeout=60)
        workspace = scenario.folder("Engagements/PETRO/ENG-PETRO-0007")
        assert workspace is not None and workspace.label == "ME-Engagement-10y"
        contracts = scenario.folder("Engagements/PETRO/ENG-PETRO-0007/Contracts")
        assert contracts is not None and contracts.label == "ME-Contract-15y"
        assert workspace.grants["Infrastructure-ME"] == "write"


@on_each_platform
def test_a_legal_matter_never_grants_a_walled_group_even_when_the_wall_comes_later(
        prefix: str, platform: PlatformName) -> None:
    path = "Engagements/GLOBEX/MAT-GLOBEX-0042"

    def grants() -> dict[str, str]:
        folder = scenario.folder(path)
        return folder.grants if folder else {}

    with running_scenario(hub_settings(prefix), platform=platform) as scenario:
        scenario.create_client("GLOBEX", "Globex", "US")
        scenario.create_project(**acme_project(code="MAT-GLOBEX-0042", client_id="GLOBEX", name="Globex v. Initech",
                                               engagement_type="legal", practice="Litigation", region="NA",
                                               country="US", billing_model="retainer",
                                               conflicted_groups=["Corporate-NA"]))
        assert wait_until(lambda: _provisioned(scenario, "MAT-GLOBEX-0042"), timeout=60)
        workspace = scenario.folder(path)
        assert workspace is not None
        assert "Litigation-NA" in workspace.grants and "Corporate-NA" not in workspace.grants
        assert not any(g.lower().startswith("knowledge-") for g in workspace.grants)  # never_grant for litigation
        assert workspace.label == "Client-GLOBEX-Matter-25y"
        # The ERP later records a conflict with the practice's own group: its grant must go.
        scenario.update_project("MAT-GLOBEX-0042", conflicted_groups=["Corporate-NA", "Litigation-NA"])
        assert wait_until(lambda: "Litigation-NA" not in grants(), timeout=60)
        # Replaying the first event (older conflicts) must not grant it back: once every event the ERP sent
        # about the matter has been through every actor it reaches, nothing is left to grant it.
        assert wait_until(lambda: erp_events_settled(scenario, "MAT-GLOBEX-0042"), timeout=60)
        assert "Litigation-NA" not in grants() and "Corporate-NA" not in grants()


@on_each_platform
def test_with_20_percent_5xx_and_429_every_project_is_provisioned_exactly_once(
        prefix: str, platform: PlatformName) -> None:
    faults = FaultPlan(error_rate=0.1, throttle_rate=0.1, retry_after_s=0, seed=7)  # 20% of requests
    codes = [f"ENG-ACME-{n:04d}" for n in range(1, 6)]
    with running_scenario(hub_settings(prefix), platform=platform) as scenario:
        scenario.set_platform_faults(faults)
        scenario.create_client("ACME", "ACME Corp", "DE")
        for code in codes:
            scenario.create_project(**acme_project(code=code))
        assert wait_until(lambda: all(_provisioned(scenario, code) for code in codes), timeout=120)
        injected = scenario.platform_faults_injected()
        if platform == "sharepoint":
            requests = scenario.sandbox.graph_requests()
            creates = requests["creates"]
            assert all(count == 1 for count in creates.values()), creates
            for code in codes:
                assert creates[f"workspaces/Engagements/ACME/{code}"] == 1
                assert requests["invites"][f"workspaces/Engagements/ACME/{code}"] == 2  # two groups, no duplicate
        else:  # Box refuses a second folder of a name (409) and a second collaboration of a group (400)
            for code in codes:
                assert _box_collaborations(scenario, f"Engagements/ACME/{code}") == ["Finance-EU", "Strategy-EU"]
    assert injected.get("error", 0) > 0 and injected.get("throttle", 0) > 0


@on_each_platform
def test_an_outage_longer_than_the_retry_budget_raises_an_exception_and_a_replay_completes(
    prefix: str, platform: PlatformName, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY.read_text().replace(
        "provisioning: {mode: queue_and_retry, max_attempts: 12, owner: platform_team}",
        "provisioning: {mode: queue_and_retry, max_attempts: 3, owner: platform_team}"))
    settings = hub_settings(prefix, policy_file=policy)
    with running_scenario(settings, platform=platform) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.set_platform_faults(FaultPlan(outage=True, retry_after_s=0))
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        data = scenario.raised(receive, "provisioning.dead_letter")
        assert data["owner"] == "platform_team" and data["subject"] == "ENG-ACME-0001"
        # Visibly unprovisioned: the ERP says so and has no link; nothing half-done is hidden.
        assert _status(scenario, "ENG-ACME-0001") == "provisioning"
        assert not scenario.erp_project("ENG-ACME-0001")["custom_fields"].get("workspace_url")
        queue = scenario.runtime.broker.get_actor("provisioning").queue_name
        assert wait_until(lambda: queue_depth(f"{queue}.XQ") >= 1, timeout=30)
        scenario.set_platform_faults(FaultPlan())
        env = worker_env(prefix, HUB_POLICY_FILE=str(scenario.runtime.settings.policy_file))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        replayed = CliRunner().invoke(main, ["dlq", "replay", "--actor", "provisioning", "--yes"])
        assert replayed.exit_code == 0, replayed.output
        assert wait_until(lambda: _provisioned(scenario, "ENG-ACME-0001"), timeout=60)
        if platform == "sharepoint":
            assert scenario.sandbox.graph_requests()["creates"]["workspaces/Engagements/ACME/ENG-ACME-0001"] == 1
        else:
            assert _box_collaborations(scenario, "Engagements/ACME/ENG-ACME-0001") == ["Finance-EU", "Strategy-EU"]


@on_each_platform
def test_a_group_the_directory_does_not_know_is_not_granted_and_raises_an_exception(
        prefix: str, platform: PlatformName) -> None:
    with running_scenario(hub_settings(prefix), platform=platform) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project(code="ENG-ACME-0009", practice="Tax"))
        assert wait_until(lambda: _provisioned(scenario, "ENG-ACME-0009"), timeout=60)
        workspace = scenario.folder("Engagements/ACME/ENG-ACME-0009")
        assert workspace is not None and workspace.grants == {"Finance-EU": "read"}
        data = scenario.raised(receive, "provisioning.unknown_groups", timeout=20)
    assert "Tax-EU" in data["detail"] and data["owner"] == "platform_team"


def test_a_project_left_locked_by_a_worker_that_died_is_provisioned_once_the_lock_runs_out(
    prefix: str, tmp_path: Path
) -> None:
    """The lock lives 5 s here (60 s by default) and the workflow allows 3 attempts: the old wait for the lock
    (a try a second, counted as attempts: about 11 s of the default 12 against 60 s) dead-lettered the event
    after 2 s."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY.read_text().replace(
        "provisioning: {mode: queue_and_retry, max_attempts: 12, owner: platform_team}",
        "provisioning: {mode: queue_and_retry, max_attempts: 3, owner: platform_team}"))
    with running_scenario(hub_settings(prefix, lock_ttl_ms=5_000, policy_file=policy)) as scenario:
        runtime = scenario.runtime
        # A worker took the project's lock, as the actor does, and died: nobody gives it back.
        assert runtime.redis.set(f"{prefix}:lock:project:ENG-ACME-0001", "dead-worker", nx=True,
                                 px=runtime.specs["provisioning"].lock_ms)
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _attempts_ended(runtime, "ENG-ACME-0001:v1", "provisioning"), timeout=60)
        hops = [hop for hop in runtime.flight.hops("ENG-ACME-0001:v1")
                if hop.actor == "provisioning" and hop.outcome != "published"]
        assert _provisioned(scenario, "ENG-ACME-0001")
        assert scenario.sandbox.graph_requests()["creates"]["workspaces/Engagements/ACME/ENG-ACME-0001"] == 1
    waits = [hop for hop in hops if hop.outcome == "retry"]
    assert waits and all((hop.error or "").startswith("EntityLocked") for hop in waits)
    assert [hop.outcome for hop in hops if hop.outcome != "retry"] == ["ok"]  # never dead-lettered
