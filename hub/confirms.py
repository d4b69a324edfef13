"""Confirmed publishing from many threads on one channel: a confirm window.

A worker process's threads each publish and wait for RabbitMQ's confirm before they acknowledge what they
consumed. Here they share one connection and one confirming channel, driven by an I/O thread of the window's own
(pika's ``SelectConnection``): a thread hands its publish over and waits for its own confirm only, while the other
threads' publishes are in flight on the same channel and RabbitMQ confirms them together (``basic.ack`` with
``multiple``). With a blocking connection per thread, each thread's channel held one unconfirmed message at a time;
RabbitMQ spent 10 to 30% more CPU per message that way (``docs/benchmarks.md``), and an idle thread's connection
answered no heartbeats.

:meth:`ConfirmWindow.publish` returns once RabbitMQ confirmed the message, and raises
:class:`hub.errors.BrokerUnavailable` otherwise, naming the cause: ``not attempted`` (RabbitMQ does not answer
and the process's link has no reconnect attempt due), ``not confirmed`` (connecting failed), ``broker blocked``
(a resource alarm: refused before publishing, and what awaits its confirm fails once the block lasted
``blocked_timeout_s``), ``nacked``, ``confirm timeout``, ``connection lost``. Every
(re)connection first declares what the caller asks for (``declare``, on a short-lived blocking channel), so a
deleted exchange is declared again by the next publish after the channel it closed.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import pika.spec

from hub.connectivity import ServerLink, describe
from hub.endpoints import amqp_parameters
from hub.errors import BrokerUnavailable, ConfigurationError

__all__ = ["BLOCKED_TIMEOUT_S", "CONFIRM_TIMEOUT_S", "ConfirmWindow"]

#: Seconds a publish waits for its confirm before it fails (the message may still arrive: a retry publishes a
#: copy with the same message id, which subscribers drop, see :mod:`hub.duplicates`).
CONFIRM_TIMEOUT_S = 30.0
#: Seconds publishes already awaiting their confirm wait out a ``connection.blocked`` before they fail.
BLOCKED_TIMEOUT_S = 2.0
#: Seconds to wait for a new connection's confirming channel.
CONNECT_TIMEOUT_S = 15.0

_CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)


@dataclass(frozen=True)
class _Publish:
    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    confirmed: Future[None]


class _Session:
    """One connection and its confirming channel, driven by a thread of its own until the connection closes.

    Only :meth:`submit` and :meth:`close` are called from other threads; everything else runs on the I/O thread.
    """

    def __init__(self, parameters: pika.ConnectionParameters, *, what: str, blocked_timeout_s: float,
                 on_lost: Callable[[BaseException], None]) -> None:
        self.what = what
        self._blocked_timeout_s = blocked_timeout_s
        #: Set once the channel confirms, or once the connection failed or closed.
        self.ready = threading.Event()
        #: Why the connection failed to open or closed.
        self.failure: BaseException | None = None
        self.closed = False
        self.blocked = False
        self._on_lost = on_lost
        self._closing = False
        self._lock = threading.Lock()
        self._pending: deque[_Publish] = deque()
        self._scheduled = False
        #: Unconfirmed publishes by delivery tag, in the order they were sent.
        self._waiting: dict[int, Future[None]] = {}
        self._tag = 0
        self._channel: Any = None
        self.connection = pika.SelectConnection(parameters, on_open_callback=self._opened,
                                                on_open_error_callback=self._open_failed,
                                                on_close_callback=self._connection_closed)
        self._thread = threading.Thread(target=self._run, name="hub-confirm-window", daemon=True)
        self._thread.start()

    # -- other threads ---------------------------------------------------------------------------

    def submit(self, publish: _Publish) -> None:
        """Hand a publish to the I/O thread; its future says how it ended."""
        with self._lock:
            if self.closed or self._channel is None:
                raise BrokerUnavailable(f"{self.what} not confirmed: connection lost ({self._reason()})")
            if self.blocked:
                raise BrokerUnavailable(f"broker blocked (resource alarm): {self.what} not attempted")
            self._pending.append(publish)
            wake, self._scheduled = not self._scheduled, True
        if wake:
            self.connection.ioloop.add_callback_threadsafe(self._drain)

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the connection (publishes awaiting their confirm fail) and wait for the I/O thread to end."""
        with self._lock:
            self._closing = True
            running = not self.closed
        if running:
            with contextlib.suppress(RuntimeError, *_CONNECTION_ERRORS):
                self.connection.ioloop.add_callback_threadsafe(self._close_now)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    # -- the I/O thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.connection.ioloop.start()
        finally:
            self.connection.ioloop.close()  # its wake-up socket pair

    def _opened(self, connection: pika.SelectConnection) -> None:
        connection.add_on_connection_blocked_callback(self._blocked)
        connection.add_on_connection_unblocked_callback(self._unblocked)
        connection.channel(on_open_callback=self._channel_opened)

    def _channel_opened(self, channel: Any) -> None:
        channel.add_on_close_callback(self._channel_closed)

        def confirming(_frame: object) -> None:
            with self._lock:
                self._channel = channel
            self.ready.set()

        channel.confirm_delivery(self._confirmed, callback=confirming)

    def _open_failed(self, _connection: object, error: BaseException) -> None:
        self.failure = error
        self._end(error)

    def _connection_closed(self, _connection: object, reason: BaseException) -> None:
        lost = not self._closing and self._channel is not None
        if self.failure is None:
            self.failure = reason
        self._end(self.failure)
        if lost:
            self._on_lost(reason)

    def _channel_closed(self, _channel: object, reason: BaseException) -> None:
        if self.failure is None:
            self.failure = reason
        if self.connection.is_open:  # closed by the broker (a deleted exchange: 404): this session ends here, and
            self._closing = True     # the next publish opens (and declares) anew; RabbitMQ itself still answers
            self._close_now()

    def _close_now(self) -> None:
        if self.connection.is_closed or self.connection.is_closing:
            return
        try:
            self.connection.close()
        except pika.exceptions.ConnectionWrongStateError:  # still opening: nothing to close politely
            self._end(self.failure or BrokerUnavailable("closed while connecting"))

    def _end(self, reason: BaseException) -> None:
        """Fail what is pending and unconfirmed, and stop the I/O loop."""
        with self._lock:
            self.closed = True
            pending, self._pending = list(self._pending), deque()
            waiting, self._waiting = list(self._waiting.values()), {}
        what = "channel closed" if isinstance(reason, pika.exceptions.ChannelClosed) else "connection lost"
        for future in [publish.confirmed for publish in pending] + waiting:
            if not future.done():
                future.set_exception(BrokerUnavailable(f"{self.what} not confirmed: {what} ({describe(reason)})"))
        self.ready.set()
        self.connection.ioloop.stop()

    def _drain(self) -> None:
        with self._lock:
            publishes, self._pending = list(self._pending), deque()
            self._scheduled = False
            channel = self._channel
        for publish in publishes:
            self._tag += 1
            self._waiting[self._tag] = publish.confirmed
            try:
                channel.basic_publish(publish.exchange, publish.routing_key, publish.body, publish.properties)
            except _CONNECTION_ERRORS as exc:
                self._waiting.pop(self._tag, None)
                publish.confirmed.set_exception(BrokerUnavailable(f"{self.what} not confirmed: connection lost "
                                                                  f"({describe(exc)})"))

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            tags = []
            for tag in self._waiting:  # in the order sent
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            future = self._waiting.pop(tag, None)
            if future is None or future.done():
                continue
            if acked:
                future.set_result(None)
            else:
                future.set_exception(BrokerUnavailable(f"nacked: the broker refused the {self.what}"))

    def _blocked(self, _connection: object, _frame: object) -> None:
        self.blocked = True
        self.connection.ioloop.call_later(self._blocked_timeout_s, self._abort_blocked)

    def _abort_blocked(self) -> None:
        if not self.blocked:
            return
        waiting, self._waiting = list(self._waiting.values()), {}
        for future in waiting:
            if not future.done():
                future.set_exception(BrokerUnavailable(f"broker blocked (resource alarm) for over "
                                                       f"{self._blocked_timeout_s:g} s: {self.what} not confirmed"))

    def _unblocked(self, _connection: object, _frame: object) -> None:
        self.blocked = False

    def _reason(self) -> str:
        return describe(self.failure) if self.failure is not None else "not connected"


