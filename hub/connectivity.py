"""This process's connection to each server it needs (RabbitMQ, Redis): one log line per change of state,
backoff with jitter between reconnect attempts, and a stop when the server refuses the hub's credentials.

A process holds many clients of one server, each reconnecting on its own: a worker has one consumer
connection per queue and per delay queue, its dispatcher's, the topic bus's and a Redis client; the
ingress its publisher and its Redis watch. Left alone, each logged every attempt (a 17 s outage wrote
about 680 lines per worker). They share one :class:`ServerLink` per server instead, which says once:

- ``RabbitMQ connection lost at amqp://***@host:5672/%2F`` (or ``does not answer at``, before the
  first connection), with the reason, at the first failure;
- ``RabbitMQ still does not answer at ... after 5 attempts; retrying every 2.5-5 s`` when the backoff
  reaches its ceiling;
- ``RabbitMQ connection restored at ... after 17.2 s`` (``established`` before the first connection) at
  the first success after failures.

Attempts in between are logged at DEBUG. A caller waits what :meth:`ServerLink.failed` returns
(exponential backoff with jitter); threads that reconnect at the same time (Dramatiq's consumers) take
turns (:meth:`ServerLink.turn`), so an outage costs the server one attempt per delay, not one per queue.

A refused login (wrong user or password, no right on the virtual host) does not heal by retrying: after
``auth_limit`` refusals in a row the link is *refused*. It logs one error naming the server and its URL
and calls its ``on_refused`` callbacks, with which ``hub worker`` and ``hub serve`` stop and exit
non-zero with :class:`~hub.errors.CredentialsRefused`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiormq.exceptions
import pika.exceptions
import redis
import redis.exceptions

from hub.errors import ConfigurationError, CredentialsRefused
from observability.logging import get_logger, mask_text

__all__ = ["AUTH_LIMIT", "Backoff", "ServerLink", "describe", "refuses_credentials"]

log = get_logger(__name__)

#: Refused logins in a row after which a server process stops.
AUTH_LIMIT = 3
#: Longest reason kept in a log line (pika's workflow errors nest every attempt's text).
_REASON_CHARS = 300

#: pika's guesses from the stage a connection ended at, the broker's close or a lost stream alike.
_PROBABLE = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError)
_REFUSALS: tuple[type[BaseException], ...] = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.AuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.ConnectionNotAllowed,
    aiormq.exceptions.ChannelAccessRefused,
    redis.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``first_s`` doubled per failure up to ``max_s``, each wait drawn
    between ``1 - jitter`` and 1 times that, so clients that failed together spread out and no wait is
    near zero."""

    first_s: float = 0.5
    max_s: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s or not 0 <= self.jitter < 1:
            raise ConfigurationError("backoff needs 0 < first_s <= max_s and 0 <= jitter < 1")

    def ceiling(self, failures: int) -> float:
        """The longest wait after ``failures`` failed attempts in a row."""
        return min(self.first_s * 2.0 ** max(failures - 1, 0), self.max_s)

    def delay(self, failures: int, *, draw: float) -> float:
        """The wait after ``failures`` failed attempts in a row; ``draw`` is uniform in [0, 1)."""
        return self.ceiling(failures) * (1.0 - self.jitter * draw)

    def every(self) -> str:
        """The waits once at the ceiling, for a log line: ``every 2.5-5 s``."""
        return f"every {self.max_s * (1.0 - self.jitter):g}-{self.max_s:g} s"


def _unwrapped(error: BaseException) -> BaseException:
    # Dramatiq's ConnectionClosed carries pika's error as its ``message``.
    inner = getattr(error, "message", None)
    return inner if isinstance(inner, BaseException) else error


def refuses_credentials(error: BaseException) -> bool:
    """Whether ``error`` is a server refusing the hub's login or its rights: retrying cannot help.

    pika calls a connection that ended while logging in or opening the virtual host a *probable* refusal, whether
    RabbitMQ closed it (``ACCESS_REFUSED``, ``NOT_ALLOWED``: a refusal) or the stream was cut (a network failure or
    a proxy dropping connections mid-handshake: an outage); only the first counts."""
    error = _unwrapped(error)
    if isinstance(error, _PROBABLE) and "StreamLostError" in str(error):
        return False
    if isinstance(error, _REFUSALS):
        return True
    closed = (pika.exceptions.ConnectionClosed, pika.exceptions.ChannelClosed)
    return isinstance(error, closed) and error.reply_code == 403  # ACCESS_REFUSED


def describe(error: BaseException) -> str:
    """One line naming the error, credentials masked, cut to a readable length."""
    error = _unwrapped(error)
    text = " ".join(str(error).split())
    line = mask_text(f"{type(error).__name__}: {text}" if text else type(error).__name__)
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."


