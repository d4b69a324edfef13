"""The scheduled jobs the composition root gives the workers, and ``hub jobs``: each with its schedule and last run.

- ``graph_subscription`` (every 6 hours, when ``HUB_GRAPH_NOTIFICATION_URL`` and ``HUB_GRAPH_CLIENT_STATE`` are
  set): the drive's change-notification subscription created or renewed for two days;
- ``readiness_rebuild`` (nightly at 02:00 UTC): the invoice-readiness gate's facts written again from the ERP and
  the workspaces (``hub readiness rebuild --all``), the verdicts that changed emitted, an hour before the
  reconciliation compares them;
- ``flight_record_expiry`` (hourly): a flight record left without an expiry is given ``HUB_FLIGHT_TTL_S``;
- ``reconciliation`` (nightly at 03:00 UTC): ``hub reconcile --repair`` over every scope: the systems of record
  compared, the safe differences repaired through the actors, the rest routed to their owners.

A pattern adds its own by giving :func:`scheduled_jobs` one more :class:`hub.scheduler.Job`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click
import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from hub.cli.common import Config, echo_json, echo_table, log_for_operator, output_option, pass_config
from hub.scheduler import Job, JobRecord, describe_jobs
from observability.metrics import SUBSCRIPTION_EXPIRY

if TYPE_CHECKING:
    from actors.invoice_readiness import ReadinessGate
    from actors.reconciliation import Reconciler
    from connectors.settings import GraphSettings
    from connectors.sharepoint.client import GraphClient
    from hub.actor import Emitting

#: Where the subscription's expiry is kept for ``/metrics`` (under the queue prefix).
SUBSCRIPTION_EXPIRY_KEY = "graph:subscription_expires"


#: The nightly jobs start only within this long of their hour (a worker started later waits for the next night).
NIGHTLY_GRACE = timedelta(hours=1)


def scheduled_jobs(*, prefix: str, client: redis.Redis, flight_ttl_s: int, graph: GraphClient,
                   graph_settings: GraphSettings, gate: ReadinessGate | None,
                   out: Callable[[], Emitting] | None, reconciler: Reconciler | None = None) -> list[Job]:
    """The hub's scheduled jobs over the runtime's clients (see the module docstring)."""
    from actors.document_intake.subscription import ensure_subscription

    jobs = [Job("flight_record_expiry", timedelta(hours=1), lambda: expire_flight_records(client, prefix=prefix,
                                                                                        ttl_s=flight_ttl_s),
                description="give a flight record left without an expiry its HUB_FLIGHT_TTL_S")]
    if gate is not None and out is not None:
        def rebuild() -> str:
            changes = gate.rebuild(out())
            return f"{len(changes)} verdict(s) changed"

        jobs.append(Job("readiness_rebuild", timedelta(days=1), rebuild, offset=timedelta(hours=2),
                        description="nightly: the gate's facts again from the ERP and the workspaces",
                        grace=NIGHTLY_GRACE))
    if reconciler is not None:
        def reconcile() -> str:
            run = reconciler.run(repair=True)
            found = sum(run.counts.values())
            return (f"run {run.run_id[:8]}: {found} difference(s), {run.repaired} repair(s) requested, "
                    f"{run.routed} routed")

        jobs.append(Job("reconciliation", timedelta(days=1), reconcile, offset=timedelta(hours=3),
                        description="nightly: the systems of record compared, safe differences repaired",
                        grace=NIGHTLY_GRACE))
    url, state = graph_settings.notification_url, graph_settings.client_state
    if url is not None and state is not None:
        def renew() -> str:
            subscription = ensure_subscription(graph, str(url), state.get_secret_value(), lifetime=timedelta(days=2))
            client.set(f"{prefix}:{SUBSCRIPTION_EXPIRY_KEY}", subscription.expiration.isoformat())
            return f"subscription {subscription.id} renewed until {subscription.expiration.isoformat()}"

        jobs.append(Job("graph_subscription", timedelta(hours=6), renew,
                        description="the document library's change notifications, renewed for two days"))
    return jobs


def expire_flight_records(client: redis.Redis, *, prefix: str, ttl_s: int) -> str:
    """Give every flight record of ``prefix`` without an expiry one of ``ttl_s``; says how many."""
    fixed = 0
    for key in client.scan_iter(f"{prefix}:flight:*", count=1000):
        if client.ttl(key) == -1 and client.expire(key, ttl_s, nx=True):
            fixed += 1
    return f"{fixed} flight record(s) given an expiry"


def subscription_expires(client: redis.Redis, *, prefix: str) -> datetime | None:
    """When the Graph subscription the job last renewed expires (None: never renewed here)."""
    raw: bytes | None = client.get(f"{prefix}:{SUBSCRIPTION_EXPIRY_KEY}")  # type: ignore[assignment]
    return datetime.fromisoformat(raw.decode()) if raw else None


class SubscriptionGauge:
    """``hub_graph_subscription_expiry_seconds``: seconds until the Graph subscription the job renewed expires."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def collect(self) -> Iterator[Metric]:
        """Read the expiry the job recorded."""
        family = GaugeMetricFamily(SUBSCRIPTION_EXPIRY, "Seconds until the Graph change-notification subscription "
                                   "expires (negative: expired).")
        expires = subscription_expires(self.client, prefix=self.prefix)
        if expires is not None:
            family.add_metric([], (expires - datetime.now(UTC)).total_seconds())
        yield family


@click.command()
@output_option
@pass_config
def jobs(config: Config, output: str) -> None:
    """The scheduled jobs the workers run: each with its schedule and last run (start, end, outcome)."""
    from hub.cli.compose import build_app

    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    try:
        described = describe_jobs(runtime.jobs, JobRecord(runtime.redis, prefix=runtime.queue_prefix))
    finally:
        runtime.close()
    if output == "json":
        echo_json(described)
        return
    now = datetime.now(UTC)
    echo_table(("job", "every", "last run", "outcome", "detail"),
               ((d["job"], _every(d["every_s"], d["offset_s"]),
                 _ago(now, d["last"]["started_at"]) if d["last"] else "never",
                 d["last"]["outcome"] if d["last"] else "-", d["last"]["detail"] if d["last"] else "")
                for d in described))


def _every(every_s: int, offset_s: int) -> str:
    if every_s % 86_400 == 0:
        return f"daily at {offset_s // 3600:02d}:{offset_s % 3600 // 60:02d} UTC" if every_s == 86_400 \
            else f"every {every_s // 86_400} d"
    return f"every {every_s // 3600} h" if every_s % 3600 == 0 else f"every {every_s // 60} min"


def _ago(now: datetime, iso: str) -> str:
    seconds = int((now - datetime.fromisoformat(iso)).total_seconds())
    return f"{seconds // 3600} h ago" if seconds >= 3600 else f"{seconds // 60} min ago"
