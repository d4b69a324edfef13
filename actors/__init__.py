"""Dramatiq actors, one module per integration pattern, declared on the broker by :func:`register_all`."""

from __future__ import annotations

from typing import Any

from actors import exceptions, fanout
from hub.runtime import Runtime


def register_all(runtime: Runtime) -> dict[str, Any]:
    """Declare every pattern actor on the runtime's broker; returns them by actor name."""
    declared = {
        exceptions.ACTOR_NAME: exceptions.register(runtime, owners={fanout.ACTOR_NAME: "platform_team"}),
        fanout.ACTOR_NAME: fanout.register(
            runtime.broker, queue_prefix=runtime.queue_prefix, registry=runtime.registry, topics=runtime.topics
        ),
    }
    runtime.actors.update(declared)
    return declared
