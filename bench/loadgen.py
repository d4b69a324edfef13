"""The load generator: signed CloudEvents requests to the ingress (httpx, async) and the ``hub.events`` subscriber.

Past 400 lines on purpose: the two drivers and the subscriber that times them share their bookkeeping.

Requests are built and signed before a phase starts (Standard Webhooks, the ERP's scheme), so the timed
part of the load generator is only HTTP. Two drivers, both bounded in count and in time:

- :func:`closed_loop`: ``concurrency`` tasks, each sending its next request as soon as the previous one
  was answered (throughput);
- :func:`open_loop`: one request every ``1/rate`` seconds whatever the answers (latency at a fixed
  offered load; latencies count from the scheduled send time, so a stalled server is not hidden by a
  load generator that waits for it).

:class:`Subscriber` binds a private queue to ``hub.events`` and records when each posted event's last side
effects arrived: the fan-out's publish of the event itself (recognised by its message id, the fan-out's
side-effect key) and/or the fan-out's publish of what provisioning or master data emitted about its project
(recognised by type and project code); other traffic on the shared exchange is ignored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from bench.common import AMQP_URL, STALL_S, BenchError
from bench.flows import EVENT, FANOUT, PROJECT_CHANGED, PROVISIONED, Flow
from bench.procs import BENCH_SOURCE
from hub.cli.scenario import erp_payload
from hub.dispatch import RoutingTable
from hub.idempotency import side_effect_key
from hub.topics import exchange_name

#: The event type sent: the ERP's project-created event (the demo's), ``hub.cli.scenario.erp_payload`` with a distinct
#: project code per event.
EVENT_TYPE = "erp.project.created.v1"
#: The longest a request may take before it counts as failed (``TimeoutError``).
REQUEST_TIMEOUT_S = 30.0
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@dataclass(frozen=True)
class Request:
    """One prepared, signed request: its body, headers and the ids of the events it carries."""

    body: bytes
    headers: dict[str, str]
    event_ids: tuple[str, ...]
    #: The whole HTTP/1.1 request, for :class:`RawHttpClient`.
    wire: bytes = b""
    #: The project code of each event (its ``subject``).
    codes: tuple[str, ...] = ()


def check_routes(routes: Mapping[str, Sequence[str]], flows: Iterable[Flow] = (FANOUT,)) -> tuple[str, ...]:
    """Fail unless the hub routes the benchmark's event type to every actor of ``flows``, and what they emit to
    the fan-out (their last side effects); returns the other actors the event type goes to in the hub (not
    measured)."""
    table = RoutingTable(routes)
    subscribers = table.subscribers(EVENT_TYPE)
    measured = {actor for flow in flows for actor in flow.actors}
    missing = [a for a in sorted(measured) if a not in subscribers]
    missing += [f"{kind} -> fanout" for flow in flows for kind in flow.effects
                if kind != EVENT and "fanout" not in table.subscribers(kind)]
    if missing:
        raise BenchError(f"{EVENT_TYPE} is no longer routed to {', '.join(missing)}: a benchmark flow is gone; "
                         "update bench/common.py (FLOWS)")
    return tuple(a for a in subscribers if a not in measured)


def fanout_message_id(event_id: str) -> str:
    """The message id of the fan-out's publish of ``event_id`` on ``hub.events``."""
    return side_effect_key(event_id, "fanout", "publish")


