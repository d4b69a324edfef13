"""Master data's own state: the canonical record of each entity, which projects belong to a client
(to push a client's new name onto its workspaces), and the count of ignored non-authoritative updates.

Keys live here and nowhere else; :class:`MemoryMasterDataStore` is the fake for unit tests. (The
canonical records are a system of record; this Protocol is where a durable store plugs in.)
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from actors.master_data.model import CanonicalState
from hub.store import guarded


class MasterDataStore(Protocol):
    """Canonical records and their relations."""

    def load(self, canonical_id: str) -> CanonicalState | None:
        """The canonical record, if any."""
        ...

    def save(self, state: CanonicalState) -> None:
        """Store the canonical record."""
        ...

    def add_project(self, client_id: str, project_id: str) -> None:
        """Remember that the project belongs to the client."""
        ...

    def projects_of(self, client_id: str) -> list[str]:
        """The client's projects, sorted."""
        ...

    def count_ignored(self, system: str, count: int) -> None:
        """Count updates ignored because ``system`` is not authoritative for their fields."""
        ...


class RedisMasterDataStore:
    """:class:`MasterDataStore` in Redis under ``<prefix>:mdm:``."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:mdm"

    def load(self, canonical_id: str) -> CanonicalState | None:
        """See :meth:`MasterDataStore.load`."""
        raw: Any = guarded(lambda: self._client.get(f"{self._prefix}:state:{canonical_id}"))
        return None if raw is None else CanonicalState.model_validate_json(raw)

    def save(self, state: CanonicalState) -> None:
        """See :meth:`MasterDataStore.save`."""
        guarded(lambda: self._client.set(f"{self._prefix}:state:{state.canonical_id}", state.model_dump_json()))

    def add_project(self, client_id: str, project_id: str) -> None:
        """See :meth:`MasterDataStore.add_project`."""
        guarded(lambda: self._client.sadd(f"{self._prefix}:projects-of:{client_id}", project_id))

    def projects_of(self, client_id: str) -> list[str]:
        """See :meth:`MasterDataStore.projects_of`."""
        members: Any = guarded(lambda: self._client.smembers(f"{self._prefix}:projects-of:{client_id}"))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def count_ignored(self, system: str, count: int) -> None:
        """See :meth:`MasterDataStore.count_ignored` (``<prefix>:mdm:ignored``, a hash per system)."""
        guarded(lambda: self._client.hincrby(f"{self._prefix}:ignored", system, count))


class MemoryMasterDataStore:
    """:class:`MasterDataStore` in dicts, for unit tests."""

    def __init__(self) -> None:
        self.states: dict[str, CanonicalState] = {}
        self.projects: dict[str, set[str]] = {}
        self.ignored: dict[str, int] = {}

    def load(self, canonical_id: str) -> CanonicalState | None:
        """See :meth:`MasterDataStore.load`."""
        return self.states.get(canonical_id)

    def save(self, state: CanonicalState) -> None:
        """See :meth:`MasterDataStore.save`."""
        self.states[state.canonical_id] = state

    def add_project(self, client_id: str, project_id: str) -> None:
        """See :meth:`MasterDataStore.add_project`."""
        self.projects.setdefault(client_id, set()).add(project_id)

    def projects_of(self, client_id: str) -> list[str]:
        """See :meth:`MasterDataStore.projects_of`."""
        return sorted(self.projects.get(client_id, ()))

    def count_ignored(self, system: str, count: int) -> None:
        """See :meth:`MasterDataStore.count_ignored`."""
        self.ignored[system] = self.ignored.get(system, 0) + count
