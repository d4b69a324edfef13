"""The crosswalk: which ids in which systems are the same entity, under a canonical id the hub mints.

Redis layout (``X`` is ``<prefix>:xref``, ``<prefix>`` the queue prefix):

- ``X:by:<entity>:<system>:<system id>``: the live canonical id (the reverse index, O(1)),
- ``X:id:<canonical id>``: hash of system name to that system's primary id (O(1) the other way),
- ``X:members:<canonical id>``: set of every ``<system>:<system id>`` of the entity, aliases included,
- ``X:entity:<canonical id>``: the entity kind (``client``, ``project``...); marks the id as known,
- ``X:into:<canonical id>``: the survivor an id was merged into (one hop; a chain after later merges),
- ``X:lineage:<canonical id>``: list of JSON lineage entries, oldest first,
- ``X:entities``: set of entity kinds seen, for looking up ``<system>:<system id>`` without the entity.

A canonical id is minted once, atomically, the first time a system id is seen. It is never reused:
a merge retires the merged id (it keeps resolving to the survivor, hop by hop) and a split mints a
new one. Every write is one Lua script, so concurrent mints, links, merges and splits stay consistent.
Merges and splits touch keys known only inside the script, so this needs one Redis (not Cluster).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol, cast

import redis

from hub.errors import PermanentError
from hub.store import guarded

LineageKind = Literal["merged_from", "merged_into", "split_from", "split_to"]

# Shared by every script: ARGV[1] is the key prefix ``<prefix>:xref``.
_COMMON = """
local X = ARGV[1]
local function live(id)
  for _ = 1, 100000 do
    local nxt = redis.call('GET', X .. ':into:' .. id)
    if not nxt then return id end
    id = nxt
  end
  return id
end
local function known(id)
  return redis.call('EXISTS', X .. ':entity:' .. id) + redis.call('EXISTS', X .. ':id:' .. id) > 0