class RequestFactory:
    """Builds distinct project-created events and signs requests with the source's webhook secret."""

    def __init__(self, secret: str, *, tag: str) -> None:
        encoded = secret.removeprefix("whsec_")
        self._key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
        self._tag = tag
        self._n = 0
        self._payload = erp_payload()

    def _event(self) -> dict[str, Any]:
        self._n += 1
        code = f"ENG-{self._tag}-{self._n:07d}"
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": BENCH_SOURCE, "type": EVENT_TYPE,
                "subject": code, "partitionkey": f"project:{code}", "datacontenttype": "application/json",
                "data": {**self._payload, "project_code": code}}

    def sign(self, body: bytes) -> dict[str, str]:
        """Standard Webhooks headers: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
        msg_id = f"msg_{uuid.uuid4().hex}"
        timestamp = str(int(time.time()))
        mac = hmac.new(self._key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        return {"webhook-id": msg_id, "webhook-timestamp": timestamp,
                "webhook-signature": "v1," + base64.b64encode(mac).decode()}

    def request(self, batch: int, client: Client) -> Request:
        """One request: a structured event (``batch`` 1) or a batch of ``batch`` events."""
        if batch == 1:
            document: Any = self._event()
            ids: tuple[str, ...] = (document["id"],)
            content_type = STRUCTURED
        else:
            document = [self._event() for _ in range(batch)]
            ids = tuple(e["id"] for e in document)
            content_type = BATCH
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = {"content-type": content_type, **self.sign(body)}
        codes = tuple(e["subject"] for e in (document if batch != 1 else [document]))
        return Request(body, headers, ids, client.wire("/v1/events", body, headers), codes)

    def requests(self, events: int, batch: int, client: Client) -> list[Request]:
        """Enough requests of ``batch`` events to carry ``events`` events (rounded up), for ``client``."""
        return [self.request(batch, client) for _ in range(-(-events // batch))]


@dataclass
class Outcome:
    """What happened to one request (monotonic times)."""

    scheduled: float
    sent: float
    answered: float
    status: int
    events: int
    error: str | None = None


@dataclass
class LoadResult:
    """All the outcomes of a phase."""

    outcomes: list[Outcome] = field(default_factory=list)
    stopped_by_time: bool = False
    #: An open-loop phase stopped because too many requests were unanswered.
    overloaded: bool = False

    @property
    def accepted(self) -> list[Outcome]:
        """Requests answered 202."""
        return [o for o in self.outcomes if o.status == 202]

    @property
    def accepted_events(self) -> int:
        """Events in requests answered 202."""
        return sum(o.events for o in self.accepted)

    @property
    def failures(self) -> dict[str, int]:
        """Requests not answered 202, by status (or error type)."""
        found: dict[str, int] = {}
        for o in self.outcomes:
            if o.status != 202:
                name = o.error or str(o.status)
                found[name] = found.get(name, 0) + 1
        return found

    @property
    def elapsed_s(self) -> float:
        """From the first send to the last answer."""
        if not self.outcomes:
            return 0.0
        return max(o.answered for o in self.outcomes) - min(o.sent for o in self.outcomes)

    @property
    def start(self) -> float:
        """Monotonic time of the first send."""
        return min(o.sent for o in self.outcomes)

    def latencies_s(self) -> list[float]:
        """Answer time minus scheduled time of each accepted request."""
        return [o.answered - o.scheduled for o in self.accepted]


class RawHttpClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: ``connections`` persistent connections.

    Requests are pre-serialised bytes; responses are read by ``Content-Length`` (or chunked). It costs
    the load generator about 0.04 ms of CPU per request where httpx costs 0.8 ms with a pool of 1 to 8
    connections and about 3 ms with 32 (measured on the 2-core bench machine against a trivial
    endpoint), which on two cores would be taken from the server under test.
    """

    name = "raw-asyncio-http11"

    def __init__(self, base_url: str, connections: int) -> None:
        parts = httpx.URL(base_url)
        self.host, self.port = parts.host, parts.port or 80
        self._size = connections
        self._open = 0
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle.empty() and self._open < self._size:
            self._open += 1
            try:
                return await asyncio.open_connection(self.host, self.port)
            except BaseException:
                self._open -= 1
                raise
        return await self._idle.get()

    def wire(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The request's bytes."""
        head = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {len(body)}",
                *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def send(self, request: Request) -> tuple[int, str | None]:
        """Send one prepared request; returns (status, error type or None). Bounded by :data:`REQUEST_TIMEOUT_S`."""
        try:
            return await asyncio.wait_for(self._send(request), timeout=REQUEST_TIMEOUT_S)
        except TimeoutError:
            return 0, "TimeoutError"

    async def _send(self, request: Request) -> tuple[int, str | None]:
        try:
            reader, writer = await self._connection()
        except OSError as exc:
            return 0, type(exc).__name__
        try:
            writer.write(request.wire)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if "content-length" in fields:
                await reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            if fields.get("connection", "").lower() == "close":
                raise ConnectionResetError("server closed the connection")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
            self._open -= 1
            writer.close()
            return 0, type(exc).__name__
        except asyncio.CancelledError:  # the timeout: the connection is in an unknown state
            self._open -= 1
            writer.close()
            raise
        self._idle.put_nowait((reader, writer))
        return status, None

    async def warm(self) -> None:
        """Open every connection before a timed phase."""
        opened = [await asyncio.open_connection(self.host, self.port) for _ in range(self._size - self._open)]
        self._open += len(opened)
        for pair in opened:
            self._idle.put_nowait(pair)

    async def aclose(self) -> None:
        """Close the idle connections."""
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()
        self._open = 0


class HttpxClient:
    """The same interface on an ``httpx.AsyncClient`` whose pool holds ``connections`` connections."""

    name = "httpx"

    def __init__(self, base_url: str, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(REQUEST_TIMEOUT_S))
        self._size = connections

    def wire(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """Nothing to pre-serialise: httpx builds the request."""
        return b""

    async def send(self, request: Request) -> tuple[int, str | None]:
        """Send one prepared request; returns (status, error type or None)."""
        try:
            response = await self._client.post("/v1/events", content=request.body, headers=request.headers)
            await response.aread()
        except httpx.HTTPError as exc:
            return 0, type(exc).__name__
        return response.status_code, None

    async def warm(self) -> None:
        """Open the pool's connections before a timed phase."""
        await asyncio.gather(*(self._client.get("/healthz") for _ in range(self._size)))

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()


Client = RawHttpClient | HttpxClient
#: The HTTP clients the load generator can use, by name.
CLIENTS: dict[str, type[RawHttpClient] | type[HttpxClient]] = {"raw": RawHttpClient, "httpx": HttpxClient}


async def _send(client: Client, request: Request, scheduled: float) -> Outcome:
    sent = time.monotonic()
    status, error = await client.send(request)
    return Outcome(scheduled, sent, time.monotonic(), status, len(request.event_ids), error)


async def closed_loop(client: Client, requests: Sequence[Request], *, concurrency: int,
                      max_duration_s: float) -> LoadResult:
    """Send ``requests`` with ``concurrency`` requests outstanding; stop issuing after ``max_duration_s``."""
    result = LoadResult()
    pending = iter(requests)
    deadline = time.monotonic() + max_duration_s

    async def lane() -> None:
        for request in pending:
            now = time.monotonic()
            if now > deadline:
                result.stopped_by_time = True
                return
            result.outcomes.append(await _send(client, request, now))

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return result


async def open_loop(client: Client, requests: Iterable[Request], *, rate: float,
                    max_duration_s: float, max_outstanding: int = 256) -> LoadResult:
    """Send one request every ``1/rate`` s (scheduled times, not waiting for answers); bounded in time.
    ``requests`` may be made as they are sent (a generator): signatures then stay fresh over a long run.

    More than ``max_outstanding`` unanswered requests means the server fell behind: the phase stops there.
    """
    result = LoadResult()
    tasks: list[asyncio.Task[Outcome]] = []
    outstanding = 0

    async def send(request: Request, scheduled: float) -> Outcome:
        nonlocal outstanding
        outstanding += 1
        try:
            return await _send(client, request, scheduled)
        finally:
            outstanding -= 1

    start = time.monotonic() + 0.02
    for i, request in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if scheduled - start > max_duration_s:
            result.stopped_by_time = True
            break
        if outstanding >= max_outstanding:
            result.overloaded = True
            break
        tasks.append(asyncio.create_task(send(request, scheduled)))
    result.outcomes = list(await asyncio.gather(*tasks))
    return result


#: The types whose fan-out publishes are recognised by project code: (type, how its code is read).
_BY_PROJECT = {PROVISIONED: "subject", PROJECT_CHANGED: "data"}  # hub.project.changed.v1's subject: canonical id


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class Subscriber:
    """A private queue ``<prefix>.sub`` bound to the prefix's topic exchange (``<prefix>.events``) for the event
    type and the types the flows emit; records when each expected event's last side effect arrived."""

    def __init__(self, prefix: str, *, amqp_url: str = AMQP_URL) -> None:
        self._queue_name = f"{prefix}.sub"
        self._exchange = exchange_name(prefix)
        self._url = amqp_url
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._expected: dict[str, str] = {}  # side-effect key -> event id
        self._keys: dict[str, list[str]] = {}  # event id -> its side-effect keys not arrived yet
        self.arrived: dict[str, float] = {}  # event id -> monotonic time its last side effect arrived
        self.foreign = 0
        self._changed = asyncio.Event()
        self._registry: Any = None

    async def __aenter__(self) -> Subscriber:
        self._connection = await aio_pika.connect(self._url, timeout=30)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.declare_exchange(self._exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(self._queue_name, exclusive=True, auto_delete=True)
        for routing_key in (EVENT_TYPE, *_BY_PROJECT):
            await queue.bind(exchange, routing_key=routing_key)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    def _key(self, message: AbstractIncomingMessage) -> str:
        """The side-effect key of a message: its message id, or for an emitted type, the type and project code."""
        if message.message_id in self._expected or message.routing_key not in _BY_PROJECT:
            return message.message_id or ""
        kind = message.routing_key
        if _BY_PROJECT[kind] == "subject":
            code = _text((message.headers or {}).get("ce-subject"))
        else:  # the project code is in the (Avro) data: decoded only for a type awaited by code
            if self._registry is None:
                from hub.registry import SchemaRegistry

                self._registry = SchemaRegistry.load()
            try:
                code = str(self._registry.decode(kind, message.body).get("project_code"))
            except Exception:  # not ours to judge: counted as foreign
                return ""
        return project_effect(kind, code)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        now = time.monotonic()
        key = self._key(message)
        event_id = self._expected.pop(key, None)
        if event_id is None:
            self.foreign += 1
            return
        keys = self._keys[event_id]
        keys.remove(key)
        if keys:
            return
        del self._keys[event_id]
        self.arrived[event_id] = now
        if not self._expected:
            self._changed.set()

    def expect(self, event_ids: Iterable[str], codes: Iterable[str] | None = None,
               effects: Sequence[str] = (EVENT,)) -> None:
        """Start watching for the last side effects (``effects``: :data:`bench.flows.EVENT` and/or emitted types)
        of ``event_ids``, whose project codes are ``codes`` (needed for any effect but ``EVENT``)."""
        ids = list(event_ids)
        projects = list(codes) if codes is not None else [""] * len(ids)
        if len(projects) != len(ids):
            raise ValueError("one project code per event")
        for event_id, code in zip(ids, projects, strict=True):
            keys = [fanout_message_id(event_id) if kind == EVENT else project_effect(kind, code) for kind in effects]
            self._keys[event_id] = keys
            for key in keys:
                self._expected[key] = event_id

    async def wait_all(self, event_ids: Sequence[str], *, what: str, stall_s: float = STALL_S,
                       deadline_s: float = 300.0) -> float:
        """Wait until every expected side effect arrived; returns the latest arrival time among ``event_ids``.

        Fails when nothing arrives for ``stall_s`` or the whole wait exceeds ``deadline_s``.
        """
        start = last_change = time.monotonic()
        left = len(self._expected)
        while self._expected:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.25)
            now = time.monotonic()
            if len(self._expected) < left:
                left, last_change = len(self._expected), now
            if self._expected and now - last_change > stall_s:
                raise BenchError(f"{what}: no side effect for {stall_s:.0f} s, {self._missing()} of "
                                 f"{len(event_ids)} events")
            if self._expected and now - start > deadline_s:
                raise BenchError(f"{what}: {self._missing()} of {len(event_ids)} events unfinished after "
                                 f"{deadline_s:.0f} s")
        return max(self.arrived[e] for e in event_ids)

    def _missing(self) -> str:
        kinds = {key.split(" ", 1)[0] if " " in key else EVENT for key in self._expected}
        return f"{len(self._keys)} events missing side effects ({', '.join(sorted(kinds))})"

    def forget(self, event_ids: Iterable[str]) -> None:
        """Drop the arrival records of ``event_ids`` (and stop expecting those not arrived)."""
        for event_id in event_ids:
            self.arrived.pop(event_id, None)
            for key in self._keys.pop(event_id, []):
                self._expected.pop(key, None)


def project_effect(kind: str, code: str) -> str:
    """The side-effect key of the fan-out's publish of an event of type ``kind`` about the project ``code``."""
    return f"{kind} {code}"
