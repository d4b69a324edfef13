"""The schemas consumers are given: every released revision of every event type, and the current one.

``schemas/history/<event type>/<version>.avsc`` holds each released revision as one self-contained schema
(named types inlined, as :meth:`~hub.registry.SchemaRegistry.resolved` gives it), written by ``hub schemas
release`` and never changed afterwards. An event's ``dataschema`` names the revision it was written with
(the *writer's* schema); a consumer holding an older revision decodes with both, Avro's schema resolution
filling in what its own revision lacks and skipping what it does not know.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from hub.errors import SchemaError, UnknownEventType
from hub.registry import SchemaRegistry

__all__ = ["HISTORY", "SchemaCatalogue", "write_revision"]

#: The folder of released revisions, beside the current ``.avsc`` files.
HISTORY = "history"


@dataclass(frozen=True)
class SchemaCatalogue:
    """Every revision of every event type, by type and version; the registry's current ones included."""

    registry: SchemaRegistry
    revisions: Mapping[str, Mapping[int, dict[str, Any]]]

    @classmethod
    def load(cls, registry: SchemaRegistry, directory: Path | Traversable | None = None) -> SchemaCatalogue:
        """The released revisions of ``directory`` (default: the packaged ``schemas/history``) and the
        registry's current ones (a revision not released yet is served too)."""
        history = (files("schemas") / HISTORY) if directory is None else directory
        revisions: dict[str, dict[int, dict[str, Any]]] = {}
        if history.is_dir():
            for folder in history.iterdir():
                if not folder.is_dir():
                    continue
                for entry in folder.iterdir():
                    version = entry.name.removesuffix(".avsc")
                    if not entry.name.endswith(".avsc") or not version.isdigit():
                        raise SchemaError(f"{HISTORY}/{folder.name}/{entry.name}: not <version>.avsc")
                    revisions.setdefault(folder.name, {})[int(version)] = json.loads(entry.read_text("utf-8"))
        for event_type in registry.event_types:
            current = registry.for_type(event_type)
            revisions.setdefault(event_type, {})[current.version] = registry.resolved(current.name)
        ordered = {event_type: dict(sorted(found.items())) for event_type, found in sorted(revisions.items())}
        return cls(registry, ordered)

    @property
    def event_types(self) -> list[str]:
        """Every event type the registry knows (a type no longer registered is not offered)."""
        return self.registry.event_types

    def versions(self, event_type: str) -> list[int]:
        """Every revision of ``event_type``, oldest first; raises UnknownEventType."""
        self.registry.for_type(event_type)
        return list(self.revisions[event_type])

    def schema(self, event_type: str, version: int | None = None) -> dict[str, Any]:
        """One revision of ``event_type`` (default: the current one) as a self-contained Avro schema;
        raises UnknownEventType for an unknown type or revision."""
        current = self.registry.for_type(event_type)
        wanted = current.version if version is None else version
        try:
            return copy.deepcopy(dict(self.revisions[event_type][wanted]))
        except KeyError:
            raise UnknownEventType(f"{event_type} has no revision {wanted}", field="version") from None

    def url(self, event_type: str, version: int) -> str:
        """Where revision ``version`` of ``event_type`` is served (the ``dataschema`` of its events)."""
        current = self.registry.for_type(event_type)
        return f"{current.base_url}/{event_type}/{version}"


def write_revision(history: Path, registry: SchemaRegistry, event_type: str) -> Path | None:
    """Record the current revision of ``event_type`` under ``history``; returns the file written, or None
    when that revision is recorded already (a released revision never changes)."""
    current = registry.for_type(event_type)
    target = history / event_type / f"{current.version}.avsc"
    if target.exists():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(registry.resolved(current.name), indent=2) + "\n", encoding="utf-8")
    return target
