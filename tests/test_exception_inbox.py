"""The exception inbox: every case raised kept in the hub's database with its owner, evidence, first and last seen,
occurrences and state; a dead letter's case resolved with a retry replays it; ``hub exceptions`` and the HTTP API
list, show, acknowledge and resolve. Real RabbitMQ, Redis and PostgreSQL (the store also on SQLite)."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from actors.exceptions import InboxRecorder, MemoryExceptionInbox, SqlExceptionInbox
from actors.exceptions.desk import CannotRetry, ExceptionDesk
from actors.exceptions.metrics import ExceptionGauges, age_band
from actors.exceptions.store import ExceptionInbox, Raised, UnknownCase
from hub.actor import unit_context
from hub.cli import main
from hub.cli.compose import exception_desk
from hub.cli.scenario import project_created
from hub.db import Database
from hub.dispatch import RoutingTable, declare_actor, event_messages
from hub.events import make_event
from hub.runtime import Runtime
from hub.workers import running_worker
from observability.metrics import exposition
from tests.conftest import worker_env
from tests.support.flaky import Flaky
from tests.support.ingress import load, serving, write_sources
from tests.support.rabbit import queue_depth, wait_until

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def raised(exception_id: str, *, kind: str = "provisioning.dead_letter", subject: str = "ENG-1", owner: str = "pmo",
           at: datetime = T0, actor: str | None = None, message_id: str | None = None) -> Raised:
    return Raised(exception_id=exception_id, owner=owner, kind=kind, subject=subject, severity="high",
                  detail=f"failed ({exception_id})", at=at, project_code=subject, actor=actor, message_id=message_id)


@pytest.fixture(params=["sql", "memory"])
def inbox(request: pytest.FixtureRequest, database: Database) -> ExceptionInbox:
    return SqlExceptionInbox(database) if request.param == "sql" else MemoryExceptionInbox()


def test_the_same_case_raised_again_is_one_entry_counted_and_a_raise_delivered_twice_counts_once(
        inbox: ExceptionInbox) -> None:
    first = inbox.record(raised("x-1", at=T0))
    again = inbox.record(raised("x-2", at=T0 + timedelta(hours=2)))
    inbox.record(raised("x-2", at=T0 + timedelta(hours=2)))  # the same raise, delivered twice
    assert first.case_id == again.case_id
    assert (again.occurrences, again.first_seen, again.last_seen) == (2, T0, T0 + timedelta(hours=2))
    assert again.detail == "failed (x-2)" and again.state == "open"
    other = inbox.record(raised("y-1", subject="ENG-2", owner="finance"))
    assert other.case_id != first.case_id
    assert [case.case_id for case in inbox.cases(owner="finance")] == [other.case_id]
    assert inbox.case(first.case_id[:8]).case_id == first.case_id
    with pytest.raises(UnknownCase):
        inbox.case("ffffffff")


def test_a_case_is_acknowledged_resolved_and_opens_again_when_raised_after_it_was_resolved(
        inbox: ExceptionInbox) -> None:
    desk = ExceptionDesk(inbox, now=lambda: T0 + timedelta(days=3))
    case = inbox.record(raised("x-1"))
    acknowledged = desk.acknowledge(case.case_id, by="cli:ops", note="looking")
    assert (acknowledged.state, acknowledged.state_by, acknowledged.note) == ("acknowledged", "cli:ops", "looking")
    assert [c.case_id for c in desk.cases(older_than=timedelta(days=2))] == [case.case_id]
    assert desk.cases(older_than=timedelta(days=4)) == []
    with pytest.raises(CannotRetry):  # raised by an actor itself: no dead letter behind it
        desk.resolve(case.case_id, by="cli:ops", retry=True)
    assert desk.resolve(case.case_id, by="cli:ops").case.state == "resolved"
    assert desk.cases() == [] and len(desk.cases(states=("resolved",))) == 1
    reopened = inbox.record(raised("x-3", at=T0 + timedelta(days=4)))
    assert (reopened.state, reopened.occurrences) == ("open", 2)


def test_open_cases_are_exported_by_owner_state_and_age_band(inbox: ExceptionInbox) -> None:
    inbox.record(raised("a", subject="A", owner="pmo", at=T0))
    inbox.record(raised("b", subject="B", owner="pmo", at=T0 + timedelta(days=2, hours=23, minutes=30)))
    ExceptionDesk(inbox).acknowledge(inbox.record(raised("c", subject="C", owner="finance", at=T0)).case_id, by="x")
    text = exposition([ExceptionGauges(inbox, now=lambda: T0 + timedelta(days=3))]).decode()
    assert 'hub_exceptions_open{age="lt_7d",owner="pmo",state="open"} 1.0' in text
    assert 'hub_exceptions_open{age="lt_1h",owner="pmo",state="open"} 1.0' in text
    assert 'hub_exceptions_open{age="lt_7d",owner="finance",state="acknowledged"} 1.0' in text
    assert f'hub_exception_oldest_open_seconds{{owner="pmo"}} {float(3 * 86_400)}' in text
    assert "ENG-" not in text and age_band(timedelta(days=8)) == "ge_7d"


def test_a_case_an_actor_raises_itself_is_kept_by_the_inbox_actor() -> None:
    from hub.registry import SchemaRegistry

    registry, inbox = SchemaRegistry.load(), MemoryExceptionInbox()
    data = {"exception_id": "lbl-1", "owner": "records_management", "kind": "provisioning.retention_label_unpublished",
            "severity": "medium", "subject": "DE-Engagement-10y", "detail": "not published", "project": None,
            "event_id": None, "event_type": None, "raised_at": T0}
    event = make_event(registry, type="hub.exception.raised.v1", source="hub://provisioning", id="lbl-1", data=data)
    recorder = InboxRecorder(inbox)
    recorder.handle(unit_context(recorder.spec, registry, event, registry.decode("hub.exception.raised.v1",
                                                                                   _avro(event))))
    [case] = inbox.cases()
    assert (case.owner, case.kind, case.subject, case.dead_letters) == (
        "records_management", "provisioning.retention_label_unpublished", "DE-Engagement-10y", ())


def _avro(event: object) -> bytes:
    data = event.get_data()  # type: ignore[attr-defined]
    assert isinstance(data, bytes)
    return data


@pytest.mark.integration
def test_a_dead_letters_case_resolved_with_a_retry_replays_it_and_the_flow_completes(
        app: Runtime, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    flaky = Flaky(app)
    declare_actor(app.broker, flaky, prefix=prefix, registry=app.registry, emitter=app.dispatcher)
    app.redis.set(f"{prefix}:flaky:fail", "1")
    event = project_created(app.registry)
    [message] = event_messages(event, RoutingTable({event.get_type(): ("flaky",)}), {"flaky": f"{prefix}.flaky"})
    desk = exception_desk(app)
    with running_worker(app, threads=2):
        app.broker.enqueue(message)
        assert wait_until(lambda: len(desk.cases()) == 1, timeout=30)
        [case] = desk.cases()
        assert (case.owner, case.kind, case.subject, case.occurrences) == (
            "platform_team", "flaky.dead_letter", "ENG-ACME-0001", 1)  # an actor the router has no owner of
        assert case.dead_letters == (("flaky", message.message_id),)
        assert "the ERP refused the project" in case.detail

        for key, value in worker_env(prefix).items():
            monkeypatch.setenv(key, value)
        runner = CliRunner()
        listed = runner.invoke(main, ["exceptions", "list", "--owner", "platform_team", "--output", "json"])
        assert listed.exit_code == 0, listed.output
        assert [c["id"] for c in json.loads(listed.stdout)] == [case.case_id]
        assert json.loads(runner.invoke(main, ["exceptions", "list", "--owner", "finance", "--output",
                                               "json"]).stdout) == []
        shown = runner.invoke(main, ["exceptions", "show", case.case_id[:8]])
        assert shown.exit_code == 0 and f"dead letter: flaky {message.message_id}" in shown.output
        acked = runner.invoke(main, ["exceptions", "ack", case.case_id[:8], "--note", "on it", "--output", "json"])
        assert acked.exit_code == 0 and json.loads(acked.stdout)["state"] == "acknowledged"
        assert json.loads(acked.stdout)["state_by"].startswith("cli:")

        app.redis.delete(f"{prefix}:flaky:fail")  # the cause is fixed
        resolved = desk.resolve(case.case_id, by="test", note="fixed", retry=True)
        assert resolved.replayed == (message.message_id,) and resolved.case.state == "resolved"
        assert wait_until(lambda: app.redis.get(f"{prefix}:flaky:done") == b"1", timeout=30)
        assert queue_depth(f"{prefix}.flaky.XQ") == 0
        assert desk.case(case.case_id).dead_letters == ()  # replayed: not replayed twice


def _sources(tmp_path: Path) -> tuple[Path, str, str]:
    path, creds = write_sources(tmp_path)
    key = secrets.token_urlsafe(24)
    path.write_text(path.read_text() + f"""\
  - id: ops
    description: the operations team's tools
    sources: ["ops://tools"]
    event_types: ["ops.*"]
    queries: [exceptions, exception_actions]
    credentials:
      - {{scheme: api_key, sha256: {hashlib.sha256(key.encode()).hexdigest()}}}
    quota: 100/minute
