"""Idempotency middleware: each (actor, event source, event id) runs to success at most once.

Two phases in the store: ``claim`` takes an in-progress lease with a fencing token before the actor
runs; ``complete`` writes ``done`` only after success; a failure releases the lease so the retry can
claim at once. A duplicate is skipped, a message whose lease is held elsewhere is retried when the
lease runs out, and a store outage is an explicit retry, never a silent run or a silent skip.
A worker that dies mid-message leaves its lease to expire, so the redelivery runs it again; the
actor's side effects carry :func:`side_effect_key` so that re-run duplicates nothing downstream.

Worker deaths are counted here, once each, across copies of a message: every redelivery (RabbitMQ's
``redelivered`` flag: the delivery before it was never acked, so its worker died, or stopped with the
message in hand) adds one to ``hub_crashes`` and goes on as a retry copy carrying the count, whether its
lease is still held or has run out. A copy resets the quorum queue's delivery count, so counting on
either side alone let a poison message kill more workers than ``HUB_DELIVERY_LIMIT`` (a death seen with
the lease held was counted, one seen after it expired was not, and the copy forgot RabbitMQ's count). At
``crash_limit`` deaths the message is parked as poison; RabbitMQ's ``x-delivery-limit`` stays the backstop
for deaths before this hook runs.
"""

from __future__ import annotations

import enum
import hashlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import dramatiq
import redis
from dramatiq.errors import Retry
from dramatiq.middleware import Middleware, MiddlewareError, SkipMessage

from hub.batching import ClosingWrites, run_script
from hub.errors import LeaseHeld, PermanentError, RetryableError, StoreUnavailable
from hub.store import guarded
from observability.logging import get_logger

log = get_logger(__name__)


class ClaimState(enum.Enum):
    """Outcome of trying to claim a message for processing."""

    CLAIMED = "claimed"  # this worker holds the lease; run the actor
    DONE = "done"  # an earlier delivery completed: skip as duplicate
    HELD = "held"  # another worker holds a live lease: retry later


@dataclass(frozen=True)
class Claim:
    """The answer of :meth:`IdempotencyStore.claim`."""

    state: ClaimState
    token: int = 0  # fencing token of the lease (CLAIMED), or of the holder (HELD)
    ttl_ms: int = 0  # remaining lease time (HELD)


class IdempotencyStore(Protocol):
    """Two-phase idempotency claims: an in-progress lease with a fencing token, then ``done``."""

    def claim(self, key: str, *, lease_ms: int) -> Claim:
        """Take the lease on ``key`` unless it is done or leased elsewhere."""
        ...

    def complete(self, key: str, token: int, *, done_ttl_s: int) -> bool:
        """Mark ``key`` done if this token still holds the lease (or nobody does); False when fenced off."""
        ...

    def release(self, key: str, token: int) -> bool:
        """Drop the lease if this token still holds it, so a retry can claim at once."""
        ...

    def renew(self, key: str, token: int, *, lease_ms: int) -> bool:
        """Extend a lease still held by this token."""
        ...

    def mark_done(self, key: str, token: int, *, done_ttl_s: int,
                  answer: Callable[[bool | StoreUnavailable], None]) -> None:
        """:meth:`complete` once the actor has run, possibly sent later with the message's other closing writes
        (:mod:`hub.batching`); ``answer`` is told what :meth:`complete` would return, or the
        :class:`StoreUnavailable` met."""
        ...


# KEYS[1] claim key, KEYS[2] fencing counter; ARGV[1] lease ms.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 5) == 'done:' then return {'done', tonumber(string.sub(v, 6)), 0} end
  return {'held', tonumber(string.sub(v, 7)), redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], 'lease:' .. token, 'PX', ARGV[1])
return {'claimed', token, tonumber(ARGV[1])}
"""
# KEYS[1] claim key; ARGV[1] token, ARGV[2] done ttl s.
_COMPLETE = """
local v = redis.call('GET', KEYS[1])
if v == false or v == 'lease:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'EX', ARGV[2])
  return 1
