"""Confirmed, non-blocking publishing of hub events for the asyncio HTTP ingress.

Past 400 lines on purpose: one class whose publishing, confirm waiting and connection supervision share
its state.

:class:`AsyncEventPublisher` produces the same Dramatiq messages as :meth:`hub.dispatch.Dispatcher.dispatch`
(one per subscribed actor, on the actor's queue, through the default exchange) but on one aio-pika
channel with publisher confirms: concurrent requests share that channel, so many publishes await their
confirms at once instead of one confirm round trip at a time.

``publish`` returns only once RabbitMQ confirmed every subscriber's message, and raises
:class:`hub.errors.BrokerUnavailable` otherwise, naming the cause:

- ``not connected``: no open connection or channel (an outage); a background task reconnects;
- ``broker blocked``: RabbitMQ sent ``connection.blocked`` (memory or disk alarm). New publishes fail at
  once; publishes already awaiting their confirm fail once the block has lasted ``blocked_timeout_s``;
- ``nacked``: the broker refused the message (``basic.nack``, e.g. a full queue with ``reject-publish``);
- ``returned unroutable``: the message was ``mandatory`` and no queue took it (the queue was deleted;
  it is declared again in the background);
- ``confirm timeout``: no confirm within ``confirm_timeout_s``;
- ``connection lost``: the connection or channel closed while the publish was under way.

A failed publish may still have reached some queues: the caller answers 503, the client re-sends, and
idempotency downstream makes the duplicates harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.connection import make_url
from dramatiq import Message
from opentelemetry import trace

from hub.broker import queue_declarations
from hub.connectivity import ServerLink, describe
from hub.dispatch import RoutingTable, event_messages, published_hop
from hub.endpoints import amqp_urls
from hub.errors import BrokerUnavailable, ConfigurationError
from hub.events import CloudEvent
from observability.flight import AsyncFlightRecord, Writes
from observability.logging import get_logger, mask_text
from observability.metrics import PUBLISH_DURATION
from observability.tracing import inject_message_context, publish_span

__all__ = ["AsyncEventPublisher"]

log = get_logger(__name__)

#: Dramatiq's global encoder is JSON.
_CONTENT_TYPE = "application/json"
# Errors that mean "the connection or channel went away under us" (TimeoutError is an OSError: it is
# handled before these).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
)
# aiormq 6 raises StopAsyncIteration from its frame reader when the server closed the connection before the
# first frame was read (a port that accepts, then closes): on uvloop the end of the stream is often seen first.
_UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, StopAsyncIteration, *_CONNECTION_ERRORS)


def _blocked_by_broker(connection: AbstractConnection) -> bool:
    """Whether RabbitMQ has sent ``connection.blocked`` and not yet ``connection.unblocked``.

    aiormq tracks the state in a private event that it awaits before writing (``Connection.ready``) but
    exposes no public flag or callback; it is read here and nothing else of aiormq's is touched. When a
    future aiormq renames it, this answers ``False`` and the confirm timeout still bounds every publish
    (``tests/test_ingress_publisher.py`` stages a real alarm and would catch it).
    """
    transport = getattr(connection, "transport", None)
    underlay = getattr(transport, "connection", None)
    unblocked = getattr(underlay, "_Connection__connection_unblocked", None)
    return isinstance(unblocked, asyncio.Event) and not unblocked.is_set()


class AsyncEventPublisher:
    """Publishes hub events to their subscribers' Dramatiq queues on one confirming aio-pika channel.

    Use from one event loop: ``await start()``, any number of concurrent ``await publish(event)``,
    then ``await close()``. A background task reconnects after an outage and watches for blocking.
    """

    #: Seconds between checks of the connection (reconnect, blocked state, queues to declare again).
    TICK_S = 0.05

    def __init__(
        self,
        *,
        amqp_url: str,
        routes: RoutingTable,
        queues: Mapping[str, str],
        delivery_limit: int,
        confirm_timeout_s: float = 5.0,
        blocked_timeout_s: float = 2.0,
        tracer_provider: trace.TracerProvider | None = None,
        flight: AsyncFlightRecord | None = None,
        link: ServerLink | None = None,
    ) -> None:
        """Configure; nothing connects before :meth:`start`. ``amqp_url`` may name several nodes (comma-separated):
        each (re)connect tries them in turn.

        ``queues`` maps every actor of ``routes`` to its queue name (``broker.get_actor(a).queue_name``);
        ``delivery_limit`` must be the hub broker's (the queues are declared with its arguments).
        ``confirm_timeout_s`` bounds each publish and the connect; ``blocked_timeout_s`` is how long a
        publish already awaiting its confirm may wait out a ``connection.blocked``.
        ``tracer_provider`` records the PRODUCER spans (default: the global provider); ``flight`` gets a
        ``published`` hop per confirmed publish, as the dispatcher records them. ``link``: the process's
        link to RabbitMQ (by default one of its own), which paces reconnects (backoff with jitter), logs
        each change of state once and, when the credentials are refused a few times in a row, ends them.
        """
        missing = sorted(actor for actor in routes.actors() if actor not in queues)
        if missing:
            raise ConfigurationError(f"routing table names actors without a queue: {', '.join(missing)}")
        if confirm_timeout_s <= 0 or blocked_timeout_s < 0:
            raise ConfigurationError("confirm_timeout_s must be positive and blocked_timeout_s not negative")
        try:
            self._urls = amqp_urls(amqp_url)
        except ValueError as exc:
            raise ConfigurationError(f"amqp_url: {exc}") from None
        #: The URL of the node the publisher is (or was last) connected to.
        self._connected_to = self._urls[0]
        self._routes = routes
        self._queues = dict(queues)
        self._confirm_timeout_s = confirm_timeout_s
        self._blocked_timeout_s = blocked_timeout_s
        self._tracer_provider = tracer_provider
        self._flight = flight
        self._link = link or ServerLink("RabbitMQ", amqp_url)
        #: Seconds to wait before the next reconnect attempt (the link's backoff after a failure).
        self._retry_in_s = 0.0
        #: Why the connection closed (aio-pika's close callback), for the link's line.
        self._close_reason: BaseException | None = None
        self._declarations = {
            queue: queue_declarations(queue, delivery_limit=delivery_limit) for queue in sorted(set(queues.values()))
        }
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._to_declare: set[str] = set()
        #: The channel a publish was last nacked on, renewed by the supervisor.
        self._nacked_on: AbstractChannel | None = None
        #: Classic queues (dead letters) whose node was down when last declared.
        self._homeless: set[str] = set()
        self._blocked_since: float | None = None
        self._blocked_abort: asyncio.Future[None] | None = None
        self._in_flight = 0
        #: When each publish now awaiting its confirm started (loop time), to tell a stall.
        self._awaiting: dict[int, float] = {}
        self._last_confirm_timeout: float | None = None
        #: Highest number of publishes awaiting their confirm at the same time.
        self.in_flight_max = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, *, require_connection: bool = True) -> None:
        """Connect, open the confirming channel and declare every actor queue (with ``.DQ`` and ``.XQ``).

        Raises :class:`BrokerUnavailable` when RabbitMQ cannot be reached and :class:`ConfigurationError`
        when a queue exists with other arguments; the publisher is then closed. With
        ``require_connection=False`` a failure is logged instead and the publisher keeps trying in the
        background (``ready`` is false meanwhile); call :meth:`close` in every case.
        """
        if self._started:
            raise RuntimeError("AsyncEventPublisher.start() called twice")
        self._started = True
        self._blocked_abort = asyncio.get_running_loop().create_future()
        try:
            await self._connect()
        except (BrokerUnavailable, ConfigurationError) as exc:
            if require_connection:
                await self.close()
                raise
            # The link has said why; this says what it means for the ingress.
            log.warning("ingress publisher not connected; retrying in the background, not ready (503) until "
                        "connected", error=str(exc))
        self._supervisor = asyncio.create_task(self._supervise(), name="hub-ingress-publisher")

    async def close(self) -> None:
        """Stop reconnecting and close the connection; publishes under way fail with ``BrokerUnavailable``."""
        self._closed = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        await self._drop_connection()

    @property
    def ready(self) -> bool:
        """Connected, channel open, not blocked by the broker and confirms not stalling (for ``/readyz``).

        RabbitMQ announces a resource alarm to a connection only once it publishes, so an idle publisher
        can read ready during an alarm; its next publish then fails and flips this. Confirms stall when a
        publish has waited for its confirm longer than half the confirm timeout, or one timed out within
        the last confirm timeout.
        """
        connection, channel = self._connection, self._channel
        return (
            not self._closed
            and connection is not None
            and not connection.is_closed
            and channel is not None
            and not channel.is_closed
            and not _blocked_by_broker(connection)
            and not self.confirms_stalled
        )

    @property
    def confirms_stalled(self) -> bool:
        """Whether publisher confirms are overdue now, or timed out recently."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return False
        if self._awaiting and now - min(self._awaiting.values()) > self._confirm_timeout_s / 2:
            return True
        return self._last_confirm_timeout is not None and now - self._last_confirm_timeout < self._confirm_timeout_s

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, event: CloudEvent, *, root_id: str | None = None,
                      writes: Writes | None = None) -> list[str]:
        """Enqueue ``event`` to every subscriber; returns the Dramatiq message ids once all were confirmed.

        The subscribers' publishes run concurrently; if any is not confirmed the whole call raises
        :class:`BrokerUnavailable` (after every publish has settled, so nothing is left running).
        ``root_id`` continues a business journey, as ``Dispatcher.dispatch(parent=...)`` does. ``writes``: where
        each confirmed publish's flight-record hop waits to be sent with the request's closing writes (one round
        trip for all of them) instead of being written at once.
        """
        messages = event_messages(event, self._routes, self._queues, root_id=root_id)
        if not messages:
            return []  # as Dispatcher.dispatch: nobody subscribed, nothing to confirm
        exchange = self._usable_exchange(event)
        results = await asyncio.gather(
            *(self._publish_one(exchange, message, writes) for message in messages), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        for failure in failures:
            if not isinstance(failure, BrokerUnavailable):
                raise failure
        if failures:
            first = failures[0]
            if len(messages) == 1:
                raise first
            raise BrokerUnavailable(
                f"{len(failures)} of {len(messages)} publishes of event {event.get_id()} failed; first: {first}",
                retry_after=getattr(first, "retry_after", None),
            ) from None
        log.debug("event published", event_id=event.get_id(), subscribers=len(messages))
        return [message.message_id for message in messages]

    def _usable_exchange(self, event: CloudEvent) -> AbstractExchange:
        connection, channel, exchange = self._connection, self._channel, self._exchange
        if self._closed or not self._started:
            raise BrokerUnavailable(f"not connected: publisher {'closed' if self._closed else 'not started'}")
        if connection is None or connection.is_closed or channel is None or channel.is_closed or exchange is None:
            raise BrokerUnavailable("not connected to RabbitMQ (reconnecting in the background)")
        if _blocked_by_broker(connection):
            raise BrokerUnavailable(f"broker blocked (resource alarm): event {event.get_id()} not published")
        if self._blocked_since is not None:
            self._reset_blocked()  # unblocked since the supervisor last looked: no stale abort
        return exchange

    async def _publish_one(self, exchange: AbstractExchange, message: Message[Any], writes: Writes | None) -> None:
        queue = message.queue_name
        started = time.time()
        with publish_span(destination=queue, routing_key=queue, message_id=message.message_id,
                          event=message.options["hub_event"], tracer_provider=self._tracer_provider):
            # Inside the PRODUCER span, so every attempt's CONSUMER span is its child.
            inject_message_context(message.options)
            amqp_message = aio_pika.Message(
                message.encode(),
                content_type=_CONTENT_TYPE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
            )
            await self._confirmed(exchange, amqp_message, queue)
            PUBLISH_DURATION.labels("ingress").observe(time.time() - started)
            if self._flight is not None:
                await self._flight.record(published_hop(message, started_at=started,
                                                        duration_ms=(time.time() - started) * 1000), writes=writes)

    async def _confirmed(self, exchange: AbstractExchange, amqp_message: aio_pika.Message, queue: str) -> None:
        """Publish and wait for the confirm, bounded by the confirm timeout and by a long block."""
        abort = self._blocked_abort
        assert abort is not None
        self._in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self._in_flight)
        publishing = asyncio.ensure_future(exchange.publish(amqp_message, routing_key=queue, mandatory=True))
        loop = asyncio.get_running_loop()
        self._awaiting[id(publishing)] = loop.time()
        try:
            # asyncio.wait_for, plus the abort of a long connection.blocked.
            waiting: set[asyncio.Future[Any]] = {publishing, abort}
            await asyncio.wait(waiting, timeout=self._confirm_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._in_flight -= 1
            self._awaiting.pop(id(publishing), None)
            if not publishing.done():
                publishing.cancel()
                await asyncio.wait({publishing})
            if not publishing.cancelled():
                publishing.exception()  # retrieved here, raised below
        if publishing.cancelled():
            if abort.done():
                raise BrokerUnavailable(
                    f"broker blocked (resource alarm) for over {self._blocked_timeout_s:g} s: publish to {queue} "
                    "not confirmed"
                )
            self._last_confirm_timeout = loop.time()
            raise BrokerUnavailable(f"confirm timeout: publish to {queue} not confirmed within "
                                    f"{self._confirm_timeout_s:g} s")
        try:
            publishing.result()
        except aiormq.exceptions.PublishError:
            self._to_declare.add(queue)
            raise BrokerUnavailable(f"returned unroutable: no queue {queue} took the message") from None
        except aiormq.exceptions.DeliveryError as exc:
            self._nacked_on = self._channel
            raise BrokerUnavailable(f"nacked: the broker refused the message for {queue} "
                                    f"({getattr(exc.frame, 'name', 'Basic.Nack')})") from None
        except TimeoutError:
            self._last_confirm_timeout = loop.time()
            raise BrokerUnavailable(f"confirm timeout: publish to {queue} not confirmed within "
                                    f"{self._confirm_timeout_s:g} s") from None
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(
                f"connection lost: publish to {queue} not confirmed ({type(exc).__name__}: {mask_text(str(exc))})"
            ) from None
        self._last_confirm_timeout = None  # confirms flow again

    # -- connection management -------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connect, open the channel and declare the queues, telling the link how it went."""
        connection = await self._open()
        try:
            channel = await self._new_channel(connection)
            for queue in self._declarations:
                channel = await self._declare(connection, channel, queue)
        except BrokerUnavailable as exc:
            self._retry_in_s = self._link.failed(exc.__cause__ or exc)
            await connection.close()
            raise
        except BaseException:
            await connection.close()
            raise
        connection.close_callbacks.add(self._remember_close)
        self._close_reason = None
        self._connection, self._channel, self._exchange = connection, channel, channel.default_exchange
        self._to_declare.clear()
        self._reset_blocked()
        self._retry_in_s = 0.0
        self._link.succeeded()
        log.info(f"ingress publisher connected to RabbitMQ at {mask_text(self._connected_to)}",
                 queues=len(self._declarations))

    async def _open(self) -> AbstractConnection:
        """A connection to the first of the URLs that answers, in turn (a cluster's nodes)."""
        failure: BaseException | None = None
        for url in self._urls:
            # Built, then connected, so a refused attempt is closed here (aio_pika.connect would leave it to
            # the garbage collector, which schedules a close that is never awaited at exit).
            connection = aio_pika.Connection(make_url(url))
            try:
                await connection.connect(timeout=self._confirm_timeout_s)
            except _UNREACHABLE_ERRORS as exc:
                failure = exc
                with contextlib.suppress(Exception):
                    await connection.close()
                continue
            self._connected_to = url
            return connection
        assert failure is not None  # there is at least one URL
        self._retry_in_s = self._link.failed(failure)
        raise BrokerUnavailable(f"not connected: RabbitMQ unreachable ({describe(failure)})")

    def _remember_close(self, _connection: object, reason: BaseException | None) -> None:
        self._close_reason = reason

    async def _new_channel(self, connection: AbstractConnection) -> AbstractChannel:
        return await connection.channel(publisher_confirms=True, on_return_raises=True)

    async def _declare(self, connection: AbstractConnection, channel: AbstractChannel, queue: str) -> AbstractChannel:
        """Declare one actor's queues; returns the channel to go on with: a new one when a classic queue's node is
        down (on a cluster: RabbitMQ answers NOT_FOUND and closes the channel, though the queue exists)."""
        try:
            for declaration in self._declarations[queue]:
                try:
                    await channel.declare_queue(declaration.queue, durable=declaration.durable,
                                                arguments=declaration.arguments, timeout=self._confirm_timeout_s)
                except aiormq.exceptions.ChannelNotFoundEntity as exc:
                    if declaration.arguments.get("x-queue-type") == "quorum":
                        raise
                    if declaration.queue not in self._homeless:
                        log.warning(f"queue {declaration.queue} is on a RabbitMQ node that is down: nothing reaches "
                                    "it until that node is back", reason=describe(exc))
                    self._homeless.add(declaration.queue)
                    channel = await self._new_channel(connection)
                else:
                    self._homeless.discard(declaration.queue)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise ConfigurationError(f"queue {queue} exists with other arguments: {exc}") from None
        except _UNREACHABLE_ERRORS as exc:
            # The cause is kept for the link (a refused right is told from a lost connection by it).
            raise BrokerUnavailable(f"not connected: declaring {queue} failed ({type(exc).__name__})") from exc
        return channel

    async def _drop_connection(self) -> None:
        connection = self._connection
        self._connection = self._channel = self._exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def _connected(self) -> bool:
        connection, channel = self._connection, self._channel
        return (connection is not None and not connection.is_closed and channel is not None
                and not channel.is_closed)

    async def _supervise(self) -> None:
        """Reconnect after a loss (backing off as the link says), declare returned queues again, and abort
        publishes stuck on a block. Stops reconnecting once the link says the credentials are refused."""
        last_problem: str | None = None
        while not self._closed and self._link.refused is None:
            if not self._connected():
                if self._connection is not None:
                    self._link.lost(self._close_reason or BrokerUnavailable("the ingress publisher's channel closed"))
                await self._drop_connection()
                await asyncio.sleep(self._retry_in_s)
                try:
                    await self._connect()
                except BrokerUnavailable:
                    continue  # told to the link, which logs each change of state once
                except (aiormq.exceptions.AMQPError, RuntimeError, StopAsyncIteration) as exc:
                    # A failure the client raises in a form not listed as unreachable (aiormq has several): the
                    # supervisor must outlive it, or the ingress never reconnects. Told to the link like the rest.
                    self._retry_in_s = self._link.failed(exc)
                    continue
                except ConfigurationError as exc:
                    # Not an outage: a queue declared elsewhere with other arguments. Said once per cause.
                    if str(exc) != last_problem:
                        log.warning("ingress publisher cannot declare its queues; retrying", error=str(exc))
                    last_problem = str(exc)
                    self._retry_in_s = self._link.backoff.max_s
                    continue
                last_problem = None
            await self._renew_nacked_channel()
            await self._declare_returned()
            self._watch_blocked()
            await asyncio.sleep(self.TICK_S)

    async def _renew_nacked_channel(self) -> None:
        """Publish on a new channel after a nack. On a cluster, a channel that first publishes to a quorum queue
        while its leader is being elected can go on being nacked after the election (RabbitMQ 3.10); a new
        channel is not. A nack for another cause (a full queue) costs one channel."""
        nacked, self._nacked_on = self._nacked_on, None
        connection = self._connection
        if nacked is None or nacked is not self._channel or connection is None or connection.is_closed:
            return
        try:
            channel = await self._new_channel(connection)
        except _UNREACHABLE_ERRORS:
            return  # the connection is going: the next turn reconnects
        self._channel, self._exchange = channel, channel.default_exchange
        log.info("ingress publisher moved to a new channel after a nack")
        with contextlib.suppress(Exception):
            await nacked.close()

    async def _declare_returned(self) -> None:
        channel = self._channel
        connection = self._connection
        while self._to_declare and connection is not None and channel is not None and not channel.is_closed:
            queue = self._to_declare.pop()
            try:
                channel = await self._declare(connection, channel, queue)
                if channel is not self._channel:
                    self._channel, self._exchange = channel, channel.default_exchange
            except (BrokerUnavailable, ConfigurationError) as exc:
                log.warning("declaring a returned queue again failed", queue=queue, error=str(exc))
                return

    def _reset_blocked(self) -> None:
        self._blocked_since = None
        if self._blocked_abort is None or self._blocked_abort.done():
            self._blocked_abort = asyncio.get_running_loop().create_future()

    def _watch_blocked(self) -> None:
        connection = self._connection
        now = asyncio.get_running_loop().time()
        if connection is not None and _blocked_by_broker(connection):
            if self._blocked_since is None:
                self._blocked_since = now
                log.warning("broker blocked the ingress publisher (resource alarm)")
            if (now - self._blocked_since >= self._blocked_timeout_s and self._blocked_abort is not None
                    and not self._blocked_abort.done()):
                self._blocked_abort.set_result(None)
        elif self._blocked_since is not None:
            log.info("broker unblocked the ingress publisher")
            self._reset_blocked()
