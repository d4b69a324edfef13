"""Positive signals that the hub has finished with something, for tests that must show that nothing (more)
happened. Waiting a while and then finding nothing proves nothing on a loaded machine; these read what
the hub records itself: the flight record's hops and the idempotency ``done`` marks.

A message is *finished* when its latest attempt (the highest attempt number; a retry copy counts one up)
ended ``ok``, ``skipped``, ``dead`` or ``failed``. A journey is *settled* when every message in it is:
each one the dispatcher published (it records a ``published`` hop) and each one an actor has attempted.
The ingress records no hop of its own, so a journey starting at the ingress names the actors its first
event must reach (``entry_actors``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import redis

from hub.idempotency import idempotency_key
from hub.runtime import Runtime
from observability.flight import FlightRecord, Hop
from simulators.kit import http

if TYPE_CHECKING:
    from tests.support.scenario import Scenario

#: Outcomes after which a message is not attempted again.
FINAL = frozenset({"ok", "skipped", "dead", "failed"})


def latest_outcomes(hops: Iterable[Hop]) -> dict[str, str]:
    """Each attempted message's latest outcome, by message id."""
    latest: dict[str, tuple[int, int, str]] = {}
    for order, hop in enumerate(hops):
        if hop.outcome == "published":
            continue
        seen = latest.get(hop.message_id)
        if seen is None or (hop.attempt, order) >= seen[:2]:
            latest[hop.message_id] = (hop.attempt, order, hop.outcome)
    return {message_id: outcome for message_id, (_, _, outcome) in latest.items()}


def settled(flight: FlightRecord, root_id: str, *, entry_actors: Sequence[str] = ()) -> bool:
    """Whether every message of the journey ``root_id`` is finished (and each of ``entry_actors`` has
    attempted the root event); False for a journey with no hop yet."""
    hops = flight.hops(root_id)
    if not hops:
        return False  # not seen to start
    latest = latest_outcomes(hops)
    reached = {hop.actor for hop in hops if hop.event_id == root_id and hop.outcome != "published"}
    if not set(entry_actors) <= reached:
        return False
    published = {hop.message_id for hop in hops if hop.outcome == "published"}
    return all(latest.get(message_id) in FINAL for message_id in published | set(latest))


def finished(flight: FlightRecord, event_id: str, actor: str, *, root_id: str | None = None) -> bool:
    """Whether ``actor`` is done with ``event_id``: its latest attempt on it is final."""
    hops = [h for h in flight.hops(root_id or event_id) if h.event_id == event_id and h.actor == actor]
    return bool(hops) and all(outcome in FINAL for outcome in latest_outcomes(hops).values())


def journeys(runtime: Runtime) -> list[str]:
    """The root ids of every flight record under the runtime's prefix."""
    prefix = f"{runtime.queue_prefix}:flight:"
    return sorted(key.decode().removeprefix(prefix) for key in runtime.redis.scan_iter(f"{prefix}*", count=1000))


def all_hops(runtime: Runtime) -> list[Hop]:
    """Every hop of every journey under the runtime's prefix."""
    return [hop for root in journeys(runtime) for hop in runtime.flight.hops(root)]


def published(runtime: Runtime, event_type: str, *, actor: str | None = None) -> list[Hop]:
    """Every publish of ``event_type`` by the hub's dispatcher (one hop per subscriber, or only ``actor``'s),
    across every journey under the runtime's prefix."""
    return [hop for hop in all_hops(runtime) if hop.outcome == "published" and hop.event_type == event_type
            and (actor is None or hop.actor == actor)]


def erp_events(scenario: Scenario, subject: str) -> list[tuple[str, str]]:
    """(event id, type) of every event the ERP simulator delivered about ``subject``, oldest first."""
    items = http.get(f"{scenario.sandbox.erp_url}/_sim/deliveries", timeout=10).json()["items"]
    return [(item["event_id"], item["type"]) for item in items
            if item["subject"] == subject and item["state"] == "delivered"]


def erp_events_settled(scenario: Scenario, subject: str) -> bool:
    """Whether the ERP simulator has delivered all it queued and every journey its events about ``subject``
    started is settled (False while it has sent nothing about it). The list is read again after the
    journeys, so an event the ERP sent meanwhile (the hub's own write-backs make it send more) is not
    missed."""
    scenario.sandbox.flush_erp_webhooks()
    sent = erp_events(scenario, subject)
    assert scenario.runtime.dispatcher is not None
    routes = scenario.runtime.dispatcher.routes
    return bool(sent) and all(
        settled(scenario.runtime.flight, event_id, entry_actors=routes.subscribers(event_type))
        for event_id, event_type in sent) and erp_events(scenario, subject) == sent


def done(client: redis.Redis, prefix: str, actor: str, source: str, event_id: str) -> bool:
    """Whether ``actor`` marked the event done: from then on every copy of it is skipped unrun."""
    value = client.get(idempotency_key(prefix, actor, source, event_id))
    return value is not None and bytes(value).startswith(b"done:")