""")
    return path, key, creds.api_key


@pytest.mark.integration
def test_the_inbox_over_http_lists_shows_acknowledges_and_resolves_for_a_source_allowed_to(
        app: Runtime, tmp_path: Path) -> None:
    inbox = SqlExceptionInbox(app.db)
    case = inbox.record(raised("h-1", owner="finance", subject="INV-9"))
    path, key, other = _sources(tmp_path)
    ops = {"authorization": f"Bearer {key}"}
    with serving(app, load(path)) as url:
        listed = httpx.get(f"{url}/v1/exceptions", params={"owner": "finance"}, headers=ops)
        assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
        assert [c["id"] for c in listed.json()["cases"]] == [case.case_id]
        assert httpx.get(f"{url}/v1/exceptions", params={"owner": "pmo"}, headers=ops).json() == {"cases": []}
        assert httpx.get(f"{url}/v1/exceptions", params={"older_than": "2x"}, headers=ops).status_code == 400
        shown = httpx.get(f"{url}/v1/exceptions/{case.case_id[:8]}", headers=ops)
        assert shown.status_code == 200 and shown.json()["subject"] == "INV-9"
        assert httpx.get(f"{url}/v1/exceptions/ffffffff", headers=ops).status_code == 404
        refused = httpx.get(f"{url}/v1/exceptions", headers={"authorization": f"Bearer {other}"})
        assert refused.status_code == 403
        assert httpx.get(f"{url}/v1/exceptions").status_code == 401
        acked = httpx.post(f"{url}/v1/exceptions/{case.case_id}/acknowledge", json={"note": "on it"}, headers=ops)
        assert acked.status_code == 200, acked.text
        assert (acked.json()["state"], acked.json()["state_by"]) == ("acknowledged", "api:ops")
        retry = httpx.post(f"{url}/v1/exceptions/{case.case_id}/resolve", json={"retry": True}, headers=ops)
        assert retry.status_code == 400 and "no dead letter" in retry.json()["detail"]
        done = httpx.post(f"{url}/v1/exceptions/{case.case_id}/resolve", json={"note": "credit note"}, headers=ops)
        assert done.status_code == 200 and done.json()["state"] == "resolved"
    assert inbox.case(case.case_id).note == "credit note"
