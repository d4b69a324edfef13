"""Do RabbitMQ, Redis and the database answer? Probes for start-up and health, and the wait for them before
a worker runs.

A server process (``hub worker``) never falls back to the embedded mode: it waits for the real servers,
logging one line per change of state (which server, at which URL, why), not one per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import redis
import redis.asyncio

from hub.db import probe_database
from hub.settings import Settings
from observability.logging import get_logger, mask_text

log = get_logger(__name__)
_UNKNOWN = "<not probed yet>"

#: Seconds between probes while a server does not answer, growing to the maximum.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 5.0


def probe_rabbitmq(url: str, *, timeout_s: float = 3.0) -> str | None:
    """None when RabbitMQ accepts an AMQP connection at ``url``, else why not (no secret in it)."""
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout_s
    parameters.blocked_connection_timeout = timeout_s
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.ProbableAuthenticationError:
        return "authentication refused (check the user name and password)"
    except pika.exceptions.ProbableAccessDeniedError:
        return "access to the virtual host refused"
    except (pika.exceptions.AMQPError, OSError) as exc:
        return mask_text(f"{type(exc).__name__}: {exc}".rstrip(": ")) or type(exc).__name__
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        connection.close()
    return None


def probe_redis(url: str, *, timeout_s: float = 3.0) -> str | None:
    """None when Redis answers PING at ``url``, else why not (no secret in it)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except redis.AuthenticationError:
        return "authentication refused (check the password in the URL)"
    except redis.RedisError as exc:
        return mask_text(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return None


@dataclass(frozen=True)
class Server:
    """One server a process depends on."""

    name: str
    url: str
    probe: Callable[[str], str | None]

    def check(self) -> str | None:
        """None when it answers, else why not."""
        return self.probe(self.url)


def servers_of(settings: Settings) -> list[Server]:
    """The servers a hub process needs: RabbitMQ, Redis and the database at the configured URLs."""
    return [Server("RabbitMQ", settings.amqp_url, probe_rabbitmq), Server("Redis", settings.redis_url, probe_redis),
            Server("PostgreSQL", settings.database_url, probe_database)]


class ServerWatch:
    """Probes servers and logs each change of state once: lost (with the reason), restored."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self._last: dict[str, str | None] = {}

    def check(self) -> list[str]:
        """Probe every server; returns the names of those that do not answer."""
        down = []
        for server in self.servers:
            problem = server.check()
            before = self._last.get(server.name, _UNKNOWN)
            if problem is not None:
                down.append(server.name)
                if problem != before:
                    log.warning(f"{server.name} does not answer at {mask_text(server.url)}; retrying",
                                server=server.name, reason=problem)
            elif before not in (None, _UNKNOWN):
                log.warning(f"{server.name} answers again at {mask_text(server.url)}", server=server.name)
            self._last[server.name] = problem
        return down


def wait_for_servers(servers: list[Server], *, stop: threading.Event) -> bool:
    """Block until every server answers (True) or ``stop`` is set (False), backing off between probes."""
    watch = ServerWatch(servers)
    delay = RETRY_MIN_S
    while not stop.is_set():
        if not watch.check():
            return True
        if stop.wait(delay):
            break
        delay = min(delay * 2, RETRY_MAX_S)
    return False


async def watch_async_redis(client: redis.asyncio.Redis, url: str, *, every_s: float = 2.0) -> None:
    """Ping the ingress's Redis until cancelled, logging each loss (with the reason) and each recovery once;
    while it does not answer, ``/readyz`` and every event are 503."""
    last: str | None = _UNKNOWN
    while True:
        try:
            answer: Any = client.ping()  # a coroutine on the asyncio client
            await asyncio.wait_for(answer, timeout=every_s)
            problem = None
        except (redis.RedisError, OSError, TimeoutError) as exc:
            problem = mask_text(f"{type(exc).__name__}: {exc}")
        if problem is not None and problem != last:
            log.warning(f"Redis does not answer at {mask_text(url)}; not ready (503) until it does",
                        server="Redis", reason=problem)
        elif problem is None and last not in (None, _UNKNOWN):
            log.warning(f"Redis answers again at {mask_text(url)}", server="Redis")
        last = problem
        await asyncio.sleep(every_s)
