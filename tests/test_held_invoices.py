"""Held invoices at a glance: ``hub readiness list --held`` and ``GET /v1/invoices/held``, every held invoice with
its codes, what it waits for, the owners and since when, from the gate's verdicts. Real RabbitMQ, Redis and
PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from actors.invoice_readiness.facts import ProjectMeta, Verdict
from actors.invoice_readiness.logic import HoldReason, InvoiceDrafted, Readiness
from actors.invoice_readiness.store import SqlReadinessStore
from hub.cli import main
from hub.runtime import Runtime
from tests.conftest import worker_env
from tests.support.ingress import load, serving, write_sources

pytestmark = pytest.mark.integration

T = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
META = ProjectMeta(engagement_type="engineering", region="ME", country="SA", client_id="ACME")


def _verdicts(runtime: Runtime) -> None:
    store = SqlReadinessStore(runtime.db)
    held = Readiness.of([HoldReason("DELIVERABLE_NOT_APPROVED", "D-1", "in review", name="Drainage plan.pdf",
                                    owner="pmo"),
                         HoldReason("RETENTION_LABEL_MISSING", "D-2", "no label", name="Calculations.pdf",
                                    owner="records_management")])
    store.store("ENG-ME-1", [InvoiceDrafted("INV-E-1", "ENG-ME-1", T, "M1"), InvoiceDrafted("INV-E-2", "ENG-ME-1", T,
                                                                                             "M2")], META,
                verdicts={"INV-E-1": Verdict(held, 1), "INV-E-2": Verdict(Readiness.of([]), 2)})
    finance = Readiness.of([HoldReason("CHANGE_RECORD_MISSING", "change records", owner="finance")])
    store.store("MS-1", [InvoiceDrafted("INV-M-1", "MS-1", T, None)], META, verdicts={"INV-M-1": Verdict(finance, 1)})


def test_hub_readiness_list_held_shows_every_held_invoice_with_its_codes_owners_and_since_when(
        app: Runtime, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _verdicts(app)
    for key, value in worker_env(prefix).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    listed = runner.invoke(main, ["readiness", "list", "--held", "--output", "json"])
    assert listed.exit_code == 0, listed.output
    invoices = {i["invoice_number"]: i for i in json.loads(listed.stdout)}
    assert sorted(invoices) == ["INV-E-1", "INV-M-1"]  # INV-E-2 is ready
    first = invoices["INV-E-1"]
    assert (first["project_code"], first["codes"], first["owners"]) == (
        "ENG-ME-1", ["DELIVERABLE_NOT_APPROVED", "RETENTION_LABEL_MISSING"], ["pmo", "records_management"])
    assert [r["name"] for r in first["hold_reasons"]] == ["Drainage plan.pdf", "Calculations.pdf"]
    assert datetime.fromisoformat(first["since"]) <= datetime.now(UTC)  # when the gate gave the verdict
    pmo = runner.invoke(main, ["readiness", "list", "--held", "--owner", "finance", "--output", "json"])
    assert [i["invoice_number"] for i in json.loads(pmo.stdout)] == ["INV-M-1"]
    table = runner.invoke(main, ["readiness", "list", "--held"])
    assert table.exit_code == 0 and "Drainage plan.pdf" in table.output and "2 held invoice(s)" in table.output
    assert runner.invoke(main, ["readiness", "list"]).exit_code == 2


def test_the_held_invoices_api_answers_a_source_that_may_ask_and_refuses_others(app: Runtime, tmp_path: Path) -> None:
    _verdicts(app)
    path, creds = write_sources(tmp_path)
    key = secrets.token_urlsafe(24)
    path.write_text(path.read_text() + f"""\
  - id: finance-desk
    description: the finance team's dashboard
    sources: ["ops://finance"]
    event_types: ["ops.*"]
    queries: [held_invoices]
    credentials:
      - {{scheme: api_key, sha256: {hashlib.sha256(key.encode()).hexdigest()}}}
    quota: 100/minute
""")
    with serving(app, load(path)) as url:
        answer = httpx.get(f"{url}/v1/invoices/held", headers={"authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        assert [i["invoice_number"] for i in answer.json()["invoices"]] == ["INV-E-1", "INV-M-1"]
        owned = httpx.get(f"{url}/v1/invoices/held", params={"owner": "pmo"},
                          headers={"authorization": f"Bearer {key}"})
        assert [i["invoice_number"] for i in owned.json()["invoices"]] == ["INV-E-1"]
        refused = httpx.get(f"{url}/v1/invoices/held", headers={"authorization": f"Bearer {creds.api_key}"})
        assert refused.status_code == 403
