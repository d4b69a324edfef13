"""Redacted events: a walled matter's event as consumers outside the wall get it on the topic exchange.

For each event type the policy protects (``ethical_walls.on_the_bus.protected_fields``), the redacted schema is
the type's current schema without those fields, renamed ``<name>Redacted`` and served beside the full one at
``<schema URL>/redacted``: a declared variant, so a consumer decodes a redacted event with the schema its
``dataschema`` names as it decodes any other, and finds no protected field in it. The event keeps its id,
source, type and subject and gains the extension ``redacted: true``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastavro import parse_schema, schemaless_writer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.errors import ConfigurationError
from hub.events import CloudEvent
from hub.registry import SchemaRegistry

__all__ = ["REDACTED", "BusWalls", "Redactions"]

#: The extension attribute marking a redacted event (``ce-redacted: true`` on AMQP).
REDACTED = "redacted"


class BusWalls(BaseModel):
    """The policy's ``ethical_walls.on_the_bus``: what consumers outside a wall see of a walled matter on the topic
    exchange: its events with the ``protected_fields`` of their type removed (the redacted variant), while the
    full events go only to the exchange ``<prefix>.<restricted_exchange>``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    restricted_exchange: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$", max_length=200)]
    #: Per event type, the top-level data fields a consumer outside the wall must not see.
    protected_fields: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2}\.v[0-9]+$")],
                           Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]],
                                     Field(min_length=1)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _not_the_topic_exchange(self) -> BusWalls:
        if self.restricted_exchange in ("events", "events.history"):
            raise ValueError("restricted_exchange must not be the topic exchange or its history")
        return self


@dataclass(frozen=True)
class _Variant:
    dataschema: str
    schema: dict[str, Any]
    parsed: Any
    removed: frozenset[str]


class Redactions:
    """The redacted variant of each protected event type, and the redaction of an event."""

    def __init__(self, registry: SchemaRegistry, protected_fields: Mapping[str, Sequence[str]]) -> None:
        self.registry = registry
        self._variants: dict[str, _Variant] = {}
        for event_type, fields in sorted(protected_fields.items()):
            if event_type not in registry.event_types:
                raise ConfigurationError(f"ethical_walls.on_the_bus.protected_fields: no event type {event_type!r}")
            current = registry.for_type(event_type)
            full = registry.resolved(current.name)
            known = {item["name"] for item in full["fields"]}
            unknown = sorted(set(fields) - known)
            if unknown:
                raise ConfigurationError(f"ethical_walls.on_the_bus.protected_fields: {event_type} has no field "
                                         f"{', '.join(unknown)}")
            schema = _without(full, set(fields))
            self._variants[event_type] = _Variant(f"{current.dataschema}/redacted", schema, parse_schema(schema),
                                                  frozenset(fields))

    @property
    def event_types(self) -> list[str]:
        """The event types with protected fields."""
        return sorted(self._variants)

    def protects(self, event_type: str) -> bool:
        """Whether events of ``event_type`` have fields a consumer outside a wall must not see."""
        return event_type in self._variants

    def protected_fields(self, event_type: str) -> frozenset[str]:
        """The fields removed from a redacted event of ``event_type``."""
        return self._variants[event_type].removed

    def schema(self, event_type: str) -> tuple[str, dict[str, Any]]:
        """The redacted variant of ``event_type``: its ``dataschema`` URL and its Avro schema."""
        variant = self._variants[event_type]
        return variant.dataschema, copy.deepcopy(variant.schema)

    def schemas(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every redacted variant, by event type."""
        return {event_type: self.schema(event_type) for event_type in self._variants}

    def redact(self, event: CloudEvent, data: Mapping[str, Any]) -> CloudEvent:
        """``event`` (whose decoded data is ``data``) without its type's protected fields."""
        variant = self._variants[event.get_type()]
        buffer = io.BytesIO()
        schemaless_writer(buffer, variant.parsed, {k: v for k, v in data.items() if k not in variant.removed})
        attributes = dict(event.get_attributes()) | {"dataschema": variant.dataschema, REDACTED: "true"}
        return CloudEvent(attributes, buffer.getvalue())


def _without(schema: dict[str, Any], removed: set[str]) -> dict[str, Any]:
    """``schema`` without the top-level fields ``removed``, renamed so that it is not taken for the full one.
    A named type defined inline in a removed field is defined again where it is next used."""
    kept = [item for item in schema["fields"] if item["name"] not in removed]
    out = {key: value for key, value in schema.items() if key not in ("fields", "hub.eventType")}
    out["name"] = f"{schema['name']}Redacted"
    out["doc"] = f"{schema.get('doc', '')} Redacted: a walled matter's event without {', '.join(sorted(removed))}."
    out["hub.redacts"] = schema.get("hub.eventType")
    defined: dict[str, Any] = {}
    _collect(schema, defined)
    seen: set[str] = set()
    out["fields"] = [{**item, "type": _inline(item["type"], defined, seen)} for item in kept]
    return out


def _collect(node: Any, defined: dict[str, Any]) -> None:
    if isinstance(node, list):
        for branch in node:
            _collect(branch, defined)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and isinstance(node.get("name"), str):
            defined.setdefault(node["name"], node)
        for item in node.get("fields", []):
            _collect(item.get("type"), defined)
        for key in ("items", "values"):
            if key in node:
                _collect(node[key], defined)


def _inline(node: Any, defined: dict[str, Any], seen: set[str]) -> Any:
    """``node`` with each named type defined at its first use in the kept fields, referenced after."""
    if isinstance(node, list):
        return [_inline(branch, defined, seen) for branch in node]
    if isinstance(node, str):
        if node in defined:
            if node in seen:
                return node
            return _inline(defined[node], defined, seen)
        return node
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and isinstance(node.get("name"), str):
            if node["name"] in seen:
                return node["name"]
            seen.add(node["name"])
        out = dict(node)
        if "fields" in node:
            out["fields"] = [{**item, "type": _inline(item["type"], defined, seen)} for item in node["fields"]]
        for key in ("items", "values"):
            if key in node:
                out[key] = _inline(node[key], defined, seen)
        return out
    return node
