"""Where master data's last read of a document platform's changes stopped: the drive's delta token (SharePoint),
the event stream's position (Box), keyed by :func:`connectors.platform.changes_key`.

A Graph change notification names no item, so master data asks the drive what changed since its last read
(``delta``) and keeps the token for the next one. The token is a cursor, not a record: losing it costs one
full read of the drive (every workspace checked again), which is also what Graph asks for after a 410.
:class:`MemoryDeltaCursor` is the fake for unit tests.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from hub.store import guarded


class DeltaCursor(Protocol):
    """The delta token per drive."""

    def token(self, drive: str) -> str | None:
        """Where the last read of the drive's changes stopped (None: read it all)."""
        ...

    def save(self, drive: str, token: str) -> None:
        """Remember where this read stopped."""
        ...


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisDeltaCursor:
    """:class:`DeltaCursor` in Redis under ``<prefix>:mdm:delta:<drive>``."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:mdm:delta"

    def token(self, drive: str) -> str | None:
        """See :meth:`DeltaCursor.token`."""
        return _text(guarded(lambda: self._client.get(f"{self._prefix}:{drive}")))

    def save(self, drive: str, token: str) -> None:
        """See :meth:`DeltaCursor.save`."""
        guarded(lambda: self._client.set(f"{self._prefix}:{drive}", token))


class MemoryDeltaCursor:
    """:class:`DeltaCursor` in a dict."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}

    def token(self, drive: str) -> str | None:
        """See :meth:`DeltaCursor.token`."""
        return self.tokens.get(drive)

    def save(self, drive: str, token: str) -> None:
        """See :meth:`DeltaCursor.save`."""
        self.tokens[drive] = token
