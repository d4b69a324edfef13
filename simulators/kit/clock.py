"""The time an outbox schedules its retries by: the system's, or one a test moves by hand.

A vendor retries a webhook for hours or days; a test must see that schedule run to its end without
waiting for it. An outbox asks its clock what time it is and waits on its own condition through the
clock, so :class:`ManualClock` can wake it whenever a test moves time on.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Monotonic seconds, and waiting for them on a condition."""

    def now(self) -> float:
        """The time, in seconds (monotonic: only differences mean anything)."""
        ...

    def watch(self, condition: threading.Condition) -> None:
        """Wake ``condition``'s waiters whenever the time jumps (a clock that only ticks need do nothing)."""
        ...

    def wait(self, condition: threading.Condition, until: float | None) -> None:
        """Wait on ``condition`` (held by the caller) until notified, or until ``now()`` reaches ``until``."""
        ...


class SystemClock:
    """:class:`Clock` on ``time.monotonic``."""

    def now(self) -> float:
        """See :meth:`Clock.now`."""
        return time.monotonic()

    def watch(self, condition: threading.Condition) -> None:
        """See :meth:`Clock.watch`: the system's time never jumps."""

    def wait(self, condition: threading.Condition, until: float | None) -> None:
        """See :meth:`Clock.wait`."""
        condition.wait(None if until is None else max(0.0, until - self.now()))


class ManualClock:
    """:class:`Clock` whose time moves only when a test says so (:meth:`advance_to`)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._watched: list[threading.Condition] = []

    def now(self) -> float:
        """See :meth:`Clock.now`."""
        with self._lock:
            return self._now

    def watch(self, condition: threading.Condition) -> None:
        """See :meth:`Clock.watch`."""
        with self._lock:
            self._watched.append(condition)

    def wait(self, condition: threading.Condition, until: float | None) -> None:
        """See :meth:`Clock.wait`: only a notification or :meth:`advance_to` ends the wait."""
        condition.wait()

    def advance_to(self, moment: float) -> None:
        """Move the time on to ``moment`` (never back) and wake every watched condition.

        A waiter holds its condition from reading the time until it waits, and the wake-up takes the
        condition, so no waiter misses a move: it read the new time, or it is woken after it waited.
        """
        with self._lock:
            self._now = max(self._now, moment)
            watched = list(self._watched)
        for condition in watched:
            with condition:
                condition.notify_all()

    def advance(self, seconds: float) -> None:
        """Move the time on by ``seconds``."""
        self.advance_to(self.now() + seconds)
