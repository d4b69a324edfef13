"""Declarative mapping rules: which source field becomes which canonical field, and how.

Past 400 lines on purpose: the file's model, its checks and the transforms that apply it are read together.

The mapping file (``actors/master_data/default_mapping.yaml``) has four sections::

    version: 1
    systems:      # each source system and the CloudEvents sources it publishes from
      erp: {sources: ["erp-sim://*"]}              # exact, or a prefix ending in '*'
    authority:    # entity -> canonical field -> the one system whose value counts
      client: {name: erp, country: erp}
    taxonomy:     # governed values: kind -> {value: label} (or a list: the label is the value)
      region: {EU: Europe}
    rules:        # system -> event type (or record kind) -> how its records map
      erp:
        erp.client.upserted.v1:
          entity: client
          key: client_id                            # or {from: ClientId, system: erp}: another system's id
          fields:
            name: name                              # rename: the value as it is
            status: {transform: enum, from: custentity_status, map: {"13": active}}
            created_on: {transform: date, from: datecreated, format: "%m/%d/%Y", output: iso}
            partner: {transform: concat, from: [pm.first, pm.last], separator: " "}
            client_id: {transform: lookup, from: parent, entity: client}

``from`` is a dotted path into the record. With ``required: false`` an absent source field leaves
the canonical field out and a null one gives null. ``date`` reads text (strptime ``format``, ISO
without), dates, datetimes and epoch days; ``lookup`` calls the injected crosswalk function.

The file is checked at start against the caller's :class:`CanonicalSchema`; every error names the
file, the line and the field. :func:`apply_mapping` is pure: a record that does not fit raises
:class:`MappingFailed` with the source field's path, such as ``data.custentity_status``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from hub.errors import PermanentError
from hub.yamlfile import Problem, StrictBoolLoader, invalid_file, load_model

_WHAT = "mapping file"
_EPOCH = date(1970, 1, 1)
_MISSING: Any = object()

#: ``(entity, system, system_id) -> canonical id or None``: the crosswalk, injected by the caller.
LookupFn = Callable[[str, str, str], str | None]


class MappingFailed(PermanentError):
    """A record does not fit its mapping rules; ``field`` is the path of the offending source field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: Path of the source field, such as ``data.status``, when known.
        self.field = field


@dataclass(frozen=True)
class CanonicalSchema:
    """What the rules may name: each entity's fields with their allowed values (None: any value)."""

    entities: Mapping[str, Mapping[str, frozenset[str] | None]]
    #: Canonical fields whose values the ``taxonomy`` section governs (practice, region, ...).
    taxonomy: frozenset[str] = frozenset()


def _date_format(value: str | None) -> str | None:
    sample = date(2001, 2, 3)
    try:
        ok = value is None or datetime.strptime(sample.strftime(value), value).date() == sample
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"date format {value!r} must give the year, the month and the day (strptime codes)")
    return value


