"""The flight record: every hop of a business event, kept in Redis for a while, shown as a tree.

A hop is one attempt of one actor on one message (or one publish by hub code). Hops are grouped by
the event's ``root_id``, so the journey of a business event through every actor it reaches, with its
retries and its dead letters, can be read back in one call and rendered with :func:`render_tree`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, get_args

import dramatiq
import redis
import redis.asyncio
from opentelemetry import trace

from observability.logging import get_logger, mask_text, warn_unless_before_retries

__all__ = ["AsyncFlightRecord", "AsyncRedisFlightRecord", "FlightRecord", "FlightRecorderMiddleware", "Hop", "Outcome",
           "RedisFlightRecord", "Writes", "render_tree"]

log = get_logger(__name__)

Outcome = Literal["ok", "skipped", "retry", "failed", "dead", "published"]
_OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
_MAX_ERROR = 500


@dataclass(frozen=True)
class Hop:
    """One attempt of one actor on one message of a business event (or one publish)."""

    root_id: str
    event_id: str
    event_type: str
    actor: str
    message_id: str
    parent_message_id: str | None
    outcome: Outcome
    attempt: int
    started_at: float
    duration_ms: float
    error: str | None
    trace_id: str | None

    def to_json(self) -> str:
        """This hop as a compact JSON object."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> Hop:
        """Parse a hop written by :meth:`to_json`; ``ValueError`` if it is not one."""
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("outcome") not in _OUTCOMES:
            raise ValueError(f"not a flight record hop: {data!r:.200}")
        try:
            return cls(
                root_id=str(raw["root_id"]),
                event_id=str(raw["event_id"]),
                event_type=str(raw["event_type"]),
                actor=str(raw["actor"]),
                message_id=str(raw["message_id"]),
                parent_message_id=_opt_str(raw.get("parent_message_id")),
                outcome=raw["outcome"],
                attempt=int(raw["attempt"]),
                started_at=float(raw["started_at"]),
                duration_ms=float(raw["duration_ms"]),
                error=_opt_str(raw.get("error")),
                trace_id=_opt_str(raw.get("trace_id")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a flight record hop: {exc}") from None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def describe_error(exception: BaseException) -> str:
    """``Type: message`` of an exception, credentials masked, bounded in length."""
    return mask_text(f"{type(exception).__name__}: {exception}")[:_MAX_ERROR]


class FlightRecord(Protocol):
    """Where hops are kept."""

    def record(self, hop: Hop) -> None:
        """Append a hop to its business event's record; must not raise on storage outages."""

    def hops(self, root_id: str) -> list[Hop]:
        """Every hop recorded for a business event, in recording order."""


class _RedisHops:
    """What both Redis flight records share: the key, the expiry, and dropping hops during an outage.

    After a Redis error, hops are dropped for ``outage_backoff_s``: redis-py's default retries make
    each failing call take seconds, which would otherwise be added to every message of an outage. The
    outage is logged once, at its first failure, and its end once, with the count of hops dropped.
    """

    def __init__(
        self, *, prefix: str = "hub", ttl_s: int, outage_backoff_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.outage_backoff_s = outage_backoff_s
        self.dropped = 0  # approximate under concurrent threads; for operators, not for logic
        self._clock = clock
        self._down_until = 0.0
        self._outage = False

    def key(self, root_id: str) -> str:
        """The Redis key of one business event's record."""
        return f"{self.prefix}:flight:{root_id}"

    def _skipping(self) -> bool:
        if self._clock() < self._down_until:
            self.dropped += 1
            return True
        return False

    def _appending(self, pipe: Any, hop: Hop) -> Any:
        key = self.key(hop.root_id)
        pipe.rpush(key, hop.to_json())
        pipe.expire(key, self.ttl_s)
        return pipe

    def _failed(self, hop: Hop, exc: BaseException) -> None:
        self.dropped += 1
        self._down_until = self._clock() + self.outage_backoff_s
        report = log.debug if self._outage else log.warning
        self._outage = True
        report("flight record unavailable; hops dropped until Redis answers", root_id=hop.root_id,
               backoff_s=self.outage_backoff_s, error=describe_error(exc))

    def _written(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("flight record written again", dropped=self.dropped)

    def _told(self, hop: Hop, reply: Any) -> None:
        if isinstance(reply, redis.RedisError | OSError):
            self._failed(hop, reply)
        else:
            self._written()


class Writes(Protocol):
    """Where a worker's writes can wait to be sent with the message's other closing writes, in one round trip
    (the hub's ``hub.batching.ClosingWrites``)."""

    def write(self, write: Callable[[Any], Any], answer: Callable[[Any], None]) -> None:
        """Have ``write`` queue its commands on a client or a pipeline, now or with the others; ``answer`` is
        told its reply or the ``redis.RedisError`` met."""


class RedisFlightRecord(_RedisHops):
    """Flight record in Redis: one list per root id, expiring ``ttl_s`` after its last hop. ``writes``: a hop
    recorded while a message is processed is sent with that message's closing writes."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = "hub", ttl_s: int, outage_backoff_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic, writes: Writes | None = None,
    ) -> None:
        super().__init__(prefix=prefix, ttl_s=ttl_s, outage_backoff_s=outage_backoff_s, clock=clock)
        self.client = client
        self.writes = writes

    def record(self, hop: Hop) -> None:
        """Append the hop and refresh the expiry; a Redis error is logged, never raised."""
        if self._skipping():
            return
        if self.writes is None:
            self._told(hop, self._append(self.client, hop))
        else:
            self.writes.write(lambda target: self._append(target, hop), lambda reply: self._told(hop, reply))

    def _append(self, target: Any, hop: Hop) -> Any:
        """The hop's commands, on a pipeline being filled, or in a transaction of their own on a client."""
        if isinstance(target, redis.client.Pipeline):
            return self._appending(target, hop)
        try:
            return self._appending(target.pipeline(transaction=True), hop).execute()
        except redis.RedisError as exc:
            return exc

    def hops(self, root_id: str) -> list[Hop]:
        """Every hop of the business event; entries that do not parse are logged and left out."""
        found: list[Hop] = []
        entries: Any = self.client.lrange(self.key(root_id), 0, -1)  # sync client: a list
        for raw in entries:
            try:
                found.append(Hop.from_json(raw))
            except ValueError as exc:
                log.warning("unreadable flight record entry", root_id=root_id, error=str(exc))
        return found


class AsyncFlightRecord(Protocol):
    """Where an asyncio publisher (the ingress) records its hops."""

    async def record(self, hop: Hop, *, writes: Writes | None = None) -> None:
        """Append a hop to its business event's record; must not raise on storage outages. ``writes``: where the
        hop waits to go with the request's other closing writes, in one round trip."""


class AsyncRedisFlightRecord(_RedisHops):
    """:class:`RedisFlightRecord`'s writing half on an asyncio Redis client: the same keys and format."""

    def __init__(
        self, client: redis.asyncio.Redis, *, prefix: str = "hub", ttl_s: int, outage_backoff_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(prefix=prefix, ttl_s=ttl_s, outage_backoff_s=outage_backoff_s, clock=clock)
        self.client = client

    async def record(self, hop: Hop, *, writes: Writes | None = None) -> None:
        """Append the hop and refresh the expiry (now, or with ``writes``); a Redis error is logged, never
        raised."""
        if self._skipping():
            return
        if writes is not None:
            writes.write(lambda target: self._appending(target, hop), lambda reply: self._told(hop, reply))
            return
        try:
            await self._appending(self.client.pipeline(transaction=True), hop).execute()
        except (redis.RedisError, OSError) as exc:
            self._failed(hop, exc)
            return
        self._written()


@dataclass
class _Started:
    message_id: str
    attempt: int
    started_at: float
    perf: float
    trace_id: str | None


def _trace_id(message: Any) -> str | None:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x")
    # Outside the span (this middleware placed before tracing starts or after it ends), the carrier
    # written by TracingMiddleware holds the same trace id: the span is its child.
    carrier = message.options.get("trace_context")
    traceparent = carrier.get("traceparent") if isinstance(carrier, Mapping) else None
    if isinstance(traceparent, str):
        parts = traceparent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
            return parts[1].lower()
    return None


class FlightRecorderMiddleware(dramatiq.Middleware):
    """Records a hop for every attempt of every hub message (messages without ``hub_event`` are not).

    Where it sits: after ``TracingMiddleware`` and before ``Retries`` (Dramatiq's or the hub's) in the
    middleware list. After-hooks run in reverse list order, so ``Retries`` has already decided, and
    called ``message.fail()`` if it gave up, when this middleware reads ``message.failed`` to tell
    ``retry`` from ``dead``; and the tracing span is still current, so the hop gets its trace id.
    """

    def __init__(self, record: FlightRecord) -> None:
        self.record = record
        # A worker thread processes one message at a time: per-thread state needs no lock.
        self._local = threading.local()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Warn about a middleware order that would record dead letters as retries."""
        warn_unless_before_retries(broker, self)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Note when this attempt starts (Retries bumps the retry counter before the after-hooks)."""
        self._local.started = _Started(
            message_id=message.message_id,
            attempt=int(message.options.get("retries") or 0) + 1,
            started_at=time.time(),
            perf=time.perf_counter(),
            trace_id=_trace_id(message),
        )

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """Record the attempt as ok, retry or dead."""
        if exception is None:
            self._record(message, "ok", None)
        else:
            self._record(message, "dead" if message.failed else "retry", describe_error(exception))

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Record a skipped attempt (dead if the skipping middleware failed the message)."""
        self._record(message, "dead" if message.failed else "skipped", None)

    def _record(self, message: Any, outcome: Outcome, error: str | None) -> None:
        started: _Started | None = getattr(self._local, "started", None)
        self._local.started = None
        try:
            event = message.options.get("hub_event")
            if not isinstance(event, Mapping):
                return
            if started is None or started.message_id != message.message_id:
                # Skipped by a middleware that runs before this one: nothing was timed.
                started = _Started(message.message_id, int(message.options.get("retries") or 0) + 1,
                                   time.time(), time.perf_counter(), None)
            self.record.record(Hop(
                root_id=str(event.get("root_id") or event["id"]),
                event_id=str(event["id"]),
                event_type=str(event.get("type") or ""),
                actor=message.actor_name,
                message_id=message.message_id,
                parent_message_id=_opt_str(message.options.get("hub_parent")),
                outcome=outcome,
                attempt=started.attempt,
                started_at=started.started_at,
                duration_ms=(time.perf_counter() - started.perf) * 1000,
                error=error,
                trace_id=started.trace_id or _trace_id(message),
            ))
        except Exception:  # the flight record must never break message processing
            log.warning("could not record flight hop", exc_info=True)


def render_tree(hops: list[Hop]) -> str:
    """The journey as an indented tree: messages under their parent message, attempts grouped."""
    if not hops:
        return "(no hops)"
    ordered = sorted(hops, key=lambda h: (h.started_at, h.attempt, h.message_id, h.actor))
    t0 = ordered[0].started_at
    roots = sorted({h.root_id for h in ordered})
    traces = list(dict.fromkeys(h.trace_id for h in ordered if h.trace_id))
    lines = [f"journey {', '.join(roots)}  trace {', '.join(traces) or '-'}"]

    by_message: dict[str, list[Hop]] = defaultdict(list)
    for hop in ordered:
        by_message[hop.message_id].append(hop)
    children: dict[str | None, list[str]] = defaultdict(list)
    for message_id, attempts in by_message.items():  # dicts keep first-start order
        parent = attempts[0].parent_message_id
        children[parent if parent in by_message and parent != message_id else None].append(message_id)

    def attempt_text(hop: Hop) -> str:
        label = "enqueued (confirmed)" if hop.outcome == "published" else f"#{hop.attempt} {hop.outcome}"
        text = (f"{label}  {hop.duration_ms:.1f} ms  "
                f"+{(hop.started_at - t0) * 1000:.1f} ms")
        return f"{text}  {hop.error}" if hop.error else text

    seen: set[str] = set()

    def walk(message_id: str, prefix: str, last: bool) -> None:
        seen.add(message_id)
        attempts = by_message[message_id]
        branch, cont = ("└── ", "    ") if last else ("├── ", "│   ")
        head = f"{attempts[0].actor}  {attempts[0].event_type}"
        kids = [kid for kid in children.get(message_id, []) if kid not in seen]
        if len(attempts) == 1:
            lines.append(f"{prefix}{branch}{head}  {attempt_text(attempts[0])}")
        else:
            runs = sum(1 for hop in attempts if hop.outcome != "published")
            lines.append(f"{prefix}{branch}{head}  ({runs} attempt{'s' if runs != 1 else ''})")
            for i, hop in enumerate(attempts):
                mark = "└─ " if i == len(attempts) - 1 and not kids else "├─ "
                lines.append(f"{prefix}{cont}{mark}{attempt_text(hop)}")
        for i, kid in enumerate(kids):
            walk(kid, prefix + cont, i == len(kids) - 1)

    top = children.get(None, [])
    for i, message_id in enumerate(top):
        walk(message_id, "", i == len(top) - 1)
    # Messages in a parent cycle (corrupt data) have no root: shown at the top rather than lost.
    for message_id in by_message:
        if message_id not in seen:
            walk(message_id, "", True)
    return "\n".join(lines)
