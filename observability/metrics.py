"""Prometheus metrics: every metric the hub exports, declared once here with bounded labels, the worker
middleware that counts messages, and the exposition of ``/metrics``.

Labels name routes, actors, outcomes, targets, hold codes and owners, never a project code, an invoice
number or an event id: a label set stays small whatever the traffic.

Several processes (``hub worker --processes N``): each writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, chosen when the variable is set before the
process starts) and one exposition adds them up (:func:`exposition`). ``hub worker`` sets the variable for
the processes it starts. Gauges a scrape computes from shared state (queue depths, held invoices, open
exceptions) are *collectors* given to :func:`exposition`: they read RabbitMQ or the database, so every
process would read the same figure and none needs adding up.

Why not Dramatiq's ``dramatiq.middleware.prometheus``: it sets its registry up in ``after_process_boot``,
which only Dramatiq's own command line emits (``hub worker`` runs :class:`dramatiq.Worker` itself), serves on a
port of its own from a forked process, reads its settings from ``dramatiq_prom_*`` variables and creates its
folder at import; and it cannot tell a retry from a wait for a lock, nor a dead letter from a parked poison
message. :class:`MetricsMiddleware` keeps its hook positions and its histogram's idea, with the hub's outcomes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import dramatiq
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "MetricsMiddleware", "exposition", "multiprocess_dir"]

#: The content type of :func:`exposition`.
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FLOW = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86_400.0)

# -- the ingress

HTTP_REQUESTS = Counter("hub_http_requests_total", "HTTP requests answered by the ingress.",
                        ["method", "route", "status", "problem"])
HTTP_DURATION = Histogram("hub_http_request_duration_seconds", "Time the ingress took to answer.",
                          ["method", "route"], buckets=_LATENCY)
PUBLISH_DURATION = Histogram("hub_publish_seconds", "One confirmed publish to RabbitMQ, confirm included.",
                             ["publisher"], buckets=_LATENCY)

# -- the workers

MESSAGES = Counter("hub_messages_total", "Attempts of actor messages by outcome: ok, retried, waited (lock, "
                   "circuit or prerequisite), dead_lettered, parked (poison), skipped (duplicate).",
                   ["actor", "outcome"])
MESSAGE_DURATION = Histogram("hub_message_duration_seconds", "Time one attempt of an actor message took.",
                             ["actor"], buckets=_LATENCY)
WORKERS = Gauge("hub_worker_processes", "Worker processes consuming.", multiprocess_mode="livesum")
BREAKER_STATE = Gauge("hub_circuit_breaker_state", "A target's circuit breaker: 0 closed, 1 half-open, 2 open "
                      "(the worst of the processes').", ["target"], multiprocess_mode="livemax")
TOKEN_FAILURES = Counter("hub_token_refresh_failures_total", "Sign-ins of the hub that failed, by provider.",
                         ["provider"])
JOB_RUNS = Counter("hub_scheduled_job_runs_total", "Runs of the hub's scheduled jobs by outcome.", ["job", "outcome"])

# -- the business

PROVISIONING = Histogram("hub_provisioning_seconds", "From the ERP's project event to its workspace provisioned.",
                         buckets=_FLOW)
SYNC_LAG = Histogram("hub_master_data_sync_lag_seconds", "From a change in the ERP to its record applied.",
                     ["entity"], buckets=_FLOW)
SIGNATURE_TO_BILLING = Histogram("hub_signature_to_billing_seconds",
                                 "From an envelope's completion to billing enabled in the ERP.", buckets=_FLOW)

#: Names of the gauges the scrape collectors export (``hub.gauges``, the patterns' own): declared here so that
#: every metric name the hub exports is in this module.
QUEUE_MESSAGES = "hub_queue_messages"
INVOICES = "hub_invoices"
INVOICES_HELD = "hub_invoices_held"
INVOICE_HELD_OLDEST = "hub_invoice_held_oldest_seconds"
EXCEPTIONS_OPEN = "hub_exceptions_open"
EXCEPTION_OLDEST = "hub_exception_oldest_open_seconds"
SUBSCRIPTION_EXPIRY = "hub_graph_subscription_expiry_seconds"
RECONCILIATION_DIFFERENCES = "hub_reconciliation_differences"
RECONCILIATION_LAST_RUN = "hub_reconciliation_last_run_timestamp_seconds"
RECONCILIATION_DURATION = "hub_reconciliation_last_run_duration_seconds"
JOB_LAST_RUN = "hub_scheduled_job_last_run_timestamp_seconds"
SCRAPE_ERRORS = "hub_metrics_collector_errors"

_STATE = {"closed": 0, "half_open": 1, "open": 2}
_WAITS = frozenset({"EntityLocked", "CircuitOpen", "NotYet"})


def breaker_state(target: str, state: str) -> None:
    """Record a circuit breaker's state (``closed``, ``half_open``, ``open``) for ``target``."""
    BREAKER_STATE.labels(target).set(_STATE.get(state, 0))


