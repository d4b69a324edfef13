"""One Redis round trip for the writes a message leaves behind once its actor has run.

After an actor runs, a worker writes to Redis what needs no answer before the message is acknowledged: the
idempotency ``done`` mark (or the lease's release), the attempt's flight-record hop, and the hops of the
messages the actor published. Each was a round trip of its own; :class:`ClosingWrites` sends them together.

:class:`ClosingWrites` is a middleware placed before every middleware that writes through it (Dramatiq runs
after-hooks in the reverse order of the list, so its own after-hook runs last): its before-hook starts holding
this thread's writes, its after-hook sends them in one pipeline and tells each writer what its write answered.
The pipeline is a transaction (``MULTI``/``EXEC``): the writes are applied together or, when the connection
fails before ``EXEC``, not at all. A write asked for outside a held message (another thread, a middleware that
runs before the holding starts) is sent at once, so nothing depends on the middleware being there; without it
every write is its own round trip, as before.

The acknowledgement comes after every after-hook, so the ``done`` mark is still written before the message is
acknowledged: a worker killed between the two leaves a message redelivered and skipped as a duplicate.

Scripts are sent with ``EVALSHA`` without asking Redis whether it knows them (redis-py's pipelines ask with a
``SCRIPT EXISTS`` round trip each time); a write answered ``NOSCRIPT`` (Redis restarted empty) is sent again
alone, which loads the script.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from redis.commands.core import Script

from observability.logging import get_logger

__all__ = ["TRAIL_S", "Answer", "ClosingWrites", "HeldWrites", "TrailingWrites", "Write", "run_script"]

log = get_logger(__name__)

#: Seconds a finished request's trailing writes wait for the next request's round trip before they go alone.
TRAIL_S = 0.005

#: A write: queues its commands on the target it is given (the client, or the pipeline being filled).
Write = Callable[[Any], Any]
#: Told what the write answered: its last command's reply, or the ``redis.RedisError`` it met.
Answer = Callable[[Any], None]


def run_script(script: Script, target: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Call ``script`` on ``target``: a pipeline gets a bare ``EVALSHA`` (no ``SCRIPT EXISTS`` first), a
    client the script itself (which loads it when Redis does not know it)."""
    if isinstance(target, redis.client.Pipeline):
        return target.evalsha(script.sha, len(keys), *keys, *args)
    return script(keys=list(keys), args=list(args), client=target)


@dataclass
class _Pending:
    write: Write
    answer: Answer
    commands: int = 0


