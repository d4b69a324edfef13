"""Which matter an event is about, and whether it is behind an ethical wall, for the fan-out.

The ERP's project events say it (``engagement_type`` of a type the policy walls, or ``conflicted_groups``);
the hub's own project and engagement announcements say it when the engagement type is walled. The fan-out
remembers each matter's verdict (:class:`MatterWalls`), a wall for good: a matter once walled is never shown
in full outside the wall again, whatever arrives later. Any other event about a matter (its project code in the
data) waits until the matter's verdict is known, so the order events arrive in cannot leak one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import redis

from hub.policy import EthicalWalls
from hub.store import guarded

__all__ = ["MatterWalls", "MemoryMatterWalls", "RedisMatterWalls", "matter_of", "verdict"]

#: Types whose data carries the whole verdict: engagement type and conflicted groups.
_FULL_VERDICT = frozenset({"erp.project.created.v1", "erp.project.updated.v1"})
#: Types whose data carries the engagement type only: they can wall a matter, never clear it.
_WALLING_ONLY = frozenset({"hub.project.changed.v1", "hub.engagement.activated.v1"})


def matter_of(data: Mapping[str, Any]) -> str | None:
    """The matter (project code) an event is about, or None for one about no matter (a client, a notification)."""
    for name in ("project_code", "project"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def verdict(event_type: str, data: Mapping[str, Any], walls: EthicalWalls) -> bool | None:
    """Whether this event says its matter is walled (True), not walled (False), or says nothing (None)."""
    walled_type = str(data.get("engagement_type", "")) in walls.applies_to
    if event_type in _FULL_VERDICT:
        return walled_type or bool(data.get("conflicted_groups"))
    if event_type in _WALLING_ONLY and walled_type:
        return True
    return None


class MatterWalls(Protocol):
    """Each matter's verdict as the fan-out learnt it."""

    def walled(self, matter: str) -> bool | None:
        """True behind a wall, False in the open, None not known yet."""
        ...

    def learn(self, matter: str, walled: bool) -> None:
        """Record a verdict; a wall is never taken down."""
        ...


class RedisMatterWalls:
    """:class:`MatterWalls` in Redis under ``<prefix>:walls:<matter>`` (``walled`` or ``open``, no expiry)."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:walls"

    def walled(self, matter: str) -> bool | None:
        """See :meth:`MatterWalls.walled`."""
        value = guarded(lambda: self._client.get(f"{self._prefix}:{matter}"))
        if value is None:
            return None
        return (value.decode() if isinstance(value, bytes) else str(value)) == "walled"

    def learn(self, matter: str, walled: bool) -> None:
        """See :meth:`MatterWalls.learn`: ``walled`` overwrites, ``open`` is written only where nothing is."""
        key = f"{self._prefix}:{matter}"
        guarded(lambda: self._client.set(key, "walled") if walled else self._client.set(key, "open", nx=True))


class MemoryMatterWalls:
    """:class:`MatterWalls` in memory, for unit tests."""

    def __init__(self) -> None:
        self.verdicts: dict[str, bool] = {}

    def walled(self, matter: str) -> bool | None:
        """See :meth:`MatterWalls.walled`."""
        return self.verdicts.get(matter)

    def learn(self, matter: str, walled: bool) -> None:
        """See :meth:`MatterWalls.learn`."""
        self.verdicts[matter] = self.verdicts.get(matter, False) or walled
