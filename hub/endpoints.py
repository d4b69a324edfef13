"""Where RabbitMQ and Redis are: one AMQP URL or several (the nodes of a cluster, tried in turn), and Redis
directly (``redis://``) or through Sentinel (``redis+sentinel://``), which names the primary of the moment.

``HUB_AMQP_URL`` holds one URL or several separated by commas::

    amqp://hub:pw@rabbit-1:5672/%2F,amqp://hub:pw@rabbit-2:5672/%2F,amqp://hub:pw@rabbit-3:5672/%2F

Every client connects to the first that answers, in the order given. A comma inside a user name or
password is written ``%2C``.

``HUB_REDIS_URL`` names the sentinels, the service they watch and the database::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]

The credentials are the Redis servers' (the sentinels are asked without); a port left out is 26379. The
client asks the sentinels for the primary on every new connection, so it follows a failover.

Nothing here connects; the checks never quote a URL (it may hold a password).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pika

__all__ = ["SENTINEL_SCHEME", "SentinelAddress", "amqp_parameters", "amqp_urls", "is_sentinel"]

#: The scheme of a Redis reached through Sentinel.
SENTINEL_SCHEME = "redis+sentinel://"
_AMQP_SCHEMES = ("amqp://", "amqps://")
_SENTINEL_PORT = 26379


def amqp_urls(value: str) -> tuple[str, ...]:
    """The AMQP URLs of ``value`` (one, or several separated by commas), in order; ValueError names the
    position of a bad one, never its text."""
    urls = tuple(part.strip() for part in value.split(","))
    for position, url in enumerate(urls, start=1):
        where = f"URL {position} of {len(urls)}" if len(urls) > 1 else "the URL"
        if not url:
            raise ValueError(f"{where} is empty (a comma too many?)")
        if not url.startswith(_AMQP_SCHEMES):
            raise ValueError(f"{where} must start with amqp:// or amqps://")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError(f"{where} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"{where} has no host")
    return urls


def amqp_parameters(value: str) -> list[pika.URLParameters]:
    """pika's parameters for each URL of ``value``: a ``pika.BlockingConnection`` given the list tries each in
    turn."""
    return [pika.URLParameters(url) for url in amqp_urls(value)]


def is_sentinel(url: str) -> bool:
    """Whether ``url`` reaches Redis through Sentinel."""
    return url.startswith(SENTINEL_SCHEME)


@dataclass(frozen=True)
class SentinelAddress:
    """A Redis primary found through Sentinel: the sentinels, the service they watch, the database and the
    servers' credentials."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelAddress:
        """Read a ``redis+sentinel://`` URL; ValueError says what is wrong, never quoting it."""
        if not is_sentinel(url):
            raise ValueError(f"must start with {SENTINEL_SCHEME}")
        rest = url[len(SENTINEL_SCHEME):].split("?", 1)[0].split("#", 1)[0]
        netloc, _, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        sentinels = tuple(_host_port(part.strip(), position, hosts.count(",") + 1)
                          for position, part in enumerate(hosts.split(","), start=1))
        service, _, db = path.strip("/").partition("/")
        if not service:
            raise ValueError("names no service: redis+sentinel://host:port[,host:port...]/service[/db]")
        if db and not db.isdigit():
            raise ValueError("has a database that is not a number")
        return cls(sentinels=sentinels, service=unquote(service), db=int(db or 0), username=username,
                   password=password)


def _host_port(text: str, position: int, count: int) -> tuple[str, int]:
    where = f"sentinel {position} of {count}" if count > 1 else "the sentinel"
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"{where} has no host")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"{where} has an invalid port")
    return host, int(port or _SENTINEL_PORT)
