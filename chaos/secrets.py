"""Secret canaries: known fake secrets the run's servers, systems and sources use, looked for afterwards in every
process log and every store (Redis keys and values, every PostgreSQL table, the dead letters, the topic copies).

A canary found anywhere is a leak: the hub wrote a password, a token or a signing key where an operator,
a backup or a consumer reads it. Each value is random, so a hit cannot be a coincidence.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import redis
import sqlalchemy as sa


@dataclass(frozen=True)
class Canaries:
    """The run's secrets: the broker's and Redis's passwords, the ERP's webhook signing secret and the bearer
    tokens of the ERP, Graph and DocuSign."""

    amqp_password: str
    redis_password: str
    webhook_secret: str  # Standard Webhooks: whsec_ + base64 of the key
    erp_token: str
    graph_token: str
    docusign_token: str

    @classmethod
    def generate(cls) -> Canaries:
        """New random values (each with a marker, so a reader of a leak can tell what it is)."""
        def token(what: str) -> str:
            return f"canary-{what}-{secrets.token_hex(12)}"

        return cls(amqp_password=token("amqp"), redis_password=token("redis"),
                   webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
                   erp_token=token("erp"), graph_token=token("graph"), docusign_token=token("docusign"))

    def patterns(self) -> dict[str, bytes]:
        """What to look for, by name (the webhook secret without its ``whsec_`` prefix: the key itself)."""
        found = {f.name: str(getattr(self, f.name)).encode() for f in fields(self)}
        found["webhook_secret"] = self.webhook_secret.removeprefix("whsec_").encode()
        return found


class LeakFinder:
    """Looks for the canaries in whatever it is shown and keeps each hit as ``where: canary``."""

    def __init__(self, canaries: Canaries) -> None:
        self._patterns = canaries.patterns()
        self.hits: list[str] = []

    def look(self, where: str, data: bytes) -> None:
        """Record every canary in ``data``."""
        for name, pattern in self._patterns.items():
            if pattern in data:
                self.hits.append(f"{where}: {name}")

    def files(self, paths: Iterable[Path]) -> None:
        """Every file given, and every file below each directory given."""
        for path in paths:
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if file.is_file():
                    with contextlib.suppress(OSError):
                        self.look(str(file), file.read_bytes())

    def redis(self, client: redis.Redis) -> None:
        """Every key and value in the Redis database."""
        for key in client.scan_iter(count=1000):
            self.look(f"redis key {key!r}", bytes(key))
            self.look(f"redis value of {key!r}", b"\n".join(_redis_values(client, key)))

    def postgres(self, url: str) -> None:
        """Every row of every table of every schema but PostgreSQL's own."""
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                tables = connection.execute(sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                    " AND table_schema NOT IN ('pg_catalog', 'information_schema')")).all()
                for schema, table in tables:
                    # The names come from the catalogue, quoted as identifiers.
                    query = sa.text(f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608
                    rows = connection.execute(query).all()
                    self.look(f"postgres table {schema}.{table}", "\n".join(repr(tuple(r)) for r in rows).encode())
        finally:
            engine.dispose()

    def queues(self, amqp_url: str, names: Iterable[str]) -> None:
        """Every message waiting in the queues ``names`` (the dead letters), peeked: each returns to its queue."""
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            for name in names:
                channel = connection.channel()
                for method, properties, body in _peek(channel, name):
                    self.look(f"queue {name} message {method.delivery_tag}", repr(properties).encode() + body)
                with contextlib.suppress(pika.exceptions.AMQPError):
                    channel.close()  # unacknowledged: back to the queue
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()


def _peek(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str
          ) -> Iterator[tuple[pika.spec.Basic.GetOk, pika.BasicProperties, bytes]]:
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            return
        yield method, properties, body


def _redis_values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind: Any = client.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    raw: Any
    if kind == "string":
        raw = [client.get(key)]
    elif kind == "hash":
        raw = [part for pair in client.hgetall(key.decode()).items() for part in pair]  # type: ignore[union-attr]
    elif kind == "list":
        raw = client.lrange(key, 0, -1)
    elif kind == "set":
        raw = client.smembers(key)
    elif kind == "zset":
        raw = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]  # type: ignore[union-attr]
    elif kind == "stream":
        raw = [repr(entry) for entry in client.xrange(key)]  # type: ignore[union-attr]
    else:
        raw = []
    return [v if isinstance(v, bytes) else str(v).encode() for v in raw if v is not None]