end
local function members(id)
  local seen, out = {}, {}
  for _, m in ipairs(redis.call('SMEMBERS', X .. ':members:' .. id)) do
    if not seen[m] then seen[m] = true; out[#out + 1] = m end
  end
  local h = redis.call('HGETALL', X .. ':id:' .. id)
  for i = 1, #h, 2 do
    local m = h[i] .. ':' .. h[i + 1]
    if not seen[m] then seen[m] = true; out[#out + 1] = m end
  end
  table.sort(out)
  return out
end
local function refill(id, system)
  for _, m in ipairs(members(id)) do
    if string.sub(m, 1, #system + 1) == system .. ':' then
      redis.call('HSET', X .. ':id:' .. id, system, string.sub(m, #system + 2))
      return
    end
  end
end
local function drop(id, system, sid)
  redis.call('SREM', X .. ':members:' .. id, system .. ':' .. sid)
  if redis.call('HGET', X .. ':id:' .. id, system) == sid then
    redis.call('HDEL', X .. ':id:' .. id, system)
    refill(id, system)
  end
end
local function check(id, entity)
  if not known(id) then return {'unknown', id} end
  local kind = redis.call('GET', X .. ':entity:' .. id)
  if kind and kind ~= entity then return {'entity', id, kind} end
  redis.call('SET', X .. ':entity:' .. id, entity)
  return nil
end
local function note(id, kind, other, reason, at, moved)
  local entry = cjson.encode({kind = kind, other = other, reason = reason, at = at, identities = moved})
  redis.call('RPUSH', X .. ':lineage:' .. id, entry)
end
"""

# ARGV: prefix, entity, system, system id, fresh canonical id.
_MINT = _COMMON + """
local by = X .. ':by:' .. ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4]
local found = redis.call('GET', by)
if found then return found end
redis.call('SET', by, ARGV[5])
redis.call('HSET', X .. ':id:' .. ARGV[5], ARGV[3], ARGV[4])
redis.call('SADD', X .. ':members:' .. ARGV[5], ARGV[3] .. ':' .. ARGV[4])
redis.call('SET', X .. ':entity:' .. ARGV[5], ARGV[2])
redis.call('SADD', X .. ':entities', ARGV[2])
return ARGV[5]
"""

# ARGV: prefix, canonical id, entity, system, system id.
_LINK = _COMMON + """
local target = live(ARGV[2])
local by = X .. ':by:' .. ARGV[3] .. ':' .. ARGV[4] .. ':' .. ARGV[5]
local previous = redis.call('GET', by)
if previous and previous ~= target then drop(previous, ARGV[4], ARGV[5]) end
redis.call('SET', by, target)
redis.call('HSET', X .. ':id:' .. target, ARGV[4], ARGV[5])
redis.call('SADD', X .. ':members:' .. target, ARGV[4] .. ':' .. ARGV[5])
redis.call('SETNX', X .. ':entity:' .. target, ARGV[3])
redis.call('SADD', X .. ':entities', ARGV[3])
return target
"""

# ARGV: prefix, entity, survivor, merged, reason, at (epoch ms).
_MERGE = _COMMON + """
local entity = ARGV[2]
local s, m = live(ARGV[3]), live(ARGV[4])
local bad = check(s, entity) or check(m, entity)
if bad then return bad end
if s == m then return {'same', s} end
local moved = members(m)
local primaries = redis.call('HGETALL', X .. ':id:' .. m)
for i = 1, #primaries, 2 do redis.call('HSETNX', X .. ':id:' .. s, primaries[i], primaries[i + 1]) end
for _, member in ipairs(moved) do
  local colon = string.find(member, ':', 1, true)
  redis.call('SET', X .. ':by:' .. entity .. ':' .. member, s)
  redis.call('SADD', X .. ':members:' .. s, member)
  redis.call('HSETNX', X .. ':id:' .. s, string.sub(member, 1, colon - 1), string.sub(member, colon + 1))
end
redis.call('DEL', X .. ':members:' .. m, X .. ':id:' .. m)
redis.call('SET', X .. ':into:' .. m, s)
note(s, 'merged_from', m, ARGV[5], ARGV[6], moved)
note(m, 'merged_into', s, ARGV[5], ARGV[6], moved)
return {'merged', s}
"""

# ARGV: prefix, entity, canonical id, system, system id, fresh canonical id, reason, at (epoch ms).
_SPLIT = _COMMON + """
local entity, system, sid, fresh = ARGV[2], ARGV[4], ARGV[5], ARGV[6]
local c = live(ARGV[3])
local bad = check(c, entity)
if bad then return bad end
local by = X .. ':by:' .. entity .. ':' .. system .. ':' .. sid
local owner = redis.call('GET', by)
if owner ~= c then return {'foreign', c, owner or ''} end
drop(c, system, sid)
redis.call('SET', by, fresh)
redis.call('HSET', X .. ':id:' .. fresh, system, sid)
redis.call('SADD', X .. ':members:' .. fresh, system .. ':' .. sid)
redis.call('SET', X .. ':entity:' .. fresh, entity)
note(c, 'split_to', fresh, ARGV[7], ARGV[8], {system .. ':' .. sid})
note(fresh, 'split_from', c, ARGV[7], ARGV[8], {system .. ':' .. sid})
return {'split', fresh}
"""

# ARGV: prefix, canonical id. Returns {live id or '' when unknown, primary hash flat, every member}.
_READ = _COMMON + """
local c = live(ARGV[2])
if not known(c) then return {'', {}, {}} end
return {c, redis.call('HGETALL', X .. ':id:' .. c), members(c)}
"""


class CrosswalkError(PermanentError):
    """A merge or split the crosswalk cannot perform (unknown id, wrong entity, id owned elsewhere)."""


class Identity(NamedTuple):
    """One system's id of an entity."""

    system: str
    system_id: str

    def __str__(self) -> str:
        return f"{self.system}:{self.system_id}"


@dataclass(frozen=True)
class LineageEntry:
    """One merge or split an id took part in.

    ``other`` is the id on the far side: for ``merged_from`` the id merged into this one, for
    ``merged_into`` the survivor, for ``split_to`` the id minted by the split, for ``split_from``
    the id it was split from. ``identities`` are the system ids that moved.
    """

    kind: LineageKind
    other: str
    reason: str
    at: datetime
    identities: tuple[Identity, ...]


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
        """Every system's (primary) id of the entity."""
        ...


class MergingCrosswalk(CrosswalkStore, Protocol):
    """A crosswalk that also merges and splits entities and keeps their lineage."""

    def merge(self, entity: str, survivor_id: str, merged_id: str, *, reason: str, at: datetime) -> None:
        """Fold ``merged_id`` into ``survivor_id``."""
        ...

    def split(self, entity: str, canonical_id: str, system: str, system_id: str, *, reason: str,
              at: datetime) -> str:
        """Move one system id out to a newly minted canonical id, returned."""
        ...

    def resolve_canonical(self, canonical_id: str) -> str | None:
        """The live canonical id ``canonical_id`` stands for now, following merges."""
        ...

    def all_identities(self, canonical_id: str) -> list[Identity]:
        """Every system id of the entity, aliases from merges included."""
        ...

    def lineage(self, canonical_id: str) -> list[LineageEntry]:
        """The merges and splits ``canonical_id`` took part in, oldest first."""
        ...


class RedisCrosswalk:
    """:class:`MergingCrosswalk` in Redis, every write one atomic Lua script."""

    def __init__(self, client: redis.Redis, *, prefix: str = "hub") -> None:
        self._client = client
        self._x = f"{prefix}:xref"
        self._mint = client.register_script(_MINT)
        self._link = client.register_script(_LINK)
        self._merge = client.register_script(_MERGE)
        self._split = client.register_script(_SPLIT)
        self._read = client.register_script(_READ)

    def _by(self, entity: str, system: str, system_id: str) -> str:
        return f"{self._x}:by:{entity}:{system}:{system_id}"

    def canonical(self, entity: str, system: str, system_id: str) -> str:
        """The canonical id of ``system_id`` in ``system``, minted on first sight."""
        fresh = _mint_id(entity)
        found: Any = guarded(lambda: self._mint(args=[self._x, entity, system, system_id, fresh]))
        return _text(found)

    def link(self, canonical_id: str, entity: str, system: str, system_id: str) -> None:
        """Record that ``system_id`` in ``system`` is ``canonical_id`` (its survivor, if merged).

        The id becomes the entity's primary id in ``system``; an id linked elsewhere before moves here.
        """
        guarded(lambda: self._link(args=[self._x, canonical_id, entity, system, system_id]))

    def resolve(self, entity: str, system: str, system_id: str) -> str | None:
        """The live canonical id of ``system_id`` in ``system``, if known (one GET)."""
        found: Any = guarded(lambda: self._client.get(self._by(entity, system, system_id)))
        return None if found is None else _text(found)

    def lookup(self, system: str, system_id: str) -> dict[str, str]:
        """Entity kind to live canonical id of ``system_id`` in ``system``, for every kind it is known as."""
        raw: Any = guarded(lambda: self._client.smembers(f"{self._x}:entities"))
        kinds = sorted(_text(kind) for kind in raw)
        if not kinds:
            return {}
        found: Any = guarded(lambda: self._client.mget([self._by(k, system, system_id) for k in kinds]))
        return {kind: _text(value) for kind, value in zip(kinds, found, strict=True) if value is not None}

    def resolve_canonical(self, canonical_id: str) -> str | None:
        """The live canonical id ``canonical_id`` stands for now, following merges (O(1) a hop), or None."""
        return self._snapshot(canonical_id)[0]

    def identities(self, canonical_id: str) -> dict[str, str]:
        """System to primary id of the entity, following merges (empty when unknown).

        After a merge the survivor's own ids stay primary; a system only the merged id knew is added.
        Ids that lost that contest are aliases, listed by :meth:`all_identities`.
        """
        return self._snapshot(canonical_id)[1]

    def all_identities(self, canonical_id: str) -> list[Identity]:
        """Every system id of the entity, following merges, aliases included (sorted; empty when unknown)."""
        return self._snapshot(canonical_id)[2]

    def entity(self, canonical_id: str) -> str | None:
        """The entity kind of a canonical id, if known."""
        found: Any = guarded(lambda: self._client.get(f"{self._x}:entity:{canonical_id}"))
        return None if found is None else _text(found)

    def merge(self, entity: str, survivor_id: str, merged_id: str, *, reason: str, at: datetime) -> None:
        """Fold ``merged_id`` into ``survivor_id``: its system ids resolve to the survivor from now on.

        ``merged_id`` stays resolvable through :meth:`resolve_canonical`; both ids record the merge in
        their lineage. Either id may itself have been merged before: the live ids are merged. Merging
        two ids that already stand for the same entity does nothing. Raises :class:`CrosswalkError`
        for an unknown id or one of another entity kind.
        """
        args = [self._x, entity, survivor_id, merged_id, reason, _millis(at)]
        reply: Any = guarded(lambda: self._merge(args=args))
        _raise_on(reply, entity)

    def split(self, entity: str, canonical_id: str, system: str, system_id: str, *, reason: str,
              at: datetime) -> str:
        """Move ``system_id`` in ``system`` out of ``canonical_id`` to a newly minted canonical id.

        Both ids record the split in their lineage. Raises :class:`CrosswalkError` when the id is
        unknown, of another entity kind, or ``system_id`` does not belong to it.
        """
        fresh = _mint_id(entity)
        args = [self._x, entity, canonical_id, system, system_id, fresh, reason, _millis(at)]
        reply: Any = guarded(lambda: self._split(args=args))
        _raise_on(reply, entity, f"{system}:{system_id}")
        return fresh

    def lineage(self, canonical_id: str) -> list[LineageEntry]:
        """The merges and splits this very id took part in, oldest first (not those of its survivor)."""
        raw: Any = guarded(lambda: self._client.lrange(f"{self._x}:lineage:{canonical_id}", 0, -1))
        return [_entry(json.loads(item)) for item in raw]

    def _snapshot(self, canonical_id: str) -> tuple[str | None, dict[str, str], list[Identity]]:
        """Live id, primary ids and every identity, read atomically."""
        live, flat, members = cast(list[Any], guarded(lambda: self._read(args=[self._x, canonical_id])))
        if not live:
            return None, {}, []
        primaries = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        return _text(live), primaries, [_identity(_text(member)) for member in members]


def _raise_on(reply: list[Any], entity: str, system_id: str = "") -> None:
    """Turn a script's refusal into :class:`CrosswalkError`."""
    status, *rest = [_text(part) for part in reply]
    if status == "unknown":
        raise CrosswalkError(f"unknown canonical id {rest[0]!r}")
    if status == "entity":
        raise CrosswalkError(f"canonical id {rest[0]!r} is a {rest[1]}, not a {entity}")
    if status == "foreign":
        owner = f"belongs to {rest[1]!r}" if rest[1] else "is not in the crosswalk"
        raise CrosswalkError(f"{system_id} is not an identity of {rest[0]!r}: it {owner}")


def _entry(raw: dict[str, Any]) -> LineageEntry:
    moved = raw.get("identities") or []  # cjson encodes an empty table as {}
    return LineageEntry(kind=raw["kind"], other=raw["other"], reason=raw["reason"],
                        at=datetime.fromtimestamp(int(raw["at"]) / 1000, tz=UTC),
                        identities=tuple(_identity(str(member)) for member in moved))


def _identity(member: str) -> Identity:
    system, _, system_id = member.partition(":")
    return Identity(system, system_id)


def _mint_id(entity: str) -> str:
    return f"{entity}_{uuid.uuid4().hex[:20]}"


def _millis(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("lineage times must be timezone-aware")
    return str(int(at.timestamp() * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
