"""The hard-stop check, ``GET /v1/invoices/{number}/readiness``: who may ask, what it answers, and that
it fails closed. Real Redis, RabbitMQ and PostgreSQL; facts are written with the gate's own store."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from actors.invoice_readiness.facts import ProjectMeta
from actors.invoice_readiness.logic import DocumentStateChanged, InvoiceDrafted, RetentionApplied
from actors.invoice_readiness.store import SqlReadinessStore
from hub.db import Database, connect_database
from hub.runtime import Runtime
from tests.conftest import DATABASE_URL
from tests.support.ingress import load, serving, write_sources
from tests.support.netproxy import TcpProxy

pytestmark = pytest.mark.integration

T = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def _sources(tmp_path: Path, quota: str = "100/minute") -> tuple[Path, str, str]:
    """The test sources plus an ERP finance source that may ask the hard-stop check."""
    path, creds = write_sources(tmp_path)
    key = secrets.token_urlsafe(24)
    path.write_text(path.read_text() + f"""\
  - id: erp-finance
    description: the ERP's invoice finalisation
    sources: ["erp-sim://acme-psa/finance"]
    event_types: ["erp.invoice.*"]
    queries: [invoice_readiness]
    credentials:
      - {{scheme: api_key, sha256: {hashlib.sha256(key.encode()).hexdigest()}}}
    quota: {quota}
""")
    return path, key, creds.api_key


def _facts(runtime: Runtime, *events: InvoiceDrafted | DocumentStateChanged | RetentionApplied) -> None:
    meta = ProjectMeta(engagement_type="engineering", region="ME", country="SA", client_id="ACME")
    SqlReadinessStore(runtime.db).store("ENG-ME-1", events, meta)


def _ask(url: str, number: str, key: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{url}/v1/invoices/{number}/readiness", headers=headers, timeout=10)


def test_the_check_answers_held_with_reasons_then_ready_from_the_gates_facts(app: Runtime, tmp_path: Path) -> None:
    path, key, _ = _sources(tmp_path)
    with serving(app, load(path)) as url:
        unknown = _ask(url, "INV-404", key)
        assert unknown.status_code == 200 and unknown.headers["cache-control"] == "no-store"
        assert unknown.json() == {
            "invoice_number": "INV-404", "project_code": None, "status": "held", "may_finalize": False,
            "hold_reasons": [{"code": "INVOICE_NOT_DRAFTED", "artefact": "INV-404",
                              "detail": "the hub has not seen invoice INV-404 drafted in the ERP", "name": None,
                              "owner": "finance"}]}
        drafted = InvoiceDrafted("INV-1", "ENG-ME-1", T, "M1")
        deliverable = DocumentStateChanged("D-1", "ENG-ME-1", "deliverable", "approved", T, "M1")
        _facts(app, drafted, deliverable)
        held = _ask(url, "INV-1", key).json()
        assert (held["status"], held["may_finalize"], held["project_code"]) == ("held", False, "ENG-ME-1")
        assert [(r["code"], r["artefact"]) for r in held["hold_reasons"]] == [("RETENTION_LABEL_MISSING", "D-1")]
        assert "ME-Deliverable-10y" in held["hold_reasons"][0]["detail"]
        _facts(app, drafted, deliverable, RetentionApplied("D-1", "ENG-ME-1", "ME-Deliverable-10y", "ME", T))
        assert _ask(url, "INV-1", key).json()["status"] == "ready"


def test_only_a_source_allowed_to_ask_gets_an_answer(app: Runtime, tmp_path: Path) -> None:
    path, key, other_key = _sources(tmp_path)
    with serving(app, load(path)) as url:
        assert _ask(url, "INV-1", None).status_code == 401
        assert _ask(url, "INV-1", "not-a-key").status_code == 401
        forbidden = _ask(url, "INV-1", other_key)  # a known source without the invoice_readiness query
        assert forbidden.status_code == 403
        assert forbidden.json()["type"] == "urn:hub:problem:forbidden"
        bad = _ask(url, "INV%201%3B", key)
        assert bad.status_code == 400 and bad.json()["type"] == "urn:hub:problem:invalid-parameter"


def test_the_check_fails_closed_when_the_facts_cannot_be_read(app: Runtime, tmp_path: Path) -> None:
    path, key, _ = _sources(tmp_path)
    # The ingress's own Redis client on a port nothing listens on; the runtime is otherwise the same.
    unreachable = dataclasses.replace(app, settings=app.settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0"}))
    with serving(unreachable, load(path)) as url:
        answer = _ask(url, "INV-1", key)
    assert answer.status_code == 503
    assert answer.json()["type"] == "urn:hub:problem:unavailable" and int(answer.headers["retry-after"]) > 0


def _database_at(app: Runtime, port: int) -> Database:
    """The test's database (same schema), reached through 127.0.0.1:``port``."""
    url = DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    return connect_database(url, prefix=app.queue_prefix, embedded=False)


def test_the_check_fails_closed_when_the_database_does_not_answer(app: Runtime, tmp_path: Path) -> None:
    path, key, _ = _sources(tmp_path)
    database = _database_at(app, 1)  # nothing listens there; Redis and RabbitMQ answer
    try:
        with serving(dataclasses.replace(app, db=database), load(path)) as url:
            answers = [_ask(url, number, key) for number in ("INV-1", "INV-404")]
    finally:
        database.close()
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == "urn:hub:problem:unavailable" and int(answer.headers["retry-after"]) > 0


def test_the_check_fails_closed_within_its_deadline_when_the_database_stalls(app: Runtime, tmp_path: Path) -> None:
    from actors.invoice_readiness.router import DEADLINE_S

    path, key, _ = _sources(tmp_path)
    _facts(app, InvoiceDrafted("INV-1", "ENG-ME-1", T, "M1"))
    proxy = TcpProxy(("127.0.0.1", 5432))
    database = _database_at(app, proxy.port)
    try:
        with serving(dataclasses.replace(app, db=database), load(path)) as url:
            assert _ask(url, "INV-1", key).json()["status"] == "held"  # a pooled connection through the proxy
            proxy.pause()  # it stays open and carries nothing: neither an answer nor an error
            started = time.monotonic()
            stalled = _ask(url, "INV-1", key)
            waited = time.monotonic() - started
            proxy.resume()
            assert _ask(url, "INV-1", key).status_code == 200  # the database is back: so are the answers
    finally:
        proxy.close()
        database.close()
    # The answer itself is the signal: without the deadline the stalled query would outlast the client's
    # 10 s timeout. It came no sooner than the deadline (a lower bound, which a slow machine cannot break).
    assert stalled.status_code == 503 and stalled.json()["type"] == "urn:hub:problem:unavailable"
    assert waited > DEADLINE_S - 0.5


def test_the_check_counts_against_the_sources_quota(app: Runtime, tmp_path: Path) -> None:
    path, key, _ = _sources(tmp_path, quota="2/minute")
    with serving(app, load(path)) as url:
        first = _ask(url, "INV-1", key)
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
        assert _ask(url, "INV-1", key).status_code == 200
        over = _ask(url, "INV-1", key)
    assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
    assert over.json()["type"] == "urn:hub:problem:rate-limited"
