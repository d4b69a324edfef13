"""The canonical records against the ERP's records now, for reconciliation: for each ERP client or project, the
fields the ERP owns that its canonical record holds differently (or that it has no canonical record at all).

Read-only: the ERP's record is mapped as its event would be (the same rules), canonical ids are resolved without
minting one, and the records are read a page at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from actors.master_data.mapping import MappingFailed, MappingRules, apply_mapping
from actors.master_data.store import MasterDataStore
from hub.crosswalk import SqlCrosswalk

#: The ERP's event type whose record each entity is mapped as.
_EVENT = {"client": "erp.client.upserted.v1", "project": "erp.project.updated.v1"}
Entity = Literal["client", "project"]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class CanonicalCheck:
    """Compares the ERP's records with the canonical ones (see the module docstring)."""

    def __init__(self, rules: MappingRules, crosswalk: SqlCrosswalk, store: MasterDataStore) -> None:
        self.rules, self.crosswalk, self.store = rules, crosswalk, store

    def drift(self, entity: Entity, records: Sequence[Mapping[str, Any]]
              ) -> Iterator[tuple[str, list[tuple[str, str | None, str | None]] | None]]:
        """For each record that differs: (its ERP id, the ERP-owned fields as (field, ERP's value, canonical value)),
        or (its ERP id, None) when it has a canonical id but no canonical record. A record the crosswalk does not
        know is left to the crosswalk's comparison."""
        mapped = []
        for record in records:
            try:
                mapped.append(apply_mapping(self.rules, "erp", _EVENT[entity], record,
                                            lookup=lambda kind, system, key: self.crosswalk.resolve(kind, system, key)))
            except MappingFailed:
                continue  # a record the mapping refuses would be dead-lettered by master data: its exception says so
        ids = self.crosswalk.resolve_many(entity, "erp", [m.key for m in mapped])
        states = self.store.load_many(list(set(ids.values())))
        owned = {field for field, system in self.rules.authority.get(entity, {}).items() if system == "erp"}
        for one in mapped:
            canonical = ids.get(one.key)
            if canonical is None:
                continue
            state = states.get(canonical)
            if state is None:
                yield one.key, None
                continue
            held = state.values()
            differs = [(name, _text(value), _text(held.get(name))) for name, value in sorted(one.fields.items())
                       if name in owned and _text(value) != _text(held.get(name))]
            if differs:
                yield one.key, differs
