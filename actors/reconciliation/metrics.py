"""Reconciliation's figures for ``/metrics``, read at each scrape from the newest completed run."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from actors.reconciliation.classes import CLASSES
from actors.reconciliation.store import ReconciliationStore
from observability.metrics import RECONCILIATION_DIFFERENCES, RECONCILIATION_DURATION, RECONCILIATION_LAST_RUN


class ReconciliationGauges:
    """``hub_reconciliation_differences{code, class}`` found by the newest completed run (every class, 0 included),
    ``hub_reconciliation_last_run_timestamp_seconds`` and ``hub_reconciliation_last_run_duration_seconds``."""

    def __init__(self, store: ReconciliationStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """Read the newest completed run (nothing before the first one)."""
        run = next((r for r in self.store.runs(limit=20) if r.status == "completed"), None)
        found = GaugeMetricFamily(RECONCILIATION_DIFFERENCES, "Differences the newest completed reconciliation run "
                                  "found, by class.", labels=["code", "class"])
        last = GaugeMetricFamily(RECONCILIATION_LAST_RUN, "When the newest completed reconciliation run ended (Unix "
                                 "time).")
        duration = GaugeMetricFamily(RECONCILIATION_DURATION, "How long the newest completed reconciliation run took.")
        if run is not None and run.finished_at is not None:
            for cls in CLASSES:
                found.add_metric([cls.code, cls.name], float(run.counts.get(cls.code, 0)))
            last.add_metric([], run.finished_at.timestamp())
            duration.add_metric([], run.duration_ms / 1000)
        yield from (found, last, duration)
