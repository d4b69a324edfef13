"""``hub xref``: every identity of one entity, the canonical id it resolves to, and its lineage.

An entity is named by a canonical id (``project_3f2a...``), by ``entity:system:system_id``
(``project:erp:ENG-ACME-0001``) or, when only one entity kind knows it, by ``system:system_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.crosswalk import Identity, LineageEntry, SqlCrosswalk

__all__ = ["UnknownReference", "XrefReport", "describe", "render"]


class UnknownReference(LookupError):
    """The crosswalk does not know the id (or the reference is ambiguous or malformed)."""


@dataclass(frozen=True)
class XrefReport:
    """What the crosswalk knows about one entity."""

    query: str
    canonical_id: str  # the id the query named (possibly retired by a merge)
    resolved_id: str  # the live canonical id, merges followed
    entity: str | None
    primaries: dict[str, str]  # system to primary id
    identities: list[Identity]  # every system id, aliases from merges included
    path: list[str]  # canonical_id, each survivor it was merged into, ..., resolved_id
    lineage: dict[str, list[LineageEntry]]  # per id on the path, and the resolved id


def describe(crosswalk: SqlCrosswalk, query: str) -> XrefReport:
    """Look ``query`` up; raises :class:`UnknownReference` when the crosswalk does not know it."""
    canonical_id = _canonical_of(crosswalk, query.strip())
    resolved = crosswalk.resolve_canonical(canonical_id)
    if resolved is None:
        raise UnknownReference(f"unknown canonical id {canonical_id!r}")
    path, lineage = [canonical_id], {canonical_id: crosswalk.lineage(canonical_id)}
    while path[-1] != resolved and len(path) < 1000:
        into = [entry.other for entry in lineage[path[-1]] if entry.kind == "merged_into"]
        if not into:  # not expected: the crosswalk records every merge it follows
            break
        path.append(into[-1])
        lineage[into[-1]] = crosswalk.lineage(into[-1])
    if resolved not in lineage:
        lineage[resolved] = crosswalk.lineage(resolved)
        path.append(resolved)
    return XrefReport(
        query=query, canonical_id=canonical_id, resolved_id=resolved,
        entity=crosswalk.entity(resolved) or crosswalk.entity(canonical_id),
        primaries=crosswalk.identities(resolved), identities=crosswalk.all_identities(resolved),
        path=path, lineage=lineage,
    )


def _canonical_of(crosswalk: SqlCrosswalk, query: str) -> str:
    """The canonical id a query names: itself, or the one a system id resolves to."""
    if not query:
        raise UnknownReference("give a canonical id or entity:system:system_id")
    if ":" not in query:
        return query
    parts = query.split(":", 2)
    if len(parts) == 3 and all(parts):
        found = crosswalk.resolve(*parts)
        if found is not None:
            return found
    system, _, system_id = query.partition(":")
    if system and system_id:
        kinds = crosswalk.lookup(system, system_id)
        if len(kinds) == 1:
            return next(iter(kinds.values()))
        if kinds:
            named = ", ".join(f"{kind}:{query}" for kind in sorted(kinds))
            raise UnknownReference(f"{query} names several entities; give one of {named}")
    raise UnknownReference(f"no entity has the identity {query!r} (expected entity:system:system_id)")


def render(report: XrefReport) -> str:
    """The report as text for the terminal."""
    lines = [f"query:        {report.query}"]
    retired = report.canonical_id != report.resolved_id
    lines.append(f"canonical id: {report.canonical_id}" + (" (merged)" if retired else ""))
    lines.append(f"resolves to:  {report.resolved_id}" + (f"  via {' -> '.join(report.path)}" if retired else ""))
    lines.append(f"entity:       {report.entity or 'unknown'}")
    lines.append("identities:")
    if not report.identities:
        lines.append("  (none)")
    width = max((len(identity.system) for identity in report.identities), default=0)
    for identity in report.identities:
        primary = report.primaries.get(identity.system) == identity.system_id
        lines.append(f"  {identity.system:<{width}}  {identity.system_id}" + ("" if primary else "  (alias)"))
    lines.append("lineage:")
    entries = [(owner, entry) for owner in report.lineage for entry in report.lineage[owner]]
    if not entries:
        lines.append("  (none)")
    for owner, entry in sorted(entries, key=lambda pair: pair[1].at):
        moved = ", ".join(str(identity) for identity in entry.identities) or "-"
        when = entry.at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines.append(f"  {when}  {owner} {entry.kind} {entry.other}  [{moved}]  reason: {entry.reason}")
    return "\n".join(lines)
