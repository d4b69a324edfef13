"""Running a simulator outbox's retry schedule of hours or days on a hand-moved clock, attempt by attempt.

Each step waits for the outbox's own signal that it has made every attempt due (``Outbox.idle``), then
moves the clock to its next due attempt; nothing waits for real time.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import httpx

from simulators.kit.clock import ManualClock
from simulators.kit.outbox import Outbox


def run_schedule(outbox: Outbox, clock: ManualClock, *, steps: int = 1_000) -> None:
    """Make every attempt the outbox will make, moving ``clock`` to each, until nothing waits."""
    for _ in range(steps):
        assert outbox.idle(timeout_s=10), "the outbox did not make its due attempts"
        due = outbox.next_due()
        if due is None:
            return
        clock.advance_to(due)
    raise AssertionError(f"still retrying after {steps} steps")


def answering(status: Callable[[httpx.Request], int], clock: ManualClock,
              seen: list[tuple[float, httpx.Request]]) -> httpx.MockTransport:
    """A receiver answering ``status(request)`` that notes when (by ``clock``) each request came."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((clock.now(), request))
        return httpx.Response(status(request))

    return httpx.MockTransport(handle)


def gaps(times: list[float]) -> list[float]:
    """The waits between consecutive attempts."""
    return [later - earlier for earlier, later in pairwise(times)]