end
if v == 'done:' .. ARGV[1] then return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisIdempotencyStore:
    """:class:`IdempotencyStore` on Redis, each step one atomic Lua script. ``writes``: the worker's
    :class:`~hub.batching.ClosingWrites`, which :meth:`mark_done` goes through."""

    def __init__(self, client: redis.Redis, *, prefix: str = "hub", writes: ClosingWrites | None = None) -> None:
        self._client = client
        self._writes = writes or ClosingWrites(client)
        self._fence = f"{prefix}:idem:fence"
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def claim(self, key: str, *, lease_ms: int) -> Claim:
        """Take the lease on ``key`` unless it is done or leased elsewhere."""
        state, token, ttl = guarded(lambda: self._claim(keys=[key, self._fence], args=[lease_ms]))
        name = state.decode() if isinstance(state, bytes) else str(state)
        return Claim(ClaimState(name), int(token or 0), max(int(ttl or 0), 0))

    def complete(self, key: str, token: int, *, done_ttl_s: int) -> bool:
        """Mark ``key`` done if this token still holds the lease (or nobody does)."""
        return bool(guarded(lambda: self._complete(keys=[key], args=[token, done_ttl_s])))

    def release(self, key: str, token: int) -> bool:
        """Drop the lease if this token still holds it."""
        return bool(guarded(lambda: self._release(keys=[key], args=[token])))

    def renew(self, key: str, token: int, *, lease_ms: int) -> bool:
        """Extend a lease still held by this token."""
        return bool(guarded(lambda: self._renew(keys=[key], args=[token, lease_ms])))

    def mark_done(self, key: str, token: int, *, done_ttl_s: int,
                  answer: Callable[[bool | StoreUnavailable], None]) -> None:
        """See :meth:`IdempotencyStore.mark_done`."""

        def told(reply: Any) -> None:
            if isinstance(reply, redis.RedisError):
                answer(StoreUnavailable(f"redis unavailable: {type(reply).__name__}"))
            else:
                answer(bool(reply))

        self._writes.write(lambda target: run_script(self._complete, target, [key], [token, done_ttl_s]), told)


class RetryLater(MiddlewareError, Retry):
    """Raised from a hook to have the Retries middleware re-enqueue the message after ``delay`` ms (None:
    the retry middleware's exponential backoff with jitter, by the message's retries).

    Being a ``MiddlewareError`` it escapes the hook (anything else would be swallowed and the actor
    would run anyway); being a ``Retry`` it is retried with the given delay without an error log.
    """

    def __init__(self, message: str, *, delay: int | None, cause: Exception) -> None:
        Retry.__init__(self, message, delay=delay)
        self.cause = cause


class PoisonMessage(MiddlewareError, PermanentError):
    """A message whose every delivery ends with its worker dead: park it instead of looping."""


def idempotency_key(prefix: str, actor_name: str, source: str, event_id: str) -> str:
    """The claim key of one actor's processing of one event."""
    digest = hashlib.sha256(f"{source}\x00{event_id}".encode()).hexdigest()[:32]
    return f"{prefix}:idem:{actor_name}:{digest}"


def side_effect_key(event_id: str, actor_name: str, step: str) -> str:
    """Idempotency key for one side-effecting call: stable across redeliveries and retries."""
    return hashlib.sha256(f"{event_id}\x00{actor_name}\x00{step}".encode()).hexdigest()


@dataclass
class _Held:
    key: str
    token: int


