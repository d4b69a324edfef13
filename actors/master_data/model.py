"""Master data, decided: the canonical model, field authority, version ordering and taxonomy checks.

Pure functions beside the master-data actor, no I/O. The actor maps a source record with
:func:`actors.master_data.mapping.apply_mapping`, turns its key into a canonical id through the crosswalk, builds a
:class:`SourceUpdate` (with the CloudEvents ``sequence`` as version), and folds it into the stored
:class:`CanonicalState` with :func:`merge`. The result says which fields changed (push them to the
other systems, emit ``hub.<entity>.changed.v1``), which were ignored because the sender is not their
authoritative system, and which were stale.

Ordering: every field keeps the version it came from; only its authoritative system may set it, and
a version lower than the stored one is dropped, an equal one is a no-op. Versions are compared as
strings, so each system must zero-pad them to one width (the ERP's ``sequence`` has 20 digits). The
final state is therefore the same whatever the order or the duplicates of the updates.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.master_data.mapping import CanonicalSchema, MappedRecord, MappingFailed, MappingRules, load_mapping

#: The mapping file shipped with the hub; copy it to write your own.
DEFAULT_MAPPING = Path(str(files("actors.master_data") / "default_mapping.yaml"))

ClientStatus = Literal["prospect", "active", "inactive"]
ProjectStatus = Literal["planned", "active", "on_hold", "closed", "cancelled"]
EngagementType = Literal["consulting", "legal", "engineering", "managed_services"]
BillingModel = Literal["time_and_materials", "fixed_fee", "milestone", "retainer", "subscription"]
#: Canonical fields whose values the taxonomy governs.
TaxonomyKind = Literal["practice", "region", "document_class"]
#: Entity -> canonical field -> its authoritative system (the mapping file's ``authority``).
Authority = Mapping[str, Mapping[str, str]]
#: Kind -> allowed value -> label (the mapping file's ``taxonomy``).
Taxonomy = Mapping[str, Mapping[str, str]]

_ETAG_VERSION = re.compile(r",\s*(\d+)\s*\"?\s*$")


class CanonicalEntity(BaseModel):
    """Base of every canonical record: its id comes from the crosswalk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    canonical_id: str = Field(min_length=1, description="Minted by the hub's crosswalk; never changes.")


class CanonicalClient(CanonicalEntity):
    """A client as the hub knows it."""

    name: str
    country: str = Field(description="ISO 3166-1 alpha-2 country of the head office.")
    status: ClientStatus
    industry: str | None = None
    parent_client_id: str | None = Field(default=None, description="Canonical id of the parent client.")
    created_on: date | None = None


class CanonicalProject(CanonicalEntity):
    """A project, engagement or matter as the hub knows it; practice and region follow the taxonomy."""

    project_code: str
    client_id: str = Field(description="Canonical id of the client.")
    name: str
    engagement_type: EngagementType
    practice: str
    region: str
    country: str
    partner: str
    billing_model: BillingModel
    status: ProjectStatus
    start_date: date | None = None
    end_date: date | None = None


class CanonicalDocument(CanonicalEntity):
    """A project document's classification, owned by the document platform."""

    project_id: str | None = Field(default=None, description="Canonical id of the project.")
    name: str | None = None
    document_class: str


class CostCentre(CanonicalEntity):
    """A cost centre of the firm."""

    code: str
    name: str
    region: str | None = None
    active: bool = True


class TaxonomyTerm(BaseModel):
    """One governed value: a practice, a region or a document class, with its display label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TaxonomyKind
    value: str
    label: str


#: Each entity's canonical model, by the entity name the mapping file and the crosswalk use.
ENTITY_MODELS: Mapping[str, type[CanonicalEntity]] = types.MappingProxyType({
    "client": CanonicalClient, "project": CanonicalProject, "document": CanonicalDocument,
    "cost_centre": CostCentre,
})


def _allowed(annotation: Any) -> frozenset[str] | None:
    """The values of a ``Literal`` field (optional or not); None for any other type."""
    if get_origin(annotation) in (Union, types.UnionType):
        literals = [a for a in get_args(annotation) if a is not type(None)]
        return _allowed(literals[0]) if len(literals) == 1 else None
    return frozenset(get_args(annotation)) if get_origin(annotation) is Literal else None


def canonical_schema() -> CanonicalSchema:
    """The fields the mapping file may name, derived from the canonical models."""
    return CanonicalSchema(
        entities={entity: {name: _allowed(info.annotation) for name, info in model.model_fields.items()
                           if name != "canonical_id"} for entity, model in ENTITY_MODELS.items()},
        taxonomy=frozenset(get_args(TaxonomyKind)))


def load_master_data_mapping(path: Path = DEFAULT_MAPPING) -> MappingRules:
    """Read and validate a mapping file against the canonical model; ConfigurationError names the line."""
    return load_mapping(path, canonical_schema())


def taxonomy_terms(taxonomy: Taxonomy) -> tuple[TaxonomyTerm, ...]:
    """The taxonomy as terms, sorted by kind and value."""
    return tuple(TaxonomyTerm.model_validate({"kind": kind, "value": value, "label": label})
                 for kind in sorted(taxonomy) for value, label in sorted(taxonomy[kind].items()))


def sequence_of(version: int) -> str:
    """A numeric source version as a CloudEvents ``sequence``: zero-padded to 20 digits, as the ERP does."""
    if version < 0:
        raise ValueError("a version cannot be negative")
    return f"{version:020d}"


def etag_version(etag: str) -> str:
    """The version of a Graph eTag (``"{id},5"``) as a ``sequence``; ValueError when it carries none."""
    found = _ETAG_VERSION.search(etag)
    if found is None:
        raise ValueError(f"eTag {etag!r} carries no version")
    return sequence_of(int(found.group(1)))


class FieldState(BaseModel):
    """A canonical field's value and where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Any
    version: str
    system: str


