"""The crosswalk: which ids in which systems are the same entity, under a canonical id the hub mints.

Redis layout (``<prefix>`` is the queue prefix):

- ``<prefix>:xref:id:<canonical id>``: hash of system name to that system's id (O(1) both ways),
- ``<prefix>:xref:by:<entity>:<system>:<system id>``: the canonical id.

A canonical id is minted once, atomically, the first time a system id is seen, and never changes.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import redis

from hub.store import guarded

_MINT = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return ARGV[1]
"""


class CrosswalkStore(Protocol):
    """Canonical ids and the identities behind them."""

    def canonical(self, entity: str, system: str, system_id: str) -> str:
        """The canonical id of ``system_id`` in ``system``, minted on first sight."""
        ...

    def link(self, canonical_id: str, entity: str, system: str, system_id: str) -> None:
        """Record that ``system_id`` in ``system`` is ``canonical_id``."""
        ...

    def resolve(self, entity: str, system: str, system_id: str) -> str | None:
        """The canonical id, if known."""
        ...

    def identities(self, canonical_id: str) -> dict[str, str]:
        """Every system's id of the entity."""
        ...


class RedisCrosswalk:
    """:class:`CrosswalkStore` in Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str = "hub") -> None:
        self._client = client
        self._prefix = prefix
        self._mint = client.register_script(_MINT)

    def _by(self, entity: str, system: str, system_id: str) -> str:
        return f"{self._prefix}:xref:by:{entity}:{system}:{system_id}"

    def _id(self, canonical_id: str) -> str:
        return f"{self._prefix}:xref:id:{canonical_id}"

    def canonical(self, entity: str, system: str, system_id: str) -> str:
        """The canonical id of ``system_id`` in ``system``, minted on first sight."""
        fresh = f"{entity}_{uuid.uuid4().hex[:20]}"
        found: Any = guarded(lambda: self._mint(keys=[self._by(entity, system, system_id), self._id(fresh)],
                                                args=[fresh, system, system_id]))
        return found.decode() if isinstance(found, bytes) else str(found)

    def link(self, canonical_id: str, entity: str, system: str, system_id: str) -> None:
        """Record that ``system_id`` in ``system`` is ``canonical_id``."""
        def write() -> Any:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._by(entity, system, system_id), canonical_id)
            pipe.hset(self._id(canonical_id), system, system_id)
            return pipe.execute()

        guarded(write)

    def resolve(self, entity: str, system: str, system_id: str) -> str | None:
        """The canonical id, if known."""
        found: Any = guarded(lambda: self._client.get(self._by(entity, system, system_id)))
        return None if found is None else (found.decode() if isinstance(found, bytes) else str(found))

    def identities(self, canonical_id: str) -> dict[str, str]:
        """Every system's id of the entity."""
        raw: Any = guarded(lambda: self._client.hgetall(self._id(canonical_id)))
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
