"""Has Redis lost its data? The epoch: a random value the workers keep both in Redis (``<prefix>:epoch``)
and in the hub's database. Redis holds only coordination (idempotency leases and done marks, quotas,
locks, the flight record), so a Redis restarted empty loses no record a firm keeps, but it forgets
which events were handled: redeliveries run again (their side effects are keyed, so the downstream
systems hold), the flight record of earlier journeys is gone, and quotas start afresh. That deserves
one loud line and a note in ``/readyz``, not silence.

A worker checks at start and every few seconds (:meth:`RedisEpoch.check`). When Redis has no epoch
but the database remembers one, Redis lost its data: the worker logs it once, writes a new epoch, and
leaves ``<prefix>:epoch:lost-at`` in Redis for a day, which the ingress's ``/readyz`` reports.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import redis
import redis.asyncio
import sqlalchemy as sa

from hub.db import Database, metadata
from hub.store import guarded
from observability.logging import get_logger

log = get_logger(__name__)

#: How long the note of a loss stays in Redis for ``/readyz``.
LOSS_NOTE_TTL_S = 86_400
#: ``new``: the first epoch; ``ok``: Redis kept its data; ``lost``: Redis restarted empty (or was
#: flushed); ``foreign``: Redis holds another epoch than the database (another hub's data, or a database
#: restored from a backup).
Verdict = Literal["new", "ok", "lost", "foreign"]

redis_epoch = sa.Table(
    "redis_epoch", metadata,
    sa.Column("id", sa.Integer(), primary_key=True),  # one row
    sa.Column("epoch", sa.String(64), nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lost_at", sa.DateTime(timezone=True)),
)


def epoch_key(prefix: str) -> str:
    """The Redis key of the epoch."""
    return f"{prefix}:epoch"


def loss_key(prefix: str) -> str:
    """The Redis key noting when a loss was found (for ``/readyz``)."""
    return f"{prefix}:epoch:lost-at"


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisEpoch:
    """Compares Redis's epoch with the database's, logging each loss once."""

    def __init__(self, client: redis.Redis, db: Database, *, prefix: str) -> None:
        self._client, self._db, self._prefix = client, db, prefix

    def check(self) -> Verdict:
        """Compare, repair and say what was found. Runs under the epoch row's lock, so two workers finding
        the same loss write one new epoch and log it once between them."""
        try:
            return self._check()
        except sa.exc.IntegrityError:  # another worker wrote the first epoch meanwhile: compare with it
            return self._check()

    def _check(self) -> Verdict:
        now = datetime.now(UTC)
        with self._db.begin() as connection:
            # Take the row's write lock first (a no-op update: a row lock on PostgreSQL, the database's
            # write lock on SQLite, where SELECT ... FOR UPDATE does not exist), then read.
            connection.execute(redis_epoch.update().where(redis_epoch.c.id == 1).values(id=redis_epoch.c.id))
            row = connection.execute(sa.select(redis_epoch).where(redis_epoch.c.id == 1)).first()
            current = _text(guarded(lambda: self._client.get(epoch_key(self._prefix))))
            if row is None:
                epoch = current or uuid.uuid4().hex
                guarded(lambda: self._client.set(epoch_key(self._prefix), epoch))
                connection.execute(redis_epoch.insert().values(id=1, epoch=epoch, since=now))
                return "new"
            if current == row.epoch:
                return "ok"
            verdict: Verdict = "lost" if current is None else "foreign"
            epoch = current or uuid.uuid4().hex
            guarded(lambda: self._client.set(epoch_key(self._prefix), epoch))
            guarded(lambda: self._client.set(loss_key(self._prefix), now.isoformat(), ex=LOSS_NOTE_TTL_S))
            connection.execute(redis_epoch.update().where(redis_epoch.c.id == 1)
                               .values(epoch=epoch, since=now, lost_at=now))
        if verdict == "lost":
            log.error("Redis lost its data (restarted empty or flushed): idempotency marks, leases, quotas and "
                      "flight records are gone; redelivered messages run again with their side-effect keys; "
                      "no record of the hub's database is affected", redis_epoch_since=row.since.isoformat())
        else:
            log.error("Redis holds another epoch than the hub's database: another hub's data under this prefix, "
                      "or a database restored from a backup; continuing with Redis's epoch")
        return verdict


async def redis_data_note(client: redis.asyncio.Redis, prefix: str) -> str:
    """What ``/readyz`` says of Redis's data: ``ok``, ``lost at <time>`` (for a day after a worker found
    it), or ``no epoch`` (restarted empty and no worker has checked since)."""
    epoch: Any = await client.get(epoch_key(prefix))
    lost: Any = await client.get(loss_key(prefix))
    if lost is not None:
        return f"lost at {_text(lost)}"
    return "ok" if epoch is not None else "no epoch (restarted empty, or no worker has run yet)"