class CanonicalState(BaseModel):
    """The stored canonical record: each field with the source version it came from (JSON-ready)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity: str
    canonical_id: str
    fields: dict[str, FieldState] = Field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        """Each field's value."""
        return {name: held.value for name, held in self.fields.items()}


class SourceUpdate(BaseModel):
    """One system's view of an entity's fields at one source version (its CloudEvents ``sequence``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(min_length=1)
    entity: str = Field(min_length=1)
    canonical_id: str = Field(min_length=1)
    fields: Mapping[str, Any]
    version: str = Field(min_length=1)

    @classmethod
    def of(cls, mapped: MappedRecord, *, canonical_id: str, version: str) -> SourceUpdate:
        """The update a mapped record makes to the entity ``canonical_id``."""
        return cls(system=mapped.system, entity=mapped.entity, canonical_id=canonical_id,
                   fields=dict(mapped.fields), version=version)


class MergeResult(BaseModel):
    """The new state and what the update did, field by field (names sorted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: CanonicalState
    #: Fields whose value changed: push them to the other systems and emit them.
    changed: tuple[str, ...] = ()
    #: Fields the sender is not authoritative for: ignored (count them).
    ignored: tuple[str, ...] = ()
    #: Ignored fields whose value differs from the canonical one: the sender holds a wrong value.
    drift: tuple[str, ...] = ()
    #: Fields dropped because the stored value comes from a newer version.
    stale: tuple[str, ...] = ()


def merge(current: CanonicalState | None, update: SourceUpdate, *, authority: Authority) -> MergeResult:
    """Fold ``update`` into ``current`` (None: first sight) under the authority table.

    A field is taken only from its authoritative system and only when its version is newer than
    the stored one (a field stored from another system, after the authority moved, is replaced).
    """
    if current is not None and (current.entity, current.canonical_id) != (update.entity, update.canonical_id):
        raise ValueError(f"an update of {update.entity} {update.canonical_id} cannot merge into "
                         f"{current.entity} {current.canonical_id}")
    fields = dict(current.fields) if current is not None else {}
    owners = authority.get(update.entity, {})
    changed: list[str] = []
    ignored: list[str] = []
    drift: list[str] = []
    stale: list[str] = []
    for name, value in sorted(update.fields.items()):
        held = fields.get(name)
        if owners.get(name) != update.system:
            ignored.append(name)
            if held is not None and held.value != value:
                drift.append(name)
            continue
        if held is not None and held.system == update.system and held.version >= update.version:
            if held.version > update.version:
                stale.append(name)
            continue
        fields[name] = FieldState(value=value, version=update.version, system=update.system)
        if held is None or held.value != value:
            changed.append(name)
    state = CanonicalState(entity=update.entity, canonical_id=update.canonical_id, fields=fields)
    return MergeResult(state=state, changed=tuple(changed), ignored=tuple(ignored), drift=tuple(drift),
                       stale=tuple(stale))


def to_model(state: CanonicalState) -> CanonicalEntity | None:
    """The state as its canonical model; None while a required field is still unknown.

    Raises :class:`MappingFailed` (naming the canonical field) when a value does not fit the model.
    """
    model = ENTITY_MODELS.get(state.entity)
    if model is None:
        raise MappingFailed(f"unknown entity {state.entity!r}", field="entity")
    try:
        return model.model_validate({"canonical_id": state.canonical_id, **state.values()})
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        if all(e["type"] == "missing" for e in errors):
            return None
        bad = next(e for e in errors if e["type"] != "missing")
        raise MappingFailed(f"{state.entity} {state.canonical_id}: {bad['msg']}",
                            field=".".join(str(p) for p in bad["loc"])) from None


class Violation(BaseModel):
    """A value outside the canonical taxonomy: an exception for records management."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    value: Any
    message: str
    #: The taxonomy value equal to ``value`` but for case, when there is one.
    suggestion: str | None = None


def taxonomy_violations(fields: Mapping[str, Any], taxonomy: Taxonomy) -> list[Violation]:
    """The fields (canonical names) whose values the taxonomy governs and does not list; null is allowed."""
    violations: list[Violation] = []
    for name, value in sorted(fields.items()):
        terms = taxonomy.get(name)
        if terms is None or value is None or (isinstance(value, str) and value in terms):
            continue
        folded = {term.casefold(): term for term in terms}
        suggestion = folded.get(value.casefold()) if isinstance(value, str) else None
        violations.append(Violation(
            field=name, value=value, suggestion=suggestion,
            message=f"{name} {value!r} is not in the taxonomy: use one of {', '.join(sorted(terms))}"
                    + (f" (did you mean {suggestion!r}?)" if suggestion else "")))
    return violations