class ClosingWrites(dramatiq.Middleware):
    """Holds a message's closing Redis writes and sends them in one round trip (see the module docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._local = threading.local()

    # -- for the writers ---------------------------------------------------------------------------------
    def write(self, write: Write, answer: Answer) -> None:
        """Send ``write`` with this message's other closing writes, or at once when none are being held.

        ``answer`` gets the reply of the write's last command, or the ``redis.RedisError`` it met; it is
        never raised here.
        """
        pending: list[_Pending] | None = getattr(self._local, "pending", None)
        if pending is not None:
            pending.append(_Pending(write, answer))
            return
        try:
            reply = write(self.client)
        except redis.RedisError as exc:
            answer(exc)
            return
        answer(reply)

    # -- hooks ---------------------------------------------------------------------------------------------
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Start holding this thread's writes."""
        self._local.pending = []

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        """Send what was held, in one round trip."""
        self.flush()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Send what was held, in one round trip."""
        self.flush()

    def flush(self) -> None:
        """Send the writes held on this thread and stop holding; each writer is told its answer."""
        pending: list[_Pending] | None = getattr(self._local, "pending", None)
        self._local.pending = None
        if not pending:
            return
        if len(pending) == 1:  # nothing to batch: the plain call (scripts loaded as needed)
            self.write(pending[0].write, pending[0].answer)
            return
        pipe = self.client.pipeline(transaction=True)
        for item in pending:
            before = len(pipe.command_stack)
            item.write(pipe)
            item.commands = len(pipe.command_stack) - before
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            _report(self.client, exc)
            for item in pending:
                item.answer(exc)
            return
        _report(self.client, None)
        for item, reply in _split(pending, replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                self.write(item.write, item.answer)  # alone, on the client: the script is loaded
            else:
                item.answer(reply)


class HeldWrites:
    """An asyncio request's Redis writes held to be sent with its last call, in one round trip: the ingress's
    flight-record hops of its confirmed publishes go with the script that settles their outcomes. Hold one per
    request (:meth:`write` is the :class:`observability.flight.Writes` a publisher is given)."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []

    @property
    def pending(self) -> int:
        """How many writes are held."""
        return len(self._pending)

    def adopt(self, other: HeldWrites) -> None:
        """Take over what ``other`` holds (it holds nothing after)."""
        self._pending += other._pending
        other._pending = []

    def write(self, write: Write, answer: Answer) -> None:
        """Hold ``write`` until :meth:`send`; ``answer`` is told its reply then, or the error met."""
        self._pending.append(_Pending(write, answer))

    async def send(self, client: Any, last: Write) -> Any:
        """Send the held writes and ``last`` in one pipeline (not a transaction: they are independent); each
        held writer is told its answer, and ``last``'s reply is returned (a ``redis.RedisError`` it met, or a
        ``NoScriptError`` when it ran a script Redis does not know, is returned, not raised)."""
        pending, self._pending = self._pending, []
        pipe = client.pipeline(transaction=False)
        for item in pending:
            before = len(pipe.command_stack)
            item.write(pipe)
            item.commands = len(pipe.command_stack) - before
        before = len(pipe.command_stack)
        last(pipe)  # may queue nothing: the held writes alone
        closing = _Pending(last, lambda _: None, len(pipe.command_stack) - before)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            for item in pending:
                item.answer(exc)
            return exc
        answered = list(_split([*pending, closing], replies))
        for item, reply in answered[:-1]:
            item.answer(reply)
        return answered[-1][1]

    async def send_script(self, client: Any, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The held writes and then ``script`` (an asyncio client's registered script) on ``keys`` (none: the held
        writes alone), in one pipeline; returns the script's reply. A script Redis does not know (restarted empty) is
        sent again alone, which loads it; an error the script met is raised (a ``redis.RedisError``)."""
        reply = await self.send(client, lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args)
                                if keys else None)
        if isinstance(reply, redis.exceptions.NoScriptError):
            return await script(keys=list(keys), args=list(args))
        if isinstance(reply, redis.RedisError):
            raise reply
        if isinstance(reply, OSError):
            raise redis.ConnectionError(str(reply))
        return reply


class TrailingWrites:
    """Writes of finished requests that need no answer before the response, taken along by the next request's first
    round trip (:meth:`take`, then :meth:`HeldWrites.send` with that call), or sent alone ``trail_s`` after the first
    of them was held when no request came. Under load every request then makes one round trip; an idle ingress sends
    a finished request's writes a few milliseconds after its response. One per process, used from its event loop;
    :meth:`close` sends what is held."""

    def __init__(self, client: Any, *, trail_s: float = TRAIL_S) -> None:
        self._client = client
        self.trail_s = trail_s
        self._held = HeldWrites()
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """How many writes are held."""
        return self._held.pending

    def hold(self, writes: HeldWrites) -> None:
        """Hold what ``writes`` holds until the next round trip (or ``trail_s``)."""
        if not writes.pending:
            return
        self._held.adopt(writes)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.trail_s, self._send_alone)

    def take(self) -> HeldWrites:
        """What is held, to be sent with a call about to be made; nothing is held after."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        taken = HeldWrites()
        taken.adopt(self._held)
        return taken

    async def flush(self) -> None:
        """Send what is held now, alone."""
        taken = self.take()
        if taken.pending:
            await taken.send(self._client, lambda _: None)

    async def close(self) -> None:
        """Send what is held and wait for the sends under way."""
        await self.flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _send_alone(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.flush())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


def _split(pending: Sequence[_Pending], replies: Sequence[Any]) -> Iterator[tuple[_Pending, Any]]:
    """Each write with its answer: its first error, else its last command's reply."""
    at = 0
    for item in pending:
        own = replies[at:at + item.commands]
        at += item.commands
        failed = [reply for reply in own if isinstance(reply, redis.RedisError)]
        yield item, failed[0] if failed else (own[-1] if own else None)


def _report(client: redis.Redis, error: redis.RedisError | None) -> None:
    """Tell the process's link to Redis (a :class:`~hub.store.ReportingRedis`'s) of the pipeline's outcome:
    pipelines do not go through the client's ``execute_command``."""
    link = getattr(client, "link", None)
    if link is None:
        return
    if error is None:
        link.succeeded()
    elif isinstance(error, redis.ConnectionError | redis.TimeoutError):
        link.lost(error)
