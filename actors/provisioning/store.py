"""What provisioning remembers between runs: when a project was first seen (for the provisioning time)
and the plan a finished workspace was announced with (so a re-run that changes nothing announces nothing).

Keys and lifetimes live here and nowhere else; :class:`MemoryProvisioningStore` is the fake for unit tests.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from hub.store import guarded


class ProvisioningStore(Protocol):
    """Provisioning's own state, per project code."""

    def first_seen(self, code: str, at_ms: int) -> int:
        """Record ``at_ms`` as the first sighting of ``code`` unless one is recorded; return the first."""
        ...

    def announced(self, code: str) -> str | None:
        """The digest of the plan last announced as provisioned."""
        ...

    def mark_announced(self, code: str, digest: str) -> None:
        """Remember that the plan with ``digest`` was announced."""
        ...


class RedisProvisioningStore:
    """:class:`ProvisioningStore` in Redis: ``<prefix>:provisioning:first_seen:<code>`` and ``...:done:<code>``."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:provisioning"

    def first_seen(self, code: str, at_ms: int) -> int:
        """See :meth:`ProvisioningStore.first_seen`."""
        key = f"{self._prefix}:first_seen:{code}"
        guarded(lambda: self._client.set(key, at_ms, nx=True))
        raw: Any = guarded(lambda: self._client.get(key))
        return int(raw) if raw else at_ms

    def announced(self, code: str) -> str | None:
        """See :meth:`ProvisioningStore.announced`."""
        raw: Any = guarded(lambda: self._client.get(f"{self._prefix}:done:{code}"))
        return None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))

    def mark_announced(self, code: str, digest: str) -> None:
        """See :meth:`ProvisioningStore.mark_announced`."""
        guarded(lambda: self._client.set(f"{self._prefix}:done:{code}", digest))


class MemoryProvisioningStore:
    """:class:`ProvisioningStore` in a dict, for unit tests."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        self.done: dict[str, str] = {}

    def first_seen(self, code: str, at_ms: int) -> int:
        """See :meth:`ProvisioningStore.first_seen`."""
        return self.first.setdefault(code, at_ms)

    def announced(self, code: str) -> str | None:
        """See :meth:`ProvisioningStore.announced`."""
        return self.done.get(code)

    def mark_announced(self, code: str, digest: str) -> None:
        """See :meth:`ProvisioningStore.mark_announced`."""
        self.done[code] = digest
