"""Keyset pages over the ERP's records: sorted keys kept up to date on every write, and opaque cursors.

A page starts where the cursor's key would be inserted (a binary search) and reads on from there, so it costs
what it returns, not what the ERP holds. Cursors are URL-safe base64 of a JSON array naming the last key
returned: ``[updated_at millis, code]`` in the default order, ``["code", code]`` and ``["id", id]`` in key order.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from simulators.kit.errors import SimError

K = TypeVar("K", str, tuple[int, str])


class SortedKeys(Generic[K]):
    """Keys in ascending order; an insert or removal is a binary search and a move of the tail."""

    def __init__(self) -> None:
        self._keys: list[K] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: K) -> None:
        """Insert one key (already present: nothing changes)."""
        index = bisect.bisect_left(self._keys, key)
        if index == len(self._keys) or self._keys[index] != key:
            self._keys.insert(index, key)

    def add_many(self, keys: Iterable[K]) -> None:
        """Insert many keys at once (a bulk load: one sort)."""
        self._keys.extend(keys)
        self._keys.sort()

    def discard(self, key: K) -> None:
        """Remove one key, if present."""
        index = bisect.bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            del self._keys[index]

    def clear(self) -> None:
        """Forget every key."""
        self._keys.clear()

    def scan(self, *, after: K | None = None, start: K | None = None) -> Iterator[K]:
        """The keys past ``after`` (exclusive) and from ``start`` (inclusive), in order; read under the owner's
        lock."""
        index = 0
        if after is not None:
            index = bisect.bisect_right(self._keys, after)
        if start is not None:
            index = max(index, bisect.bisect_left(self._keys, start))
        keys = self._keys
        while index < len(keys):
            yield keys[index]
            index += 1


def encode_cursor(position: list[Any]) -> str:
    """An opaque cursor pointing after ``position`` (a JSON array)."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decoded(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise SimError(422, "invalid_cursor", "cursor is not valid") from None


def decode_update_cursor(cursor: str) -> tuple[int, str]:
    """The (``updated_at`` millis, code) a default-order cursor points after; 422 when it is not one."""
    position = _decoded(cursor)
    if not (isinstance(position, list) and len(position) == 2 and type(position[0]) is int
            and isinstance(position[1], str)):
        raise SimError(422, "invalid_cursor", "cursor is not valid")
    return position[0], position[1]


def decode_key_cursor(cursor: str, order: str) -> str:
    """The key a key-order cursor of ``order`` (``code``, ``id``) points after; 422 when it is not one."""
    position = _decoded(cursor)
    if not (isinstance(position, list) and len(position) == 2 and position[0] == order
            and isinstance(position[1], str)):
        raise SimError(422, "invalid_cursor", f"cursor is not valid for order {order!r}")
    return position[1]