def _text_keys(value: object) -> object:
    """YAML reads ``13: active`` with an integer key; enum keys are matched as text."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else value


def _rule_shorthand(value: object) -> object:
    if isinstance(value, str):
        return {"transform": "rename", "from": value}
    if isinstance(value, Mapping) and "transform" not in value:
        return {"transform": "rename", **value}
    return value


def _key_shorthand(value: object) -> object:
    return {"from": value} if isinstance(value, str) else value


def _terms_shorthand(value: object) -> object:
    return {v: v for v in value} if isinstance(value, list) else _text_keys(value)


Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
RecordType = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
SourcePath = Annotated[str, Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$", max_length=255)]
Text = Annotated[str, Field(min_length=1, max_length=255)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class _OneField(_Model):
    source: SourcePath = Field(alias="from")
    required: bool = True


class Rename(_OneField):
    """The source value as it is."""

    transform: Literal["rename"] = "rename"


class EnumMap(_OneField):
    """A value map; a value missing from ``map`` fails the record."""

    transform: Literal["enum"]
    map: Annotated[dict[Text, Text], BeforeValidator(_text_keys), Field(min_length=1)]


class DateParse(_OneField):
    """A date read with ``format`` (ISO when unset), given as an ISO date or days since 1970-01-01."""

    transform: Literal["date"]
    format: Annotated[str | None, AfterValidator(_date_format)] = None
    output: Literal["iso", "epoch_days"] = "iso"


class Concat(_Model):
    """Several fields joined by ``separator``; null or absent parts are left out."""

    transform: Literal["concat"]
    sources: list[SourcePath] = Field(alias="from", min_length=2)
    separator: str = " "
    required: bool = True


class Lookup(_OneField):
    """The canonical id of the value, an id of ``entity`` in ``system`` (default: the record's system)."""

    transform: Literal["lookup"]
    entity: Name
    system: Name | None = None


FieldRule = Annotated[Rename | EnumMap | DateParse | Concat | Lookup, Field(discriminator="transform"),
                      BeforeValidator(_rule_shorthand)]


class Key(_Model):
    """The source field holding the entity's id, in ``system`` (default: the record's system)."""

    source: SourcePath = Field(alias="from")
    system: Name | None = None


class RecordRule(_Model):
    """How one event type (or record kind) of a system maps onto a canonical entity."""

    entity: Name
    key: Annotated[Key, BeforeValidator(_key_shorthand)]
    fields: dict[Name, FieldRule] = Field(min_length=1)


class SystemSpec(_Model):
    """A source system: the CloudEvents ``source`` values it publishes from (exact, or ``prefix*``)."""

    sources: list[Text] = Field(default_factory=list)


class MappingFile(_Model):
    """The whole mapping file."""

    version: Literal[1]
    systems: dict[Name, SystemSpec] = Field(min_length=1)
    authority: dict[Name, dict[Name, Name]]
    taxonomy: dict[Name, Annotated[dict[Text, Text], BeforeValidator(_terms_shorthand), Field(min_length=1)]] = (
        Field(default_factory=dict))
    rules: dict[Name, dict[RecordType, RecordRule]]


@dataclass(frozen=True)
class MappingRules:
    """A validated mapping file and the canonical schema it was checked against."""

    file: MappingFile
    schema: CanonicalSchema

    def rule(self, system: str, event_type: str) -> RecordRule | None:
        """The rule for records of ``event_type`` from ``system``, if any."""
        return self.file.rules.get(system, {}).get(event_type)

    def system_for(self, source: str) -> str | None:
        """The system publishing from CloudEvents ``source``: an exact entry first, then the longest prefix."""
        best: tuple[int, str] | None = None
        for name, spec in self.file.systems.items():
            for pattern in spec.sources:
                if pattern == source:
                    return name
                if pattern.endswith("*") and source.startswith(pattern[:-1]):
                    best = max(best or (-1, ""), (len(pattern), name))
        return None if best is None else best[1]

    @property
    def authority(self) -> Mapping[str, Mapping[str, str]]:
        """Entity -> canonical field -> its authoritative system."""
        return self.file.authority

    @property
    def taxonomy(self) -> Mapping[str, Mapping[str, str]]:
        """Kind (a canonical field such as ``practice``) -> allowed value -> label."""
        return self.file.taxonomy


@dataclass(frozen=True)
class MappedRecord:
    """A source record in canonical terms; the caller turns ``(key_system, key)`` into a canonical id."""

    system: str
    entity: str
    key_system: str
    key: str
    fields: Mapping[str, Any]


def _get(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _text(value: Any, where: str, what: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise MappingFailed(f"{what} {value!r} is not a non-empty text or integer", field=where)


def _as_date(value: Any, rule: DateParse, where: str) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return date.fromordinal(_EPOCH.toordinal() + value)
    if isinstance(value, str):
        try:
            if rule.format is None:
                return date.fromisoformat(value)
            return datetime.strptime(value, rule.format).date()
        except ValueError:
            raise MappingFailed(f"{value!r} is not a date of format {rule.format or 'ISO'}", field=where) from None
    raise MappingFailed(f"{value!r} is not a date", field=where)


def _convert(rule: Rename | EnumMap | DateParse | Lookup, value: Any, where: str, system: str,
             lookup: LookupFn) -> Any:
    if isinstance(rule, EnumMap):
        text = _text(value, where, "enum value")
        if text not in rule.map:
            raise MappingFailed(f"{text!r} is not one of {', '.join(sorted(rule.map))}", field=where)
        return rule.map[text]
    if isinstance(rule, DateParse):
        day = _as_date(value, rule, where)
        return day.isoformat() if rule.output == "iso" else (day - _EPOCH).days
    if isinstance(rule, Lookup):
        system_id = _text(value, where, "id")
        found = lookup(rule.entity, rule.system or system, system_id)
        if found is None:
            raise MappingFailed(f"no canonical {rule.entity} for {rule.system or system} id {system_id!r}", field=where)
        return found
    return value


def _field(rule: Rename | EnumMap | DateParse | Concat | Lookup, record: Mapping[str, Any], root: str,
           system: str, lookup: LookupFn) -> Any:
    """The canonical value, or ``_MISSING`` for an optional field the record does not have."""
    if isinstance(rule, Concat):
        parts = [_get(record, p) for p in rule.sources]
        given = [_text(v, f"{root}.{p}", "part") for p, v in zip(rule.sources, parts, strict=True)
                 if v is not _MISSING and v is not None]
        if given:
            return rule.separator.join(given)
        if rule.required:
            raise MappingFailed(f"none of {', '.join(rule.sources)} is given", field=f"{root}.{rule.sources[0]}")
        return None if any(v is None for v in parts) else _MISSING
    where = f"{root}.{rule.source}"
    value = _get(record, rule.source)
    if value is _MISSING or value is None:
        if rule.required:
            raise MappingFailed("is missing" if value is _MISSING else "is null", field=where)
        return value
    return _convert(rule, value, where, system, lookup)


def apply_mapping(rules: MappingRules, source_system: str, event_type: str, record: Mapping[str, Any], *,
                  lookup: LookupFn, root: str = "data") -> MappedRecord:
    """Map ``record`` (an event's data) by the rules of ``source_system`` and ``event_type``.

    ``lookup`` resolves crosswalk ids; ``root`` prefixes the field paths of errors. Raises
    :class:`MappingFailed` when there is no rule or the record does not fit.
    """
    rule = rules.rule(source_system, event_type)
    if rule is None:
        raise MappingFailed(f"no mapping rule for {event_type!r} records from {source_system!r}", field="type")
    key_where = f"{root}.{rule.key.source}"
    key_value = _get(record, rule.key.source)
    if key_value is _MISSING or key_value is None:
        raise MappingFailed("the record's id is missing", field=key_where)
    key = _text(key_value, key_where, "id")
    allowed_values = rules.schema.entities[rule.entity]
    fields: dict[str, Any] = {}
    for name, field_rule in rule.fields.items():
        value = _field(field_rule, record, root, source_system, lookup)
        if value is _MISSING:
            continue
        allowed = allowed_values[name]
        if value is not None and allowed is not None and value not in allowed:
            source = field_rule.sources[0] if isinstance(field_rule, Concat) else field_rule.source
            raise MappingFailed(f"{value!r} is not a valid {rule.entity} {name}: use one of "
                                f"{', '.join(sorted(allowed))}", field=f"{root}.{source}")
        fields[name] = value
    return MappedRecord(system=source_system, entity=rule.entity, key_system=rule.key.system or source_system,
                        key=key, fields=fields)


def _authority_problems(file: MappingFile, schema: CanonicalSchema) -> list[Problem]:
    problems: list[Problem] = []
    for entity, fields in schema.entities.items():
        owners = file.authority.get(entity)
        missing = [f for f in fields if owners is None or f not in owners]
        if missing:
            loc: tuple[str, ...] = ("authority", entity) if owners is not None else ("authority",)
            problems.append((loc, f"no authoritative system for {entity} field(s) {', '.join(missing)}"))
    for entity, owners in file.authority.items():
        if entity not in schema.entities:
            problems.append((("authority", entity), f"unknown entity '{entity}'"))
            continue
        for name, system in owners.items():
            if name not in schema.entities[entity]:
                problems.append((("authority", entity, name), f"unknown {entity} field '{name}'"))
            elif system not in file.systems:
                problems.append((("authority", entity, name), f"unknown system '{system}'"))
    return problems


def _rule_problems(file: MappingFile, schema: CanonicalSchema, system: str, kind: str, rule: RecordRule
                   ) -> list[Problem]:
    at = ("rules", system, kind)
    if rule.entity not in schema.entities:
        return [((*at, "entity"), f"unknown entity '{rule.entity}': use one of {', '.join(schema.entities)}")]
    problems: list[Problem] = []
    if rule.key.system is not None and rule.key.system not in file.systems:
        problems.append(((*at, "key", "system"), f"unknown system '{rule.key.system}'"))
    known = schema.entities[rule.entity]
    for name, field_rule in rule.fields.items():
        here = (*at, "fields", name)
        if name not in known:
            problems.append((here, f"unknown {rule.entity} field '{name}': use one of {', '.join(known)}"))
            continue
        if isinstance(field_rule, EnumMap):
            allowed = known[name]
            if name in file.taxonomy:
                terms = frozenset(file.taxonomy[name])
                allowed = terms if allowed is None else allowed & terms
            for source_value, target in field_rule.map.items():
                if allowed is not None and target not in allowed:
                    problems.append(((*here, "map", source_value),
                                     f"'{target}' is not a valid {rule.entity} {name}: use one of "
                                     f"{', '.join(sorted(allowed))}"))
        if isinstance(field_rule, Lookup):
            if field_rule.entity not in schema.entities:
                problems.append(((*here, "entity"), f"unknown entity '{field_rule.entity}'"))
            if field_rule.system is not None and field_rule.system not in file.systems:
                problems.append(((*here, "system"), f"unknown system '{field_rule.system}'"))
    return problems


def _problems(file: MappingFile, schema: CanonicalSchema) -> list[Problem]:
    """Checks against the canonical schema and across sections."""
    problems = _authority_problems(file, schema)
    claimed: dict[str, str] = {}
    for name, spec in file.systems.items():
        for i, pattern in enumerate(spec.sources):
            if pattern in claimed:
                problems.append((("systems", name, "sources", i), f"'{pattern}' is claimed by {claimed[pattern]}"))
            claimed.setdefault(pattern, name)
    for kind in file.taxonomy:
        if kind not in schema.taxonomy:
            problems.append((("taxonomy", kind), f"'{kind}' is not a governed field: use one of "
                             f"{', '.join(sorted(schema.taxonomy))}"))
    for system, kinds in file.rules.items():
        if system not in file.systems:
            problems.append((("rules", system), f"unknown system '{system}': declare it under systems"))
            continue
        for kind, rule in kinds.items():
            problems.extend(_rule_problems(file, schema, system, kind, rule))
    return problems


def load_mapping(path: Path, schema: CanonicalSchema) -> MappingRules:
    """Read and validate the mapping file; raises ConfigurationError naming file, line and field."""
    file, root = load_model(path, MappingFile, what=_WHAT, loader=StrictBoolLoader)
    problems = _problems(file, schema)
    if problems:
        raise invalid_file(path, root, problems, what=_WHAT)
    return MappingRules(file=file, schema=schema)
