"""Dropping second copies on the consumer's side of ``hub.events``, by the event's (``source``, ``id``).

Delivery on the topic exchange is at-least-once: a fan-out worker that dies between RabbitMQ's confirm
and its idempotency ``done`` mark publishes the event again when its message is redelivered, and a
publish whose confirm was lost is retried. The copy carries the same CloudEvents ``source`` and ``id``
(and the same AMQP ``message_id``). CloudEvents makes ``id`` unique per ``source`` only, so the key of
an event is the pair (:class:`EventKey`), read from the ``ce-`` headers by :func:`key_of`.

A :class:`DuplicateWindow` remembers the keys of the events a consumer has handled: :class:`MemoryWindow`
in the process, bounded by count and age; :class:`RedisWindow` shared by the consumer's instances and
kept across restarts, one key per event with a TTL (``SET NX EX``). :func:`handle_once` remembers a key
only after its handler returned, so a consumer that dies half-way handles the redelivery again instead
of losing it (the mistake a ``SET NX`` before handling makes); two copies handled at the same instant
are both handled, which is still at-least-once.

Nothing of the hub's runtime is needed (no settings, broker or Dramatiq): the standard library, and a
``redis`` client for :class:`RedisWindow`. A Redis error reaches the caller, who then does not
acknowledge the message: it comes back and is handled then.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import redis

__all__ = ["DuplicateWindow", "EventKey", "MemoryWindow", "RedisWindow", "handle_once", "key_of"]


class EventKey(NamedTuple):
    """What makes an event the same event: its ``source`` and its ``id`` (unique per source)."""

    source: str
    id: str


def key_of(headers: Mapping[str, Any]) -> EventKey:
    """The key of an event received in the CloudEvents binary binding (``ce-source``, ``ce-id`` headers)."""
    values = []
    for name in ("ce-source", "ce-id"):
        value = headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str) or not value:
            raise ValueError(f"no {name} header: not a CloudEvent in the binary binding")
        values.append(value)
    return EventKey(*values)


class DuplicateWindow(Protocol):
    """The keys of the events a consumer has handled, within a bound."""

    def seen(self, key: EventKey) -> bool:
        """Whether an event with this key was handled within the window."""
        ...

    def remember(self, key: EventKey) -> bool:
        """Record the key as handled; False when it was already (another copy got there first)."""
        ...


def handle_once(window: DuplicateWindow, key: EventKey, handle: Callable[[], object]) -> bool:
    """Run ``handle`` unless the event was handled within ``window``; True when it ran.

    The key is remembered after ``handle`` returned: an exception (or a crash) leaves it out, so the
    redelivered message is handled again.
    """
    if window.seen(key):
        return False
    handle()
    window.remember(key)
    return True


class MemoryWindow:
    """:class:`DuplicateWindow` in this process: the last ``max_events`` keys, each for ``max_age_s``.

    The oldest key is forgotten first; a copy seen again does not make its key younger. The window goes
    with the process, which is right for a consumer that acknowledges after handling: what a crash loses
    from the window is redelivered and handled again.
    """

    def __init__(self, *, max_events: int = 100_000, max_age_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if max_age_s is not None and max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._clock = clock
        self._handled: OrderedDict[EventKey, float] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def seen(self, key: EventKey) -> bool:
        """Whether an event with this key was handled within the window."""
        with self._lock:
            self._expire()
            return key in self._handled

    def remember(self, key: EventKey) -> bool:
        """Record the key as handled; False when it was already."""
        with self._lock:
            self._expire()
            if key in self._handled:
                return False
            self._handled[key] = self._clock()
            while len(self._handled) > self.max_events:
                self._handled.popitem(last=False)
            return True

    def _expire(self) -> None:
        if self.max_age_s is None:
            return
        oldest = self._clock() - self.max_age_s
        while self._handled and next(iter(self._handled.values())) <= oldest:
            self._handled.popitem(last=False)


class RedisWindow:
    """:class:`DuplicateWindow` in Redis, shared by a consumer's instances: one key per event, for ``ttl_s``.

    ``prefix`` names the consumer: two consumers must not share it, or one's handling would make the other
    skip the event. ``ttl_s`` must cover the longest the hub's workers may stay down, since a copy comes
    when a worker handles the redelivered message.
    """

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int = 86_400) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        self._client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def redis_key(self, key: EventKey) -> str:
        """Where the event's mark lives (a digest: ids and sources may be long)."""
        # NUL cannot occur in a CloudEvents String, so the pair is read back unambiguously.
        digest = hashlib.sha256(f"{key.source}\x00{key.id}".encode()).hexdigest()[:32]
        return f"{self.prefix}:seen:{digest}"

    def seen(self, key: EventKey) -> bool:
        """Whether an event with this key was handled within the window."""
        return bool(self._client.exists(self.redis_key(key)))

    def remember(self, key: EventKey) -> bool:
        """Record the key as handled for ``ttl_s`` (``SET NX EX``); False when it was already."""
        return bool(self._client.set(self.redis_key(key), b"1", nx=True, ex=self.ttl_s))
