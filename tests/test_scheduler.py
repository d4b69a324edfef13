"""Scheduled jobs: each slot's run claimed once across every worker process (Redis), the last run and its outcome
recorded, a run still going not started beside itself, a nightly job not started late in its slot, the hub's own
jobs (flight-record expiry) against the real Redis, and ``hub jobs``. Real Redis; a clock handed in where a test
moves time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner
from pydantic import SecretStr

from connectors.settings import GraphSettings
from connectors.sharepoint.client import GraphClient
from hub.cli import main
from hub.cli.jobs import SubscriptionGauge, expire_flight_records, scheduled_jobs
from hub.ingress.server import serve_in_thread
from hub.scheduler import Job, JobGauges, JobRecord, Scheduler
from observability.metrics import exposition
from simulators.sharepoint.config import SimulatorConfig
from tests.conftest import worker_env
from tests.support.graph_receiver import Receiver
from tests.support.graph_tenant import BARE
from tests.support.rabbit import wait_until
from tests.support.tls import loopback_tls
from tests.test_graph_notifications import TOKEN, simulator

pytestmark = pytest.mark.integration

NIGHT = datetime(2027, 3, 1, 2, 0, 5, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis()
    yield connection
    connection.close()


def test_a_slots_run_is_claimed_once_across_processes_and_its_outcome_recorded(client: redis.Redis,
                                                                                prefix: str) -> None:
    runs: list[datetime] = []
    clock = Clock(NIGHT)
    job = Job("nightly", timedelta(days=1), lambda: runs.append(clock.now) or "did it", offset=timedelta(hours=2))
    first, second = (Scheduler([job], client, prefix=prefix, clock=clock) for _ in range(2))  # two worker processes
    assert first.run_due() == ["nightly"] and second.run_due() == []
    assert first.run_due() == [] and runs == [NIGHT]
    last = JobRecord(client, prefix=prefix).last("nightly")
    assert last is not None and (last.outcome, last.detail, last.runs, last.started_at) == ("ok", "did it", 1, NIGHT)
    clock.now = NIGHT + timedelta(hours=23, minutes=50)  # still the same night's slot
    assert second.run_due() == []
    clock.now = NIGHT + timedelta(days=1)  # the next night
    assert second.run_due() == ["nightly"] and first.run_due() == []
    assert job.slot_start(job.slot(clock.now)) == datetime(2027, 3, 2, 2, 0, tzinfo=UTC)
    text = exposition([JobGauges([job], JobRecord(client, prefix=prefix))]).decode()
    assert 'hub_scheduled_job_last_run_timestamp_seconds{job="nightly",outcome="ok"}' in text


def test_a_nightly_job_found_unclaimed_past_its_grace_waits_for_the_next_night_even_after_redis_lost_its_keys(
        client: redis.Redis, prefix: str) -> None:
    """A worker started in the afternoon, or Redis restarted empty (which forgets the night's claim), does not start
    the night's reconciliation under the day's load; a job without a grace still catches up."""
    runs: list[str] = []
    clock = Clock(NIGHT)
    nightly = Job("nightly", timedelta(days=1), lambda: runs.append("nightly") or "compared",
                  offset=timedelta(hours=2), grace=timedelta(hours=1))
    renewal = Job("renewal", timedelta(days=1), lambda: runs.append("renewal") or "renewed", offset=timedelta(hours=2))
    assert Scheduler([nightly, renewal], client, prefix=prefix, clock=clock).run_due() == ["nightly", "renewal"]
    for key in client.scan_iter(f"{prefix}:*"):  # Redis restarted empty in the afternoon
        client.delete(key)
    clock.now = NIGHT + timedelta(hours=12)
    first, second = (Scheduler([nightly, renewal], client, prefix=prefix, clock=clock) for _ in range(2))
    missed_before = _missed(nightly.name)
    assert first.run_due() == ["renewal"] and second.run_due() == [] and first.run_due() == []
    assert runs == ["nightly", "renewal", "renewal"]
    assert _missed(nightly.name) == missed_before + 1  # counted once, not at each look
    clock.now = datetime(2027, 3, 2, 2, 59, tzinfo=UTC)  # the next night, 59 minutes late: within the grace
    assert second.run_due() == ["nightly", "renewal"]


def _missed(job: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("hub_scheduled_job_runs_total", {"job": job, "outcome": "missed"}) or 0.0


def test_a_failed_run_is_recorded_with_its_error_and_the_next_slot_runs_again(client: redis.Redis,
                                                                               prefix: str) -> None:
    clock = Clock(NIGHT)
    answers = iter([RuntimeError("the ERP answered 503 at https://user:pw@erp.example/x"), "recovered"])

    def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    scheduler = Scheduler([Job("hourly", timedelta(hours=1), flaky)], client, prefix=prefix, clock=clock)
    assert scheduler.run_due() == ["hourly"]
    last = JobRecord(client, prefix=prefix).last("hourly")
    assert last is not None and last.outcome == "failed"
    assert last.detail.startswith("RuntimeError: the ERP answered 503") and "pw@" not in last.detail
    clock.now += timedelta(hours=1)
    assert scheduler.run_due() == ["hourly"]
    last = JobRecord(client, prefix=prefix).last("hourly")
    assert last is not None and (last.outcome, last.detail, last.runs) == ("ok", "recovered", 2)


def test_a_run_still_going_when_the_next_slot_starts_is_not_started_beside_itself(client: redis.Redis,
                                                                                   prefix: str) -> None:
    clock, started, release = Clock(NIGHT), threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(30)
        return "done"

    job = Job("slow", timedelta(minutes=1), slow)
    first, second = (Scheduler([job], client, prefix=prefix, clock=clock) for _ in range(2))
    running = threading.Thread(target=first.run_due)
    running.start()
    assert started.wait(10)
    clock.now += timedelta(minutes=1)
    assert second.run_due() == []  # the next slot: claimed, but the first run still goes on
    release.set()
    running.join(10)
    clock.now += timedelta(minutes=1)
    assert second.run_due() == ["slow"]


def test_a_started_scheduler_runs_the_due_job_in_its_thread(client: redis.Redis, prefix: str) -> None:
    scheduler = Scheduler([Job("now", timedelta(hours=1), lambda: "ran")], client, prefix=prefix, tick_s=0.05)
    scheduler.start()
    try:
        record = JobRecord(client, prefix=prefix)
        assert wait_until(lambda: (last := record.last("now")) is not None and last.outcome == "ok", timeout=10)
    finally:
        scheduler.stop()


def test_flight_records_left_without_an_expiry_are_given_one(client: redis.Redis, prefix: str) -> None:
    client.rpush(f"{prefix}:flight:lost", "{}")
    client.rpush(f"{prefix}:flight:kept", "{}")
    client.expire(f"{prefix}:flight:kept", 100)
    assert expire_flight_records(client, prefix=prefix, ttl_s=3600) == "1 flight record(s) given an expiry"
    assert 3500 < client.ttl(f"{prefix}:flight:lost") <= 3600 and client.ttl(f"{prefix}:flight:kept") <= 100


def test_hub_jobs_lists_each_job_with_its_schedule_and_last_run(client: redis.Redis, prefix: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in worker_env(prefix).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HUB_GRAPH_NOTIFICATION_URL", "https://hub.example/v1/webhooks/graph/sharepoint")
    monkeypatch.setenv("HUB_GRAPH_CLIENT_STATE", "a-client-state")
    JobRecord(client, prefix=prefix).started("flight_record_expiry", NIGHT)
    JobRecord(client, prefix=prefix).finished("flight_record_expiry", NIGHT, "ok", "0 flight record(s) given an expiry")
    listed = CliRunner().invoke(main, ["jobs", "--output", "json"])
    assert listed.exit_code == 0, listed.output
    jobs = {job["job"]: job for job in json.loads(listed.stdout)}
    assert sorted(jobs) == ["flight_record_expiry", "graph_subscription", "readiness_rebuild", "reconciliation"]
    assert (jobs["readiness_rebuild"]["every_s"], jobs["readiness_rebuild"]["offset_s"]) == (86_400, 7_200)
    assert (jobs["reconciliation"]["every_s"], jobs["reconciliation"]["offset_s"]) == (86_400, 10_800)
    assert jobs["flight_record_expiry"]["last"]["outcome"] == "ok" and jobs["graph_subscription"]["last"] is None
    table = CliRunner().invoke(main, ["jobs"])
    assert "daily at 02:00 UTC" in table.output and "never" in table.output


def test_the_graph_subscription_job_creates_then_renews_the_subscription_and_exports_its_expiry(
        client: redis.Redis, prefix: str, tmp_path: Path) -> None:
    tls = loopback_tls(tmp_path)
    receiver, clock = Receiver(), Clock(NIGHT)
    with serve_in_thread(receiver.app, tls=tls.server) as base, \
            simulator(SimulatorConfig(token=TOKEN, notify_ca_file=tls.ca, **BARE)) as raw:
        sim = str(raw.base_url).removesuffix("/v1.0/")
        settings = GraphSettings(url=f"{sim}/v1.0", token=SecretStr(TOKEN), drive_id="workspaces",
                                 client_state=SecretStr("state-7"), notification_url=f"{base}/notify")
        graph = GraphClient.from_settings(settings)
        try:
            jobs = scheduled_jobs(prefix=prefix, client=client, flight_ttl_s=3600, graph=graph,
                                  graph_settings=settings, gate=None, out=None)
            [job] = [job for job in jobs if job.name == "graph_subscription"]
            scheduler = Scheduler([job], client, prefix=prefix, clock=clock)
            assert scheduler.run_due() == ["graph_subscription"]
            [created] = httpx.get(f"{sim}/_sim/state").json()["subscriptions"]
            clock.now += timedelta(hours=6)
            assert scheduler.run_due() == ["graph_subscription"]
            [renewed] = httpx.get(f"{sim}/_sim/state").json()["subscriptions"]
        finally:
            graph.close()
    assert renewed["id"] == created["id"] and renewed["expirationDateTime"] >= created["expirationDateTime"]
    assert receiver.validations  # Graph validated the webhook when the job subscribed it
    last = JobRecord(client, prefix=prefix).last("graph_subscription")
    assert last is not None and last.outcome == "ok" and created["id"] in last.detail
    text = exposition([SubscriptionGauge(client, prefix=prefix)]).decode()
    [line] = [line for line in text.splitlines() if line.startswith("hub_graph_subscription_expiry_seconds ")]
    assert float(line.split()[1]) > 86_400  # two days from the renewal
