"""Retries that take their cue from the error tree and never lose a message.

Differences from Dramatiq's ``Retries``: a :class:`~hub.errors.PermanentError` is dead-lettered at
once; ``retry_after`` of a :class:`~hub.errors.RetryableError` sets the delay; every delay is capped
below RabbitMQ's ``consumer_timeout`` (a delayed message is held unacknowledged until due); and a
re-enqueue that fails dead-letters the message instead of acking it away, unless it failed for want of
RabbitMQ: then the retry is held until the broker answers again (:meth:`HubRetries._retry`).

Waiting for an entity's lock (:class:`~hub.errors.EntityLocked`) is not a failed attempt. A holder that
died keeps the lock for its whole lifetime (30 s, 60 s), and counting each wait against the message's
retries dead-lettered every update to that entity meanwhile. So lock waits have a budget of their own, a
time: two lifetimes of the lock from the first wait in a row (one for a dead holder's lock to run out, one
for a holder that takes it meanwhile). Their delays start short (a live holder is usually done within a
second), double, and never reach past the moment the lock runs out (:func:`lock_wait_delay`). A wait
still counts as an attempt in ``retries`` (the flight record and the spans number attempts by it), and
``hub_lock_waits`` says how many of them were waits, so the failure budget and its backoff leave them out.

A call refused by an open circuit breaker (:class:`~hub.errors.CircuitOpen`) was never sent: the target
failed for other messages, not for this one. Counting it as a failure, with a delay capped by the actor's
backoff, burnt a message's attempts within one open period (a replay started while the breaker was still
open was dead-lettered again at once). So circuit waits are waits too: the delay is the time until the
breaker lets a call through (plus up to a quarter, so waiters do not return together), capped only by the
hub's longest delay; ``hub_circuit_waits`` counts them apart from failures; and their budget is a time,
from the run's first circuit wait: as long as the failure budget's backoff would have lasted, and at least
three open periods (one to wait out, one for a trial that fails, one more), after which the message is
dead-lettered saying which circuit stayed open (:func:`circuit_wait_horizon_ms`).

A prerequisite that does not exist yet (:class:`~hub.errors.NotYet`: the project's workspace not provisioned
when its signed SOW arrives, a project the ERP does not know yet) is a wait too: sources deliver in any order,
and dead-lettering at once left the SOW unfiled although the workspace appeared seconds later. The delay backs
off as a failure's would (from ``min_backoff``, doubling, capped by the actor's longest delay), the waits are
counted apart (``hub_prerequisite_waits``), and their budget is the hub's horizon for prerequisites
(``HUB_PREREQUISITE_WAIT_S``) from the run's first such wait; the last retry comes at the horizon, after which
the message is dead-lettered naming what is missing, and its owner gets a ``<actor>.prerequisite_missing`` case.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.common import compute_backoff
from dramatiq.errors import Retry
from dramatiq.middleware import Retries

from hub.errors import CircuitOpen, EntityLocked, HubError, NotYet, RetryableError, StoreUnavailable
from hub.store import DeadLetterReasons
from observability.flight import describe_error
from observability.logging import get_logger

log = get_logger(__name__)

#: The first wait for a lock: a live holder is usually done within it.
LOCK_WAIT_FIRST_MS = 200
#: How long a retry is held while RabbitMQ does not answer before the message is dead-lettered (seconds).
RETRY_HOLD_S = 300.0
#: How long a message waits for a prerequisite that does not exist yet, by default (seconds).
PREREQUISITE_WAIT_S = 3_600.0
#: How long after a lock runs out its waiter comes back (Redis expires keys to the millisecond).
LOCK_EXPIRY_MARGIN_MS = 50


def lock_wait_delay(waits: int, remaining_ms: int, *, max_ms: int, first_ms: int = LOCK_WAIT_FIRST_MS,
                    jitter: Callable[[], float] = random.random) -> int:
    """The delay before a message that found an entity locked tries again, in milliseconds.

    ``waits``: lock waits in a row before this one; ``remaining_ms``: the lock's time left. The delay
    doubles from ``first_ms`` and never goes past the lock's end (plus a margin), so a dead holder's lock
    is waited out with a handful of tries and a live one's is retried soon. The jitter only lengthens (by
    up to a quarter): waiters spread out without coming back before the lock runs out. Capped at
    ``max_ms``, the hub's longest delay (below RabbitMQ's ``consumer_timeout``).
    """
    backoff = first_ms * 2 ** min(waits, 30)
    target = min(backoff, max(remaining_ms, 0) + LOCK_EXPIRY_MARGIN_MS)
    return int(min(target + target * jitter() / 4, max_ms))


def lock_wait_horizon_ms(ttl_ms: int) -> int:
    """How long a message waits for one lock, from its first wait in a row, before it is dead-lettered: two
    lifetimes of the lock (a dead holder's runs out within one; the other covers a holder taking it
    meanwhile)."""
    return 2 * ttl_ms


def circuit_wait_horizon_ms(reset_s: float, *, max_retries: int | None, min_backoff: int, max_backoff: int
                            ) -> int | None:
    """How long a message waits behind open circuit breakers in one run before it is dead-lettered, or None
    when its retries are unbounded: the nominal time of its failure budget's backoff (the outage it would
    have outlived had every call been sent and failed), and at least three of the breaker's open periods."""
    if max_retries is None:
        return None
    budget = sum(min(min_backoff * 2 ** min(attempt, 30), max_backoff) for attempt in range(max_retries))
    return int(max(budget, 3 * reset_s * 1000))


