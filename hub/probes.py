"""Do RabbitMQ, Redis and the database answer? Probes for start-up and health, and the wait for them before
a worker runs.

A server process (``hub worker``, ``hub serve``) never falls back to the embedded mode: it waits for the
real servers, backing off with jitter, and its links (:mod:`hub.connectivity`) log one line per change of
state (which server, at which URL, why), not one per attempt. Credentials refused a few times in a row
end the wait: retrying cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import redis
import redis.asyncio

from hub.connectivity import ServerLink
from hub.db import probe_database
from hub.endpoints import amqp_parameters
from hub.store import redis_client


def probe_rabbitmq(url: str, *, timeout_s: float = 3.0) -> Exception | None:
    """None when RabbitMQ accepts an AMQP connection at ``url`` (at one of its URLs, when it names several
    nodes), else the error."""
    parameters = amqp_parameters(url)
    for each in parameters:
        each.connection_attempts = 1
        each.socket_timeout = timeout_s
        each.blocked_connection_timeout = timeout_s
    try:
        connection = pika.BlockingConnection(parameters)
    except (pika.exceptions.AMQPError, OSError) as exc:
        return exc
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        connection.close()
    return None


def probe_redis(url: str, *, timeout_s: float = 3.0) -> Exception | None:
    """None when Redis answers PING at ``url`` (the primary the sentinels name, for ``redis+sentinel://``),
    else the error."""
    client = redis_client(url, timeout_s=timeout_s)
    try:
        client.ping()
    except redis.RedisError as exc:
        return exc
    finally:
        client.close()
    return None


@dataclass(frozen=True)
class Server:
    """One server a process depends on: the process's link to it and how to probe it."""

    link: ServerLink
    probe: Callable[[str], Exception | None]

    def check(self) -> float | None:
        """Probe and tell the link: None when the server answers, else the seconds to wait before the next
        probe."""
        error = self.probe(self.link.url)
        if error is None:
            self.link.succeeded()
            return None
        return self.link.failed(error)


def servers_of(links: Sequence[ServerLink]) -> list[Server]:
    """The servers behind a runtime's links (``Runtime.links``), each with its probe."""
    probes = {"RabbitMQ": probe_rabbitmq, "Redis": probe_redis, "PostgreSQL": probe_database}
    return [Server(link, probes[link.name]) for link in links]


def wait_for_servers(servers: Sequence[Server], *, stop: threading.Event) -> bool:
    """Block until every server answers (True), or ``stop`` is set or one refused the credentials for good
    (False: the link's ``refused`` says which), backing off with jitter between probes."""
    while not stop.is_set():
        waits = [wait for server in servers if (wait := server.check()) is not None]
        if not waits:
            return True
        if any(server.link.refused for server in servers) or stop.wait(min(waits)):
            break
    return False


async def watch_async_redis(client: redis.asyncio.Redis, link: ServerLink, *, every_s: float = 2.0) -> None:
    """Ping the ingress's Redis until cancelled or the credentials are refused for good, telling the link
    (one line per change of state); while it does not answer, ``/readyz`` and every event are 503, and it
    is pinged again after the link's backoff."""
    while link.refused is None:
        try:
            answer: Any = client.ping()  # a coroutine on the asyncio client
            await asyncio.wait_for(answer, timeout=every_s)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            await asyncio.sleep(link.failed(exc))
            continue
        link.succeeded()
        await asyncio.sleep(every_s)