class ServerLink:
    """This process's connection to one server, shared by all its clients of it (see the module docstring).

    Thread-safe; only :meth:`turn` blocks, so the asyncio ingress calls the others from its loop.
    ``setting`` names the variable holding the URL, for the message of a refusal.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        setting: str | None = None,
        backoff: Backoff | None = None,
        auth_limit: int = AUTH_LIMIT,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.url = url
        #: The URL as logged: no user name, no password.
        self.where = mask_text(url)
        self.setting = setting
        self.backoff = backoff or Backoff()
        self.auth_limit = auth_limit
        self._draw = draw
        self._clock = clock
        self._state = threading.Condition()
        self._down = False
        self._ever_up = False
        self._since = 0.0
        self._failures = 0
        self._refusals = 0
        self._next_at = 0.0
        self._turn_taken = False
        self._refused: CredentialsRefused | None = None
        self._on_refused: list[Callable[[], object]] = []

    @property
    def down(self) -> bool:
        """Whether the last news of the server was a failure."""
        return self._down

    @property
    def refused(self) -> CredentialsRefused | None:
        """The error to stop with once the server refused the credentials ``auth_limit`` times in a row."""
        return self._refused

    def on_refused(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (once, from the reporting thread) when the credentials are refused for good."""
        with self._state:
            if self._refused is None:
                self._on_refused.append(callback)
                return
        callback()

    def due(self) -> bool:
        """Whether an attempt may be made now: the server answers, or the backoff has passed."""
        return self._refused is None and (not self._down or self._clock() >= self._next_at)

    def wait_due(self, stop: threading.Event, timeout: float) -> bool:
        """Block until an attempt may be made (:meth:`due`); False when ``stop`` is set, the credentials
        were refused, or ``timeout`` seconds pass first. Unlike :meth:`turn`, every waiter may try."""
        deadline = self._clock() + timeout
        with self._state:
            while True:
                if stop.is_set() or self._refused is not None:
                    return False
                if self.due():
                    return True
                now = self._clock()
                if now >= deadline:
                    return False
                # Woken by any news of the server; the bound lets ``stop`` and the clock be seen.
                self._state.wait(min(self._next_at - now, deadline - now, 0.5))

    def turn(self, stop: threading.Event) -> bool:
        """Block until the caller may try to connect: at once while the server answers; during an outage,
        one caller at a time once the backoff has passed (the others wait for its outcome). False when
        ``stop`` is set or the credentials were refused. A caller given a turn ends it with
        :meth:`failed`, :meth:`succeeded` or :meth:`release`."""
        with self._state:
            while True:
                if stop.is_set() or self._refused is not None:
                    return False
                if not self._down:
                    return True
                wait = self._next_at - self._clock()
                if wait <= 0 and not self._turn_taken:
                    self._turn_taken = True
                    return True
                # Woken by the outcome of the turn under way; the bound lets ``stop`` be seen.
                self._state.wait(min(wait, 0.5) if wait > 0 else 0.5)

    def release(self) -> None:
        """End a turn that neither connected nor failed to (an error of another kind)."""
        with self._state:
            self._turn_taken = False
            self._state.notify_all()

    def failed(self, error: BaseException) -> float:
        """An attempt to connect (or a call) failed: log it if the state changes; returns the seconds to
        wait before the next attempt."""
        refusal = refuses_credentials(error)
        reason = describe(error)
        callbacks: list[Callable[[], object]] = []
        with self._state:
            now = self._clock()
            self._failures += 1
            self._refusals = self._refusals + 1 if refusal else 0
            delay = self.backoff.delay(self._failures, draw=self._draw())
            self._next_at = now + delay
            self._turn_taken = False
            fields = {"server": self.name, "url": self.where, "reason": reason}
            if self._refused is None and self._refusals >= self.auth_limit:
                self._refused = self._refusal(reason)
                self._down = True
                callbacks, self._on_refused = self._on_refused, []
                log.error(str(self._refused), **fields)
            elif refusal and self._refusals == 1:
                if not self._down:
                    self._down, self._since = True, now
                log.warning(f"{self.name} refused the hub's credentials at {self.where}; trying "
                            f"{self.auth_limit - 1} more times before stopping", **fields)
            elif not self._down:
                self._down, self._since = True, now
                what = "connection lost at" if self._ever_up else "does not answer at"
                log.warning(f"{self.name} {what} {self.where}; retrying, backing off up to {self.backoff.max_s:g} s",
                            **fields)
            elif self.backoff.ceiling(self._failures - 1) < self.backoff.max_s <= self.backoff.ceiling(self._failures):
                log.warning(f"{self.name} still does not answer at {self.where} after {self._failures} attempts; "
                            f"retrying {self.backoff.every()}", **fields)
            else:
                log.debug(f"{self.name} attempt failed", attempt=self._failures, retry_in_s=round(delay, 2), **fields)
            self._state.notify_all()
        for callback in callbacks:
            callback()
        return delay

    def lost(self, error: BaseException) -> None:
        """An established connection dropped: log it if the state changes. Reconnecting may start at once
        (nothing is counted against the backoff); a refusal counts as a failed attempt."""
        if refuses_credentials(error):
            self.failed(error)
            return
        with self._state:
            if self._down or self._refused is not None:
                return
            now = self._clock()
            self._down, self._since, self._failures, self._next_at = True, now, 0, now
            log.warning(f"{self.name} connection lost at {self.where}; retrying, backing off up to "
                        f"{self.backoff.max_s:g} s", server=self.name, url=self.where, reason=describe(error))
            self._state.notify_all()

    def succeeded(self) -> None:
        """A connection was made or a call answered: log it if the server was down."""
        if self._ever_up and not self._down and not self._refusals:
            return  # the common case, without the lock
        with self._state:
            if self._down:
                what = "restored" if self._ever_up else "established"
                log.warning(f"{self.name} connection {what} at {self.where} after {self._clock() - self._since:.1f} s",
                            server=self.name, url=self.where, failed_attempts=self._failures)
            self._down = self._turn_taken = False
            self._ever_up = True
            self._failures = self._refusals = 0
            self._state.notify_all()

    def _refusal(self, reason: str) -> CredentialsRefused:
        check = f"check the user name and password in {self.setting}" if self.setting else \
            "check the user name and password"
        return CredentialsRefused(f"{self.name} at {self.where} refused the hub's credentials {self._refusals} "
                                  f"times in a row ({reason}); stopping: {check}")
