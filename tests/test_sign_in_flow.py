"""A real flow with sign-in and tokens living two seconds: projects provisioned through SharePoint and signed SOWs
read from DocuSign, each round after every token the hub held had expired. Real RabbitMQ, Redis, PostgreSQL
and HTTP (Entra ID's host over TLS)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.runtime import Runtime
from simulators.sandbox import SignIn
from tests.conftest import hub_settings
from tests.support.rabbit import queue_depth, wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.support.signals import erp_events, erp_events_settled

pytestmark = pytest.mark.integration

ROUNDS = 3


def _project(scenario: Scenario, code: str) -> dict[str, Any]:
    return scenario.erp_project(code)


def _provisioned(scenario: Scenario, code: str) -> bool:
    return _project(scenario, code).get("custom_fields", {}).get("workspace_status") == "provisioned"


def _hub_tokens_expired(scenario: Scenario) -> bool:
    """Whether no token issued to the hub is still valid (so its next call must renew)."""
    credentials = scenario.sandbox.sign_in
    assert credentials is not None
    stats = scenario.sandbox.token_requests()
    return (stats["graph"]["live"].get(credentials.graph_client_id, 0) == 0
            and stats["docusign"]["live"].get(credentials.docusign_user_id, 0) == 0)


def _outcomes(runtime: Runtime, event_ids: list[str]) -> set[str]:
    return {hop.outcome for event_id in event_ids for hop in runtime.flight.hops(event_id)}


def test_provisioning_and_signed_sows_run_across_several_token_expiries(prefix: str) -> None:
    with running_scenario(hub_settings(prefix), sign_in=SignIn(token_lifetime_s=2.0)) as scenario:
        sandbox = scenario.sandbox
        credentials = sandbox.sign_in
        assert credentials is not None
        scenario.create_client("ACME", "ACME Corp", "DE")
        codes = [f"ENG-ACME-{n:04d}" for n in range(1, ROUNDS + 1)]
        for code in codes:
            assert wait_until(lambda: _hub_tokens_expired(scenario), timeout=20)
            scenario.create_project(**acme_project(code=code))
            assert wait_until(lambda code=code: _provisioned(scenario, code), timeout=60)
            assert wait_until(lambda: _hub_tokens_expired(scenario), timeout=20)
            envelope = sandbox.send_for_signature(code, "sow", f"SOW {code}.pdf", fields={
                "contract_value": "520,000.00", "contract_currency": "EUR", "start_date": "2027-01-04",
                "end_date": "2027-06-30"})
            sandbox.sign_envelope(envelope)
            assert wait_until(lambda code=code: _project(scenario, code)["time_entry_enabled"], timeout=60)
            assert wait_until(lambda code=code: (scenario.workspace(f"Engagements/ACME/{code}/SOWs/SOW {code}.pdf")
                                                 or {}).get("retentionLabel") == "DE-Contract-10y", timeout=60)
        for code in codes:
            assert wait_until(lambda code=code: erp_events_settled(scenario, code), timeout=60)
        stats = sandbox.token_requests()
        # every round started with no valid token: Graph and DocuSign each signed in again, at least once a round
        assert stats["graph"]["issued"][credentials.graph_client_id] >= ROUNDS
        assert stats["docusign"]["issued"][credentials.docusign_user_id] >= ROUNDS
        assert stats["graph"]["refused"] == {} and stats["docusign"]["refused"] == {}
        event_ids = [event_id for code in codes for event_id, _ in erp_events(scenario, code)]
        outcomes = _outcomes(scenario.runtime, event_ids)
        assert event_ids and "ok" in outcomes and not outcomes & {"dead", "failed"}
        for actor in ("provisioning", "document_workflow", "master_data"):
            assert queue_depth(f"{scenario.runtime.broker.get_actor(actor).queue_name}.XQ") == 0


def test_a_refused_sign_in_is_routed_to_the_platform_team_naming_the_tenant_never_the_secret(prefix: str) -> None:
    with running_scenario(hub_settings(prefix), sign_in=SignIn()) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        credentials = scenario.sandbox.sign_in
        assert credentials is not None and credentials.graph_secret_file is not None
        secret = credentials.graph_secret_file.read_text()
        credentials.graph_secret_file.write_text("a-secret-that-was-rotated-away")  # before the hub's first sign-in
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        alert = receive(60.0)
        assert alert is not None
        data = scenario.runtime.registry.decode("hub.exception.raised.v1", alert.body)
        assert (data["owner"], data["kind"]) == ("platform_team", "platform.sign_in_refused")
        assert f"tenant {credentials.tenant_id}" in data["detail"] and "invalid_client" in data["detail"]
        assert secret not in data["detail"] and "rotated-away" not in data["detail"]
        refused = scenario.sandbox.token_requests()["graph"]["refused"]
        assert refused.get("invalid_client", 0) >= 1
        assert scenario.sandbox.token_requests()["graph"]["issued"].get(credentials.graph_client_id, 0) == 0