class ConfirmWindow:
    """Confirmed publishing for every thread of a process on one connection and channel (see the module docstring).

    ``url`` may name several nodes (comma-separated), tried in turn; ``link`` is the process's link to RabbitMQ,
    which paces reconnects: while RabbitMQ does not answer, a publish with no attempt due fails at once.
    ``declare(channel)`` runs on a blocking pika channel at every (re)connection, before the first publish on it;
    a :class:`ConfigurationError` it raises reaches the caller. ``what`` names the publishes in errors.
    """

    def __init__(self, url: str, *, link: ServerLink, declare: Callable[[Any], None], what: str = "publish",
                 confirm_timeout_s: float = CONFIRM_TIMEOUT_S, blocked_timeout_s: float = BLOCKED_TIMEOUT_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        if confirm_timeout_s <= 0 or connect_timeout_s <= 0 or blocked_timeout_s < 0:
            raise ConfigurationError("confirm_timeout_s and connect_timeout_s must be positive and blocked_timeout_s "
                                     "not negative")
        self._parameters = amqp_parameters(url)
        self.link = link
        self.what = what
        self.confirm_timeout_s = confirm_timeout_s
        self.blocked_timeout_s = blocked_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._declare = declare
        self._session: _Session | None = None
        self._connecting = threading.Lock()
        self._counting = threading.Lock()
        self._closed = False
        self._in_flight = 0
        #: Highest number of publishes awaiting their confirm at the same time.
        self.in_flight_max = 0

    @property
    def in_flight(self) -> int:
        """Publishes awaiting their confirm now."""
        return self._in_flight

    @property
    def blocked(self) -> bool:
        """Whether RabbitMQ has blocked the connection (a resource alarm) and not unblocked it yet."""
        session = self._session
        return session is not None and not session.closed and session.blocked

    def open(self) -> None:
        """Connect (and declare) now, if not connected: BrokerUnavailable when RabbitMQ does not answer."""
        self._usable()

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Publish one message, returning only once RabbitMQ confirmed it (BrokerUnavailable otherwise)."""
        confirmed: Future[None] = Future()
        self._usable().submit(_Publish(exchange, routing_key, body, properties, confirmed))
        with self._counting:
            self._in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self._in_flight)
        try:
            confirmed.result(self.confirm_timeout_s)
        except FutureTimeout:
            raise BrokerUnavailable(f"confirm timeout: {self.what} not confirmed within "
                                    f"{self.confirm_timeout_s:g} s") from None
        finally:
            with self._counting:
                self._in_flight -= 1

    def close(self) -> None:
        """Close the connection; publishes awaiting their confirm fail, and later ones too."""
        with self._connecting:
            self._closed = True
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def _usable(self) -> _Session:
        session = self._session
        if session is not None and not session.closed:
            return session
        with self._connecting:
            session = self._session
            if session is not None and not session.closed:
                return session
            if self._closed:
                raise BrokerUnavailable(f"{self.what} not attempted: the publisher is closed")
            if not self.link.due():
                raise BrokerUnavailable(f"{self.what} not attempted: RabbitMQ does not answer at {self.link.where}")
            self._session = self._connect()
            return self._session

    def _connect(self) -> _Session:
        """Declare, then open the window's connection, on the first node that answers."""
        failure: BaseException | None = None
        for parameters in self._parameters:
            try:
                self._declare_on(parameters)
            except _CONNECTION_ERRORS as exc:
                failure = exc
                continue
            session = _Session(parameters, what=self.what, blocked_timeout_s=self.blocked_timeout_s,
                               on_lost=self.link.lost)
            if not session.ready.wait(self.connect_timeout_s):
                session.close()
                failure = TimeoutError(f"no confirming channel within {self.connect_timeout_s:g} s")
                continue
            if session.closed:
                failure = session.failure
                continue
            self.link.succeeded()
            return session
        assert failure is not None  # there is at least one node
        self.link.failed(failure)
        raise BrokerUnavailable(f"{self.what} not confirmed: {describe(failure)}") from None

    def _declare_on(self, parameters: pika.ConnectionParameters) -> None:
        connection = pika.BlockingConnection(parameters)
        try:
            self._declare(connection.channel())
        finally:
            if connection.is_open:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    connection.close()
