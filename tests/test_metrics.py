"""Prometheus metrics: a worker counts its messages by outcome and serves them with its queue depths, several
worker processes are served as one, the ingress counts its answers by route, status and problem, the gate's
figures are read at the scrape, and a breaker's state is exported. Real RabbitMQ, Redis and PostgreSQL."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dramatiq
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.invoice_readiness.facts import Verdict
from actors.invoice_readiness.logic import HoldReason, Readiness
from actors.invoice_readiness.metrics import ReadinessGauges
from actors.invoice_readiness.store import SqlReadinessStore
from connectors.http import CircuitBreaker, Http, RetryPolicy
from hub.cli.compose import build_app
from hub.cli.scenario import project_created
from hub.db import Database
from hub.dispatch import Dispatcher, RoutingTable
from hub.errors import CircuitOpen, NotYet, PermanentError, UpstreamUnavailable
from hub.events import CloudEvent, make_event
from hub.exposition import worker_metrics
from hub.idempotency import PoisonMessage
from hub.runtime import Runtime
from observability.metrics import exposition, outcome
from tests.conftest import ROOT, hub_settings, worker_env
from tests.support.crash_worker import ACTOR, declare_effect_actor
from tests.support.ingress import load, serving, write_sources
from tests.support.rabbit import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition by name and labels."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_an_attempts_outcome_names_what_the_retries_decided() -> None:
    assert outcome(None, False) == "ok"
    assert outcome(UpstreamUnavailable("503"), False) == "retried"
    assert outcome(CircuitOpen("open", target="erp", retry_after=1.0, reset_s=10.0), False) == "waited"
    assert outcome(NotYet("no project", prerequisite="erp_project"), False) == "waited"
    assert outcome(PermanentError("bad"), True) == "dead_lettered"
    assert outcome(PoisonMessage("killed its worker twice"), True) == "parked"


@pytest.mark.integration
def test_a_worker_counts_its_messages_by_outcome_and_serves_them_with_its_queue_depths(prefix: str) -> None:
    runtime = build_app(hub_settings(prefix, max_retries=1), embedded=False)
    try:
        declare_effect_actor(runtime)
        dispatcher = Dispatcher(runtime.broker, RoutingTable({"erp.project.created.v1": (ACTOR,)}),
                                queues={ACTOR: runtime.broker.get_actor(ACTOR).queue_name},
                                known_types=set(runtime.registry.event_types), flight=runtime.flight)
        server = worker_metrics(runtime)
        assert server is not None
        url = f"http://127.0.0.1:{server.port}/metrics"
        before = scrape(url)

        def delta(name: str, now: Samples | None = None, **labels: str) -> float:
            return value(now or scrape(url), name, **labels) - value(before, name, **labels)

        worker = dramatiq.Worker(runtime.broker, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            dispatcher.dispatch(project_created(runtime.registry))
            assert wait_until(lambda: delta("hub_messages_total", actor=ACTOR, outcome="ok") == 1, timeout=30)
            runtime.redis.set(f"{prefix}:effect:fail", "1")  # retryable: one retry, then the dead letter
            dispatcher.dispatch(project_created(runtime.registry))
            assert wait_until(lambda: delta("hub_messages_total", actor=ACTOR, outcome="dead_lettered") == 1,
                              timeout=30)
        finally:
            worker.stop(timeout=10_000)
        after = scrape(url)
        server.stop()
    finally:
        runtime.close()

    assert delta("hub_messages_total", after, actor=ACTOR, outcome="ok") == 1
    assert delta("hub_messages_total", after, actor=ACTOR, outcome="retried") == 1
    assert delta("hub_messages_total", after, actor=ACTOR, outcome="dead_lettered") == 1
    assert delta("hub_message_duration_seconds_count", after, actor=ACTOR) == 3
    assert delta("hub_publish_seconds_count", after, publisher="worker") == 2
    assert value(after, "hub_queue_messages", actor=ACTOR, state="dead") == 1
    assert value(after, "hub_queue_messages", actor=ACTOR, state="ready") == 0
    assert value(after, "hub_metrics_collector_errors", collector="QueueDepths") == 0
    labels = {dict(key[1]).get("actor") for key in after if key[0] == "hub_messages_total"}
    assert all(label is None or not label.startswith(("ENG-", "evt")) for label in labels)


def case(runtime: Runtime, case_id: str) -> CloudEvent:
    """A ``hub.exception.raised.v1`` event (only the fan-out takes it)."""
    return make_event(runtime.registry, type="hub.exception.raised.v1", source="hub://test", id=case_id,
                      subject="ENG-T-1", data={"exception_id": case_id, "owner": "pmo", "kind": "test.case",
                                               "severity": "low", "subject": "ENG-T-1", "detail": "a test case",
                                               "project": None, "event_id": None, "event_type": None,
                                               "raised_at": datetime.now(UTC)})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def worker_processes(prefix: str, processes: int, port: int, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``hub worker --processes N`` serving its /metrics on ``port``, stopped with SIGTERM at the end."""
    env = worker_env(prefix, HUB_METRICS_BIND=f"127.0.0.1:{port}", PROMETHEUS_MULTIPROC_DIR=str(folder))
    process = subprocess.Popen([sys.executable, "-m", "hub", "worker", "--processes", str(processes),
                                "--threads", "2"], env=env, cwd=ROOT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.integration
def test_hub_worker_with_two_processes_serves_the_metrics_of_both_as_one(app: Runtime, prefix: str,
                                                                        tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    stale = tmp_path / "counter_1.db"
    stale.write_bytes(b"")  # a previous run's file: emptied at start

    def both_consuming() -> bool:
        try:
            return value(scrape(url), "hub_worker_processes") == 2
        except httpx.HTTPError:
            return False

    with worker_processes(prefix, 2, port, tmp_path):
        assert wait_until(both_consuming, timeout=60)
        assert not stale.exists()
        for number in range(4):  # to the fan-out alone
            app.dispatcher.dispatch(case(app, f"case-{number}"))
        assert wait_until(lambda: value(scrape(url), "hub_messages_total", actor="fanout", outcome="ok") == 4,
                          timeout=30)
        pids = {key for key in tmp_path.glob("counter_*.db")}
        assert len(pids) == 2  # each process wrote its own samples; the scrape added them up


@pytest.mark.integration
def test_the_ingress_counts_its_answers_by_route_status_and_problem_type(app: Runtime, tmp_path: Path) -> None:
    path, creds = write_sources(tmp_path)
    with serving(app, load(path)) as url:
        before = scrape(f"{url}/metrics")
        refused = httpx.post(f"{url}/v1/events", content=b"{}", headers={"authorization": "Bearer wrong"})
        assert refused.status_code == 401
        asked = httpx.get(f"{url}/v1/invoices/INV-1/readiness", headers={"authorization": f"Bearer {creds.api_key}"})
        assert asked.status_code == 403
        after = scrape(f"{url}/metrics")
    assert value(after, "hub_http_requests_total", method="POST", route="/v1/events", status="401",
                 problem="unauthenticated") - value(before, "hub_http_requests_total", method="POST",
                                                    route="/v1/events", status="401", problem="unauthenticated") == 1
    route = "/v1/invoices/{number}/readiness"
    assert value(after, "hub_http_requests_total", method="GET", route=route, status="403", problem="forbidden") >= 1
    assert value(after, "hub_http_request_duration_seconds_count", method="GET", route=route) >= 1
    assert not any("INV-1" in str(labels) for _, labels in after)


def test_the_gates_figures_are_read_from_its_store_at_the_scrape(database: Database) -> None:
    store = SqlReadinessStore(database)
    held = Readiness.of([HoldReason("DELIVERABLE_NOT_APPROVED", "doc-1", owner="pmo"),
                         HoldReason("RETENTION_LABEL_MISSING", "doc-2", owner="records_management")])
    store.store("P-1", [], None, verdicts={"INV-1": Verdict(held, 1), "INV-2": Verdict(Readiness.of([]), 1),
                                           "INV-3": Verdict(Readiness.of([held.reasons[0]]), 1)})
    found = samples(exposition([ReadinessGauges(store)]).decode())
    assert value(found, "hub_invoices", status="held") == 2
    assert value(found, "hub_invoices", status="ready") == 1
    assert value(found, "hub_invoices_held", code="DELIVERABLE_NOT_APPROVED") == 2
    assert value(found, "hub_invoices_held", code="RETENTION_LABEL_MISSING") == 1
    assert value(found, "hub_invoice_held_oldest_seconds", code="RETENTION_LABEL_MISSING") >= 0
    assert [invoice.invoice_number for invoice in store.held()] == ["INV-1", "INV-3"]
    assert store.held()[0].codes == ("DELIVERABLE_NOT_APPROVED", "RETENTION_LABEL_MISSING")


def test_a_collector_that_cannot_read_its_server_costs_its_figures_not_the_scrape() -> None:
    class Away:
        def collect(self) -> Iterator[object]:
            raise ConnectionError("the database does not answer")

    found = samples(exposition([Away()]).decode())  # type: ignore[list-item]
    assert value(found, "hub_metrics_collector_errors", collector="Away") >= 1


def test_a_targets_breaker_state_is_exported() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(503)))
    http = Http(client, target="metrics-test", retry=RetryPolicy(attempts=1), breaker=CircuitBreaker(threshold=2))
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            http.request("GET", "https://example.invalid/x")
    assert value(samples(exposition().decode()), "hub_circuit_breaker_state", target="metrics-test") == 2
