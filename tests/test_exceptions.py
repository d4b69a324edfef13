"""Dead letters become exception events routed to their owner, on the real broker."""

from __future__ import annotations

import pytest

from hub.cli.scenario import project_created
from hub.events import CloudEvent
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.support.rabbit import wait_until

pytestmark = pytest.mark.integration


def test_a_dead_lettered_fan_out_raises_an_exception_event_for_the_platform_team(app: Runtime) -> None:
    assert app.dispatcher is not None
    event = project_created(app.registry)
    # Data that does not decode: the fan-out refuses it with a permanent error, never retried.
    corrupt = CloudEvent(event.get_attributes(), b"\x00not avro")
    with app.subscription("hub.exception.raised.v1") as receive, \
            running_worker(app, threads=2):
        app.dispatcher.dispatch(corrupt)
        raised = {}
        for _ in range(4):  # the provisioning actor refuses it too; each raises its own exception
            delivery = receive(20.0)
            assert delivery is not None
            found = app.registry.decode("hub.exception.raised.v1", delivery.body)
            raised[found["kind"]] = found
            if "fanout.dead_letter" in raised:
                break
        assert wait_until(lambda: any(h.outcome == "dead" for h in app.flight.hops(event.get_id())))
    data = raised["fanout.dead_letter"]
    assert data["owner"] == "platform_team"
    assert data["kind"] == "fanout.dead_letter"
    assert data["event_id"] == event.get_id()
    assert "permanent error" in data["detail"]
