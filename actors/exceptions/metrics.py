"""The inbox's figures for ``/metrics``, read at each scrape: cases not yet resolved by owner, state and age."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from actors.exceptions.store import ExceptionInbox
from observability.metrics import EXCEPTION_OLDEST, EXCEPTIONS_OPEN

#: Age bands of the ``age`` label, by upper bound.
AGES = ((timedelta(hours=1), "lt_1h"), (timedelta(days=1), "lt_1d"), (timedelta(days=7), "lt_7d"))
OLDER = "ge_7d"


def age_band(age: timedelta) -> str:
    """The ``age`` label of a case first seen ``age`` ago."""
    return next((name for bound, name in AGES if age < bound), OLDER)


class ExceptionGauges:
    """``hub_exceptions_open{owner, state, age}`` (``state``: open or acknowledged) and
    ``hub_exception_oldest_open_seconds{owner}`` (unacknowledged only)."""

    def __init__(self, inbox: ExceptionInbox, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.inbox, self.now = inbox, now

    def collect(self) -> Iterator[Metric]:
        """Read the cases not yet resolved."""
        now = self.now()
        counts: dict[tuple[str, str, str], int] = {}
        oldest: dict[str, float] = {}
        for case in self.inbox.cases(limit=100_000):
            age = case.age(now)
            key: tuple[str, str, str] = (case.owner, str(case.state), age_band(age))
            counts[key] = counts.get(key, 0) + 1
            if case.state == "open":
                oldest[case.owner] = max(oldest.get(case.owner, 0.0), age.total_seconds())
        cases = GaugeMetricFamily(EXCEPTIONS_OPEN, "Cases in the exception inbox not resolved, by owner, state and "
                                  "age since first seen.", labels=["owner", "state", "age"])
        for key in sorted(counts):
            cases.add_metric(list(key), float(counts[key]))
        unattended = GaugeMetricFamily(EXCEPTION_OLDEST, "Seconds since the oldest unacknowledged case of each owner "
                                       "was first seen.", labels=["owner"])
        for owner in sorted(oldest):
            unattended.add_metric([owner], oldest[owner])
        yield from (cases, unattended)