def circuit_wait_delay(retry_after_s: float, *, max_ms: int, jitter: Callable[[], float] = random.random) -> int:
    """The delay before a message refused by an open breaker tries again, in milliseconds: until the breaker
    lets a call through, lengthened by up to a quarter so the waiters do not all come back at once (only
    one of them gets the half-open trial), capped at ``max_ms``, the hub's longest delay."""
    target = max(retry_after_s, 0.0) * 1000 + LOCK_EXPIRY_MARGIN_MS
    return int(min(target + target * jitter() / 4, max_ms))


def describe(exception: BaseException) -> str:
    """A one-line, secret-free description of an exception (or of the error a ``RetryLater`` wraps)."""
    cause = getattr(exception, "cause", None)
    return describe_error(cause if isinstance(cause, BaseException) else exception)


class HubRetries(Retries):
    """Dramatiq's retry middleware, made safe for the hub (see the module docstring)."""

    def __init__(
        self,
        *,
        max_retries: int,
        min_backoff: int,
        max_backoff: int,
        reasons: DeadLetterReasons | None,
        hold_s: float = RETRY_HOLD_S,
        prerequisite_wait_s: float = PREREQUISITE_WAIT_S,
    ) -> None:
        super().__init__(max_retries=max_retries, min_backoff=min_backoff, max_backoff=max_backoff)
        self.reasons = reasons
        #: How long a retry that cannot be enqueued for want of RabbitMQ is held (see :meth:`_retry`).
        self.hold_s = hold_s
        #: How long a message waits for a prerequisite that does not exist yet (:class:`~hub.errors.NotYet`).
        self.prerequisite_wait_s = prerequisite_wait_s

    @property
    def actor_options(self) -> set[str]:
        """Dramatiq's retry options plus ``on_dead_letter``: an actor told of every dead letter."""
        return {*super().actor_options, "on_dead_letter"}

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """Retry, or dead-letter with a recorded reason."""
        if exception is None:
            return
        actor = broker.get_actor(message.actor_name)
        attempt = int(message.options.get("retries", 0)) + 1
        throws = message.options.get("throws") or actor.options.get("throws")
        permanent = isinstance(exception, HubError) and not exception.retryable
        if permanent or (throws and isinstance(exception, throws)):
            self._dead_letter(broker, message, exception, "permanent error", attempt)
            return

        if isinstance(exception, EntityLocked):
            self._wait_for_lock(broker, message, actor, exception, attempt)
            return
        message.options.pop("hub_lock_wait", None)  # a wait in a row ends with any other outcome
        max_retries = message.options.get("max_retries", actor.options.get("max_retries", self.max_retries))
        if isinstance(exception, CircuitOpen):
            self._wait_for_circuit(broker, message, actor, exception, attempt, max_retries)
            return
        if isinstance(exception, NotYet):
            self._wait_for_prerequisite(broker, message, actor, exception, attempt)
            return
        retries = message.options.setdefault("retries", 0)
        # Lock, circuit and prerequisite waits are attempts too (numbered in the flight record), but not failed ones.
        failures = retries - int(message.options.get("hub_lock_waits", 0)) \
            - int(message.options.get("hub_circuit_waits", 0)) - int(message.options.get("hub_prerequisite_waits", 0))
        message.options["retries"] = retries + 1
        message.options["requeue_timestamp"] = int(time.time() * 1000)
        message.options["traceback"] = describe(exception)
        if max_retries is not None and failures >= max_retries:
            self._dead_letter(broker, message, exception, f"retries exhausted after {attempt} attempts", attempt)
            return

        delay = self._delay(message, actor, failures, exception)
        if not self._retry(broker, message, exception, delay, attempt):
            return
        # A retry for want of Redis is said once per outage by the link to Redis (hub.connectivity).
        report = log.debug if isinstance(getattr(exception, "cause", exception), StoreUnavailable) else log.info
        report("retrying message", delay_ms=delay, attempt=retries + 1, error=describe(exception))

    def _wait_for_lock(self, broker: dramatiq.Broker, message: Any, actor: Any, exception: EntityLocked,
                       attempt: int) -> None:
        """Retry a message that found its entity locked, on the lock-wait budget (the module docstring)."""
        now = int(time.time() * 1000)
        wait = message.options.setdefault("hub_lock_wait", {"since": now, "waits": 0})
        waited = now - int(wait["since"])
        message.options["retries"] = int(message.options.get("retries", 0)) + 1
        message.options["hub_lock_waits"] = int(message.options.get("hub_lock_waits", 0)) + 1
        message.options["requeue_timestamp"] = now
        message.options["traceback"] = describe(exception)
        if waited >= lock_wait_horizon_ms(exception.ttl_ms):
            why = f"lock {exception.lock} still held after {waited} ms of waiting (its lifetime: {exception.ttl_ms} ms)"
            self._dead_letter(broker, message, exception, why, attempt)
            return
        delay = lock_wait_delay(int(wait["waits"]), exception.remaining_ms, max_ms=self._max_backoff(message, actor))
        wait["waits"] = int(wait["waits"]) + 1
        if self._retry(broker, message, exception, delay, attempt):
            log.info("waiting for a lock", lock=exception.lock, delay_ms=delay, lock_left_ms=exception.remaining_ms,
                     waited_ms=waited)

    def _wait_for_circuit(self, broker: dramatiq.Broker, message: Any, actor: Any, exception: CircuitOpen,
                          attempt: int, max_retries: int | None) -> None:
        """Retry a message whose call an open breaker refused, on the circuit-wait budget (the module
        docstring)."""
        now = int(time.time() * 1000)
        since = int(message.options.setdefault("hub_circuit_wait_since", now))
        waited = now - since
        message.options["retries"] = int(message.options.get("retries", 0)) + 1
        message.options["hub_circuit_waits"] = int(message.options.get("hub_circuit_waits", 0)) + 1
        message.options["requeue_timestamp"] = now
        message.options["traceback"] = describe(exception)
        horizon = circuit_wait_horizon_ms(
            exception.reset_s, max_retries=max_retries,
            min_backoff=int(message.options.get("min_backoff", actor.options.get("min_backoff", self.min_backoff))),
            max_backoff=self._max_backoff(message, actor))
        if horizon is not None and waited >= horizon:
            why = f"circuit of {exception.target} still open after {waited} ms of waiting (the budget: {horizon} ms)"
            self._dead_letter(broker, message, exception, why, attempt)
            return
        delay = circuit_wait_delay(exception.retry_after or 0.0, max_ms=int(self.max_backoff))
        if self._retry(broker, message, exception, delay, attempt):
            log.info("waiting for a circuit", target=exception.target, delay_ms=delay, waited_ms=waited)

    def _wait_for_prerequisite(self, broker: dramatiq.Broker, message: Any, actor: Any, exception: NotYet,
                               attempt: int) -> None:
        """Retry a message whose prerequisite does not exist yet, up to the horizon (the module docstring)."""
        now = int(time.time() * 1000)
        since = int(message.options.setdefault("hub_prerequisite_wait_since", now))
        waits = int(message.options.get("hub_prerequisite_waits", 0))
        waited, horizon = now - since, int(self.prerequisite_wait_s * 1000)
        message.options["retries"] = int(message.options.get("retries", 0)) + 1
        message.options["hub_prerequisite_waits"] = waits + 1
        message.options["requeue_timestamp"] = now
        message.options["traceback"] = describe(exception)
        if waited >= horizon:
            why = f"{exception.prerequisite} still missing after {waited} ms of waiting (the horizon: {horizon} ms)"
            self._dead_letter(broker, message, exception, why, attempt)
            return
        min_backoff = int(message.options.get("min_backoff", actor.options.get("min_backoff", self.min_backoff)))
        _, backoff = compute_backoff(waits, factor=min_backoff, max_backoff=self._max_backoff(message, actor))
        delay = int(min(backoff, horizon - waited))
        if self._retry(broker, message, exception, delay, attempt):
            log.info("waiting for a prerequisite", prerequisite=exception.prerequisite, delay_ms=delay,
                     waited_ms=waited, error=describe(exception))

    def _retry(self, broker: dramatiq.Broker, message: Any, exception: BaseException, delay: int,
               attempt: int) -> bool:
        """Re-enqueue the message after ``delay`` ms; dead-letter it when that fails. True when re-enqueued.

        While RabbitMQ does not answer (a broker that stops, a connection lost), the retry is held: tried
        again each time the link to RabbitMQ may try (its backoff), for up to ``hold_s``. Dead-lettering at
        once parked messages whose only fault was the outage: a broker shutting down gracefully still
        carried the consumer's reject. A refusal by a broker that answers (a full delay queue) is
        dead-lettered at once, and so is a retry still held when the worker stops or ``hold_s`` runs out."""
        started, held = time.monotonic(), False
        while True:
            try:
                broker.enqueue(message, delay=delay)
            except Exception as enqueue_error:
                left = self.hold_s - (time.monotonic() - started)
                wait = self._reachability(broker)
                if wait is not None and left > 0 and wait(left):
                    if not held:
                        held = True
                        log.info("holding a retry until RabbitMQ answers", error=describe(enqueue_error))
                    continue
                self._dead_letter(
                    broker, message, exception, f"retry re-enqueue failed: {describe(enqueue_error)}", attempt
                )
                return False
            if held:
                log.info("held retry enqueued", held_s=round(time.monotonic() - started, 1))
            return True

    @staticmethod
    def _reachability(broker: dramatiq.Broker) -> Callable[[float], bool] | None:
        """The broker's wait for RabbitMQ to answer again (:meth:`hub.broker.HubRabbitmqBroker.wait_until_reachable`)
        when its link says RabbitMQ does not answer now; None otherwise (a broker without a link never says so)."""
        if not getattr(broker, "unreachable", False):
            return None
        wait: Callable[[float], bool] | None = getattr(broker, "wait_until_reachable", None)
        return wait

    def _max_backoff(self, message: Any, actor: Any) -> int:
        return int(min(
            message.options.get("max_backoff", actor.options.get("max_backoff", self.max_backoff)),
            self.max_backoff,
        ))

    def _delay(self, message: Any, actor: Any, retries: int, exception: BaseException) -> int:
        max_backoff = self._max_backoff(message, actor)
        if isinstance(exception, Retry) and exception.delay is not None:
            return int(min(exception.delay, max_backoff))
        if isinstance(exception, RetryableError) and exception.retry_after is not None:
            return int(min(exception.retry_after * 1000, max_backoff))
        min_backoff = message.options.get("min_backoff", actor.options.get("min_backoff", self.min_backoff))
        _, delay = compute_backoff(retries, factor=min_backoff, max_backoff=max_backoff)
        return int(delay)

    def _dead_letter(
        self, broker: dramatiq.Broker, message: Any, exception: BaseException, why: str, attempt: int
    ) -> None:
        message.fail()  # nack without requeue: RabbitMQ routes it to the dead-letter queue
        self._notify(broker, message, why, exception)
        reason = {
            "why": why,
            "error": describe(exception),
            "actor": message.actor_name,
            "attempts": attempt,
            "at": int(time.time() * 1000),
        }
        message.options["hub_dead"] = reason
        log.error("message dead-lettered", why=why, error=reason["error"])
        if self.reasons is not None:
            try:
                self.reasons.record(message.message_id, reason)
            except HubError:
                log.warning("could not record the dead-letter reason", message_id=message.message_id)

    def _notify(self, broker: dramatiq.Broker, message: Any, why: str, exception: BaseException) -> None:
        actor = broker.get_actor(message.actor_name)
        target = message.options.get("on_dead_letter") or actor.options.get("on_dead_letter")
        if not target:
            return
        try:
            failed = dict(message.options.get("hub_event") or {})
            # Its own identity (one notice per dead message), in the failed event's journey.
            notice = {**failed, "id": f"dead:{message.message_id}", "source": "hub://dead-letters",
                      "root_id": failed.get("root_id") or failed.get("id") or message.message_id}
            broker.get_actor(target).send_with_options(
                args=(message.asdict(), {"why": why, "error": describe(exception)}),
                hub_event=notice,
                trace_context=message.options.get("trace_context"),
                hub_parent=message.message_id,
            )
        except Exception:
            log.error("could not notify the dead-letter handler", handler=target, exc_info=True)

