"""Drift correction and the taxonomy check as against real SharePoint, end to end: someone edits a workspace's
metadata on the platform; Graph notifies the ingress over https with a notification that names no item; master
data finds the workspace through the drive's delta, raises the taxonomy exception and puts back the client's
name, which the ERP owns. Real RabbitMQ, Redis, PostgreSQL and HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import hub_settings
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario

pytestmark = pytest.mark.integration
WORKSPACE = "Engagements/ACME/ENG-ACME-0001"


def _client_name_on_workspace(scenario: Scenario) -> Any:
    return (scenario.workspace(WORKSPACE) or {}).get("fields", {}).get("ClientName")


def test_a_workspace_edited_on_the_platform_is_found_through_delta_checked_and_put_back(prefix: str) -> None:
    with running_scenario(hub_settings(prefix), documents=True) as scenario, \
            scenario.runtime.subscription("hub.exception.raised.v1") as receive:
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_project(**acme_project())
        assert wait_until(lambda: _client_name_on_workspace(scenario) == "ACME Corp", timeout=60)
        workspace = scenario.workspace(WORKSPACE)
        assert workspace is not None
        sandbox = scenario.sandbox
        with httpx.Client(headers={"authorization": f"Bearer {sandbox.graph_token}"}) as graph:
            graph.patch(f"{sandbox.graph_url}/drives/{sandbox.drive_id}/items/{workspace['id']}/listItem/fields",
                        json={"Region": "Europa", "ClientName": "Acme (typo)"}).raise_for_status()
        alert = None
        for _ in range(5):  # other exceptions of the run may come first
            delivery = receive(30.0)
            assert delivery is not None, "no taxonomy exception on hub.events"
            data = scenario.runtime.registry.decode("hub.exception.raised.v1", delivery.body)
            if data["kind"] == "master_data.taxonomy":
                alert = data
                break
        assert alert is not None
        assert alert["owner"] == "records_management" and alert["subject"] == workspace["id"]
        assert "Europa" in alert["detail"]
        assert wait_until(lambda: _client_name_on_workspace(scenario) == "ACME Corp", timeout=30)
        deliveries = httpx.get(f"{sandbox.graph_url.removesuffix('/v1.0')}/_sim/deliveries").json()["items"]
    # Graph reached the ingress over https only (through the TLS terminator in front of it).
    assert deliveries and all(d["url"].startswith("https://") for d in deliveries)
    assert all(d["state"] == "delivered" for d in deliveries if d["state"] != "pending")
