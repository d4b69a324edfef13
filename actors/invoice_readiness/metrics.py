"""The gate's figures for ``/metrics``, read from its store at each scrape: invoices held and ready, held ones by
hold code, and how long the oldest of each code has been held."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from actors.invoice_readiness.store import ReadinessStore
from observability.metrics import INVOICE_HELD_OLDEST, INVOICES, INVOICES_HELD


class ReadinessGauges:
    """``hub_invoices{status}``, ``hub_invoices_held{code}`` and ``hub_invoice_held_oldest_seconds{code}``."""

    def __init__(self, store: ReadinessStore, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store, self.now = store, now

    def collect(self) -> Iterator[Metric]:
        """Read the verdicts now."""
        statuses = self.store.statuses()
        held = self.store.held()
        invoices = GaugeMetricFamily(INVOICES, "Invoices by the gate's last verdict.", labels=["status"])
        for status in ("held", "ready"):
            invoices.add_metric([status], float(statuses.get(status, 0)))
        by_code = GaugeMetricFamily(INVOICES_HELD, "Held invoices by hold code (an invoice counts under each of its "
                                    "codes).", labels=["code"])
        oldest = GaugeMetricFamily(INVOICE_HELD_OLDEST, "Seconds since the verdict of the longest-held invoice of "
                                   "each hold code.", labels=["code"])
        counts: dict[str, int] = {}
        since: dict[str, datetime] = {}
        for invoice in held:
            for code in invoice.codes:
                counts[code] = counts.get(code, 0) + 1
                since[code] = min(since.get(code, invoice.since), invoice.since)
        now = self.now()
        for code in sorted(counts):
            by_code.add_metric([code], float(counts[code]))
            oldest.add_metric([code], max((now - since[code]).total_seconds(), 0.0))
        yield from (invoices, by_code, oldest)
