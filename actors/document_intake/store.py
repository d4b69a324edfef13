"""Document intake's own state, per drive: the delta token (where the last read stopped), the "changed
since" mark that coalesces notifications, and the news last published per item and event type.

Keys live here and nowhere else; :class:`MemoryIntakeStore` is the fake for unit tests.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from hub.store import guarded


class IntakeStore(Protocol):
    """Per drive: the delta token, the dirty mark and the last news per item."""

    def delta_token(self, drive: str) -> str | None:
        """Where the last read of the drive's changes stopped (None: read it all)."""
        ...

    def save_delta_token(self, drive: str, token: str) -> None:
        """Remember where this read stopped."""
        ...

    def mark_changed(self, drive: str) -> None:
        """Note that the drive changed (a notification came)."""
        ...

    def take_changed(self, drive: str) -> bool:
        """Whether the drive changed since the mark was last taken; takes the mark."""
        ...

    def changed(self, drive: str) -> bool:
        """Whether the mark is set, without taking it."""
        ...

    def last_news(self, drive: str, item: str, event_type: str) -> str | None:
        """The signature of the last event of ``event_type`` published for ``item``."""
        ...

    def remember_news(self, drive: str, item: str, event_type: str, signature: str) -> None:
        """Remember what was last published for ``item``."""
        ...


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisIntakeStore:
    """:class:`IntakeStore` in Redis under ``<prefix>:intake:`` (token, dirty mark, a hash of news per drive)."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:intake"

    def delta_token(self, drive: str) -> str | None:
        """See :meth:`IntakeStore.delta_token`."""
        return _text(guarded(lambda: self._client.get(f"{self._prefix}:delta:{drive}")))

    def save_delta_token(self, drive: str, token: str) -> None:
        """See :meth:`IntakeStore.save_delta_token`."""
        guarded(lambda: self._client.set(f"{self._prefix}:delta:{drive}", token))

    def mark_changed(self, drive: str) -> None:
        """See :meth:`IntakeStore.mark_changed`."""
        guarded(lambda: self._client.set(f"{self._prefix}:dirty:{drive}", "1"))

    def take_changed(self, drive: str) -> bool:
        """See :meth:`IntakeStore.take_changed`."""
        return guarded(lambda: self._client.getdel(f"{self._prefix}:dirty:{drive}")) is not None

    def changed(self, drive: str) -> bool:
        """See :meth:`IntakeStore.changed`."""
        return bool(guarded(lambda: self._client.exists(f"{self._prefix}:dirty:{drive}")))

    def last_news(self, drive: str, item: str, event_type: str) -> str | None:
        """See :meth:`IntakeStore.last_news`."""
        return _text(guarded(lambda: self._client.hget(f"{self._prefix}:seen:{drive}", f"{item}:{event_type}")))

    def remember_news(self, drive: str, item: str, event_type: str, signature: str) -> None:
        """See :meth:`IntakeStore.remember_news`."""
        guarded(lambda: self._client.hset(f"{self._prefix}:seen:{drive}", f"{item}:{event_type}", signature))


class MemoryIntakeStore:
    """:class:`IntakeStore` in dicts, for unit tests."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.dirty: set[str] = set()
        self.news: dict[tuple[str, str, str], str] = {}

    def delta_token(self, drive: str) -> str | None:
        """See :meth:`IntakeStore.delta_token`."""
        return self.tokens.get(drive)

    def save_delta_token(self, drive: str, token: str) -> None:
        """See :meth:`IntakeStore.save_delta_token`."""
        self.tokens[drive] = token

    def mark_changed(self, drive: str) -> None:
        """See :meth:`IntakeStore.mark_changed`."""
        self.dirty.add(drive)

    def take_changed(self, drive: str) -> bool:
        """See :meth:`IntakeStore.take_changed`."""
        if drive in self.dirty:
            self.dirty.discard(drive)
            return True
        return False

    def changed(self, drive: str) -> bool:
        """See :meth:`IntakeStore.changed`."""
        return drive in self.dirty

    def last_news(self, drive: str, item: str, event_type: str) -> str | None:
        """See :meth:`IntakeStore.last_news`."""
        return self.news.get((drive, item, event_type))

    def remember_news(self, drive: str, item: str, event_type: str, signature: str) -> None:
        """See :meth:`IntakeStore.remember_news`."""
        self.news[(drive, item, event_type)] = signature