class IdempotencyMiddleware(Middleware):
    """Claims each hub message before its actor runs and marks it done after success."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        prefix: str,
        lease_ms: int,
        done_ttl_s: int,
        crash_limit: int = 5,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.lease_ms = lease_ms
        self.done_ttl_s = done_ttl_s
        self.crash_limit = crash_limit
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    # -- hooks ---------------------------------------------------------------------------------
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Claim the message, or skip it as a duplicate, or have it retried later."""
        event = message.options.get("hub_event")
        if not event:
            return
        key = idempotency_key(self.prefix, message.actor_name, event["source"], event["id"])
        try:
            claim = self.store.claim(key, lease_ms=self.lease_ms)
        except StoreUnavailable as exc:
            # The outage is logged once by the process's link to Redis (hub.connectivity); each message
            # backs off on its own retries (a fixed delay had every message of an outage retry every two
            # seconds, and spend its retries in half a minute).
            log.debug("idempotency store unavailable; retrying message", error=str(exc))
            raise RetryLater("idempotency store unavailable", delay=None, cause=exc) from None
        if claim.state is ClaimState.DONE:
            # By its ids only (Dramatiq's own WARNING for the skip is dropped: observability.logging.DuplicateSkips).
            log.info("duplicate skipped", event_id=event["id"], event_source=event["source"],
                     actor=message.actor_name, message_id=message.message_id, idempotency_key=key)
            message.options["hub_outcome"] = "duplicate"
            raise SkipMessage("duplicate")
        if getattr(message, "redelivered", False):
            self._count_death(message, key, claim)
        if claim.state is ClaimState.HELD:
            log.info("lease held elsewhere; retrying later", lease_ttl_ms=claim.ttl_ms)
            raise RetryLater(
                "lease held by another worker",
                delay=self._jitter(claim.ttl_ms + 50),
                cause=LeaseHeld(f"lease held (token {claim.token})"),
            )
        with self._lock:
            self._held[message.message_id] = _Held(key, claim.token)
        self._ensure_renewer()

    def _count_death(self, message: Any, key: str, claim: Claim) -> NoReturn:
        """Count the death behind a redelivery; park the message at ``crash_limit``, else raise a retry
        whose copy carries the count (the module docstring says why every redelivery goes that way)."""
        crashes = int(message.options.get("hub_crashes", 0)) + 1
        message.options["hub_crashes"] = crashes
        if claim.state is ClaimState.CLAIMED:
            try:
                self.store.release(key, claim.token)  # the copy claims again at once
            except StoreUnavailable as exc:
                log.warning("could not release the lease; it expires by itself", error=str(exc))
        if crashes >= self.crash_limit:
            raise PoisonMessage(f"its worker died {crashes} times while processing it")
        held = claim.state is ClaimState.HELD
        log.info("redelivered after its worker died; retrying as a copy", deaths=crashes, lease_held=held)
        raise RetryLater(
            "redelivered after its worker died",
            delay=self._jitter(claim.ttl_ms + 50) if held else 0,
            cause=LeaseHeld(f"lease held (token {claim.token})") if held
            else RetryableError(f"redelivered: its worker died ({crashes} of {self.crash_limit})"),
        )

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """Write ``done`` after success; release the lease after a failure."""
        with self._lock:
            held = self._held.pop(message.message_id, None)
        if held is None:
            return
        key = held.key
        if exception is not None:
            # At once, not with the closing writes: the retry the next middleware enqueues must find it free.
            try:
                self.store.release(key, held.token)
            except StoreUnavailable as exc:
                log.error("could not record idempotency outcome", error=str(exc), idempotency_key=key)
            return

        def told(answer: bool | StoreUnavailable) -> None:
            if isinstance(answer, StoreUnavailable):
                # The actor already ran: the lease expires by itself and side-effect keys keep a re-run
                # harmless, so this is logged, not retried.
                log.error("could not record idempotency outcome", error=str(answer), idempotency_key=key)
            elif not answer:
                log.warning("lease lost before completion; another worker holds it", idempotency_key=key)

        self.store.mark_done(key, held.token, done_ttl_s=self.done_ttl_s, answer=told)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """A later middleware skipped the message: give the lease back."""
        self.after_process_message(broker, message, exception=SkipMessage("skipped"))

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Stop renewing leases."""
        self._stop.set()

    # -- lease renewal -------------------------------------------------------------------------
    def _ensure_renewer(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        with self._lock:
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, name="hub-lease-renewer",
                                                 daemon=True)
                self._renewer.start()

    def _renew_loop(self) -> None:
        # Long actors keep their lease; a dead worker's lease stops being renewed and expires.
        while not self._stop.wait(self.lease_ms / 3000):
            with self._lock:
                held = list(self._held.values())
            for item in held:
                try:
                    self.store.renew(item.key, item.token, lease_ms=self.lease_ms)
                except StoreUnavailable:
                    log.warning("could not renew lease", idempotency_key=item.key)

    @staticmethod
    def _jitter(delay_ms: int) -> int:
        return int(delay_ms * random.uniform(1.0, 1.25))
