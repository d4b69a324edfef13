"""The embedded mode's publisher: the ingress hands events to the in-process dispatcher (StubBroker)."""

from __future__ import annotations

import asyncio

from hub.dispatch import Dispatcher
from hub.events import CloudEvent
from observability.flight import Writes


class DispatcherPublisher:
    """``EventPublisher`` over the synchronous dispatcher, for the embedded mode and nothing else."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    @property
    def ready(self) -> bool:
        """The in-process broker is always there."""
        return True

    async def publish(self, event: CloudEvent, *, root_id: str | None = None,
                      writes: Writes | None = None) -> list[str]:
        """Dispatch in a thread (the StubBroker enqueue is synchronous)."""
        messages = await asyncio.to_thread(self.dispatcher.dispatch, event)
        return [message.message_id for message in messages]

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to close."""
