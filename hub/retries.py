"""Retries that take their cue from the error tree and never lose a message.

Differences from Dramatiq's ``Retries``: a :class:`~hub.errors.PermanentError` is dead-lettered at
once; ``retry_after`` of a :class:`~hub.errors.RetryableError` sets the delay; every delay is capped
below RabbitMQ's ``consumer_timeout`` (a delayed message is held unacknowledged until due); and a
re-enqueue that fails dead-letters the message instead of acking it away.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.common import compute_backoff
from dramatiq.errors import Retry
from dramatiq.middleware import Retries

from hub.errors import HubError, RetryableError, StoreUnavailable
from hub.store import DeadLetterReasons
from observability.flight import describe_error
from observability.logging import get_logger

log = get_logger(__name__)


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
    ) -> None:
        super().__init__(max_retries=max_retries, min_backoff=min_backoff, max_backoff=max_backoff)
        self.reasons = reasons

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

        retries = message.options.setdefault("retries", 0)
        max_retries = message.options.get("max_retries", actor.options.get("max_retries", self.max_retries))
        message.options["retries"] = retries + 1
        message.options["requeue_timestamp"] = int(time.time() * 1000)
        message.options["traceback"] = describe(exception)
        if max_retries is not None and retries >= max_retries:
            self._dead_letter(broker, message, exception, f"retries exhausted after {attempt} attempts", attempt)
            return

        delay = self._delay(message, actor, retries, exception)
        try:
            broker.enqueue(message, delay=delay)
        except Exception as enqueue_error:
            self._dead_letter(
                broker, message, exception, f"retry re-enqueue failed: {describe(enqueue_error)}", attempt
            )
            return
        # A retry for want of Redis is said once per outage by the link to Redis (hub.connectivity).
        report = log.debug if isinstance(getattr(exception, "cause", exception), StoreUnavailable) else log.info
        report("retrying message", delay_ms=delay, attempt=retries + 1, error=describe(exception))

    def _delay(self, message: Any, actor: Any, retries: int, exception: BaseException) -> int:
        max_backoff = min(
            message.options.get("max_backoff", actor.options.get("max_backoff", self.max_backoff)),
            self.max_backoff,
        )
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