def outcome(exception: BaseException | None, failed: bool) -> str:
    """The outcome label of one attempt (pure): Retries has decided by the time after-hooks read it."""
    if exception is None:
        return "ok"
    names = {cls.__name__ for cls in type(exception).__mro__}
    if failed:
        return "parked" if "PoisonMessage" in names else "dead_lettered"
    return "waited" if names & _WAITS else "retried"


class MetricsMiddleware(dramatiq.Middleware):
    """Counts every attempt of an actor message by outcome and times it.

    Where it sits: before the retry middleware (as the flight recorder), so its after-hooks, which run in
    reverse order, see whether the message was failed (dead-lettered) or retried.
    """

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """One more process consuming."""
        WORKERS.inc()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        """One process fewer."""
        WORKERS.dec()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Start timing the attempt."""
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        """Count the attempt by outcome, and its time."""
        started = self._started.pop(message.message_id, None)
        if started is not None:
            MESSAGE_DURATION.labels(message.actor_name).observe(time.perf_counter() - started)
        MESSAGES.labels(message.actor_name, outcome(exception, bool(message.failed))).inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Count a skipped attempt (a duplicate, or parked when the skipping middleware failed it)."""
        self._started.pop(message.message_id, None)
        MESSAGES.labels(message.actor_name, "parked" if message.failed else "skipped").inc()


def multiprocess_dir() -> str | None:
    """The folder of the multiprocess mode, when this process runs in it (``PROMETHEUS_MULTIPROC_DIR``, read by
    prometheus-client at import)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Process:
    """This process's own metrics, as a collector of a fresh registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


#: Scrapes of this process in which a collector failed, by the collector's class name.
_FAILED: dict[str, int] = {}


class _Guarded:
    """A scrape collector whose failure (a server away) costs its own figures, not the scrape."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        name = type(self.collector).__name__
        try:
            metrics = list(self.collector.collect())
        except Exception:  # the other figures are still worth a scrape
            _FAILED[name] = _FAILED.get(name, 0) + 1
            metrics = []
        yield from metrics


class _Failures:
    """``hub_metrics_collector_errors{collector}``: scrapes in which a collector could not read its server."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))

    def collect(self) -> Iterator[Metric]:
        failed = Metric(SCRAPE_ERRORS, "Scrapes in which a collector could not read its server.", "gauge")
        for name in self.names:
            failed.add_sample(SCRAPE_ERRORS, {"collector": name}, float(_FAILED.get(name, 0)))
        yield failed


def exposition(collectors: Iterable[Collector] = (), *, path: str | None = None) -> bytes:
    """The text exposition of the metrics: every process's of ``path`` (default: this process's multiprocess
    folder, if any) or this process's, and what ``collectors`` read now."""
    registry = CollectorRegistry(auto_describe=False)
    folder = path or multiprocess_dir()
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Process())
    listed = list(collectors)
    for collector in listed:
        registry.register(_Guarded(collector))
    if listed:
        registry.register(_Failures(type(collector).__name__ for collector in listed))
    return generate_latest(registry)
