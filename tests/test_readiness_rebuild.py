"""Losing the gate's state loses no truth: ``hub readiness rebuild`` writes the facts again from the ERP
(draft invoices, milestones) and the document platform (the workspace's classified documents)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.cli import main
from hub.runtime import Runtime
from tests.conftest import hub_settings, worker_env
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario

pytestmark = pytest.mark.integration


def _forget_the_gates_state(runtime: Runtime) -> int:
    """Delete every row of the gate's tables (facts, invoices, verdicts); returns how many facts there were."""
    from actors.invoice_readiness.store import (
        readiness_facts,
        readiness_invoices,
        readiness_projects,
        readiness_verdicts,
    )

    tables = (readiness_verdicts, readiness_invoices, readiness_facts, readiness_projects)
    with runtime.db.begin() as connection:
        if connection.dialect.name == "postgresql":  # workers still running add no fact between two deletes
            connection.execute(sa.text(f"LOCK TABLE {', '.join(t.name for t in tables)} IN ACCESS EXCLUSIVE MODE"))
        facts = connection.execute(sa.select(sa.func.count()).select_from(readiness_facts)).scalar_one()
        for table in tables:
            connection.execute(table.delete())
    return int(facts)


def _reasons(scenario: Scenario, number: str) -> list[tuple[str, str]]:
    body: dict[str, Any] = scenario.readiness(number).json()
    return sorted((r["code"], r["artefact"]) for r in body["hold_reasons"])


def test_rebuild_restores_every_verdict_after_the_gate_lost_its_facts(prefix: str) -> None:
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = "ENG-ME-0100"
        scenario.create_project(**acme_project(code=code, engagement_type="engineering", practice="Infrastructure",
                                               region="ME", country="SA", billing_model="milestone"))
        assert wait_until(lambda: scenario.erp_project(code).get("custom_fields", {}).get("workspace_status")
                          == "provisioned", timeout=60)
        sandbox = scenario.sandbox
        with sandbox.erp() as erp:
            m1 = erp.post(f"/projects/{code}/milestones", json={
                "name": "M1", "amount": {"amount_minor": 100_000, "currency": "EUR"}}).json()
        folder = f"Engagements/ACME/{code}/Deliverables"
        done = sandbox.put_document(folder, "done.pdf", label="ME-Deliverable-10y", fields={
            "DocumentClass": "deliverable", "DocumentState": "approved", "ProjectCode": code, "Milestone": "M1"})
        pending = sandbox.put_document(folder, "pending.pdf", fields={
            "DocumentClass": "deliverable", "DocumentState": "in_review", "ProjectCode": code, "Milestone": "M1"})
        sandbox.draft_invoice(code, number="INV-R-1", amount_minor=100_000, currency="EUR", period="2027-03",
                              milestone_id=m1["id"])
        sandbox.draft_invoice(code, number="INV-R-2", amount_minor=100_000, currency="EUR", period="2027-04")
        expected = [("DELIVERABLE_NOT_APPROVED", pending)]
        assert wait_until(lambda: _reasons(scenario, "INV-R-1") == expected, timeout=30)
        nothing_linked = [("DELIVERABLE_NOT_APPROVED", "deliverable")]  # no deliverable names its period
        assert wait_until(lambda: _reasons(scenario, "INV-R-2") == nothing_linked, timeout=30)
        assert done not in json.dumps(scenario.readiness("INV-R-1").json())

        assert _forget_the_gates_state(scenario.runtime)  # the gate loses its state
        assert _reasons(scenario, "INV-R-1") == [("INVOICE_NOT_DRAFTED", "INV-R-1")]  # and fails closed

        env = worker_env(prefix, HUB_ERP_URL=sandbox.erp_url, HUB_GRAPH_URL=sandbox.graph_url,
                         HUB_GRAPH_DRIVE_ID=sandbox.drive_id)
        one = CliRunner().invoke(main, ["readiness", "rebuild", "INV-R-1", "--output", "json"], env=env)
        assert one.exit_code == 0, one.output
        changed = {c["invoice_number"]: c for c in json.loads(one.stdout)}
        assert changed["INV-R-1"]["project_code"] == code and changed["INV-R-1"]["status"] == "held"
        assert [(r["code"], r["artefact"]) for r in changed["INV-R-1"]["hold_reasons"]] == [
            ("DELIVERABLE_NOT_APPROVED", pending)]
        assert f"[1/1] {code}: 5 fact(s) from the ERP and the workspace" in one.output  # 2 drafts, 2 docs, 1 label
        assert _reasons(scenario, "INV-R-1") == expected
        assert _reasons(scenario, "INV-R-2") == nothing_linked  # same project: rebuilt with it

        assert _forget_the_gates_state(scenario.runtime)
        every = CliRunner().invoke(main, ["readiness", "rebuild", "--all"], env=env)
        assert every.exit_code == 0, every.output
        assert _reasons(scenario, "INV-R-1") == expected
        shown = CliRunner().invoke(main, ["readiness", "show", "INV-R-1", "--output", "json"], env=env)
        assert shown.exit_code == 3, "a held invoice exits 3, so a script can gate on it"
        assert json.loads(shown.stdout)["hold_reasons"][0]["artefact"] == pending
        table = CliRunner().invoke(main, ["readiness", "show", "INV-R-1"], env=env)
        assert table.exit_code == 3 and "INV-R-1" in table.output and "DELIVERABLE_NOT_APPROVED" in table.output

        # After a rebuild the gate goes on from the rebuilt facts.
        sandbox.set_document(pending, fields={"DocumentState": "approved"}, label="ME-Deliverable-10y")
        assert wait_until(lambda: scenario.readiness("INV-R-1").json()["status"] == "ready", timeout=30)
        ready = CliRunner().invoke(main, ["readiness", "show", "INV-R-1"], env=env)
        assert ready.exit_code == 0 and "INV-R-1" in ready.output and "READY" in ready.output


def test_rebuild_needs_one_invoice_or_all() -> None:
    result = CliRunner().invoke(main, ["readiness", "rebuild"])
    assert result.exit_code == 2 and "name one INVOICE or give --all" in result.output
