"""A rolling upgrade: a newer worker routes an event type it added to an actor whose older workers still consume
the actor's queue. An older worker that gets it waits for a worker that takes it instead of dead-lettering it.
Real RabbitMQ, Redis and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.actor import ActorContext, ActorSpec
from hub.cli.scenario import project_created
from hub.dispatch import RoutingTable, declare_actor, event_messages
from hub.events import make_event
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.support.rabbit import queue_depth, wait_until

pytestmark = pytest.mark.integration

CREATED, UPDATED = "erp.project.created.v1", "erp.project.updated.v1"


class Upgraded:
    """An actor whose older version takes project creations only; the newer one takes updates too."""

    def __init__(self) -> None:
        self.spec = ActorSpec(name="upgraded", triggers=(CREATED,))
        self.handled: list[str] = []

    def handle(self, context: ActorContext) -> None:
        self.handled.append(context.event.get_type())


def test_a_type_an_older_worker_does_not_take_waits_for_a_worker_that_does_and_is_never_dead_lettered(
        app: Runtime, prefix: str) -> None:
    actor = Upgraded()
    declare_actor(app.broker, actor, prefix=prefix, registry=app.registry, emitter=app.dispatcher)
    created = project_created(app.registry)
    record = app.registry.decode(CREATED, created.get_data())  # type: ignore[arg-type]
    updated = make_event(app.registry, type=UPDATED, source=created.get_source(), id="upgrade-1",
                         subject=created.get_subject(), data=record)
    queue = actor.spec.queue(prefix)
    [message] = event_messages(updated, RoutingTable({UPDATED: ("upgraded",)}), {"upgraded": queue})
    with running_worker(app, threads=2):
        app.broker.enqueue(message)
        # The older worker does not take it: it waits (a prerequisite: a worker that takes it), it is not parked.
        assert wait_until(lambda: any(hop.outcome == "retry" and (hop.error or "").startswith("NotYet")
                                      for hop in app.flight.hops("upgrade-1")), timeout=30)
        assert actor.handled == [] and queue_depth(f"{queue}.XQ") == 0
        actor.spec = replace(actor.spec, triggers=(CREATED, UPDATED))  # the newer worker takes over
        assert wait_until(lambda: actor.handled == [UPDATED], timeout=30)
    assert queue_depth(f"{queue}.XQ") == 0
