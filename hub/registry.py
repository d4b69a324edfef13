"""The schema registry: the Avro schema of every event type, loaded and checked once at start.

Layout of a schema directory: one named type per ``.avsc`` file, the file named after the type's
full name (``hub.erp.ProjectCreated.avsc``); other files refer to it by that full name. An *event*
schema is a record with two extra attributes: ``"hub.eventType"`` (``erp.project.created.v1``) and
``"hub.version"`` (the revision within the major, which ``dataschema`` carries). Anything wrong in
the directory raises :class:`~hub.errors.SchemaError` naming the file, so a bad schema stops the
hub at start instead of dead-lettering its events one by one.

Encoding checks the datum first: every field's type, no unknown field, aware timestamps, and only values
the Avro reader can read back. Past 400 lines on purpose: the schemas and the checks of what they encode
are one contract.
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema

from hub.errors import SchemaError, SchemaViolation, UnknownEventType

__all__ = ["DEFAULT_SCHEMA_BASE", "EVENT_TYPE_ATTRIBUTE", "VERSION_ATTRIBUTE", "EventSchema", "SchemaRegistry"]

#: Schema attribute naming the CloudEvents ``type`` a record schema is the data of.
EVENT_TYPE_ATTRIBUTE = "hub.eventType"
#: Schema attribute holding the revision of an event schema within its major version.
VERSION_ATTRIBUTE = "hub.version"

#: Where the ingress serves the schemas (``GET /v1/schemas/{type}/{version}``) with the default settings;
#: ``HUB_PUBLIC_URL`` moves it.
DEFAULT_SCHEMA_BASE = "http://127.0.0.1:8080/v1/schemas"

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[0-9]+$")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "enum", "fixed"})


@dataclass(frozen=True)
class EventSchema:
    """The Avro schema of one event type, ready for encoding."""

    event_type: str
    name: str
    version: int
    parsed: Any = field(repr=False, compare=False)
    base_url: str = field(default=DEFAULT_SCHEMA_BASE, compare=False)

    @property
    def dataschema(self) -> str:
        """The URL this schema revision is served at, for the CloudEvents ``dataschema`` attribute."""
        return f"{self.base_url}/{self.event_type}/{self.version}"

    def is_named_by(self, dataschema: str) -> bool:
        """Whether ``dataschema`` names this revision: its URL under any ingress's address (events outlive a
        move of ``HUB_PUBLIC_URL``), or the ``urn:hub:schema:<name>:<version>`` of events written before
        dataschema was a URL."""
        served = (dataschema.startswith(("http://", "https://"))
                  and dataschema.endswith(f"/schemas/{self.event_type}/{self.version}"))
        return served or dataschema == f"urn:hub:schema:{self.name}:{self.version}"


class SchemaRegistry:
    """Every event type's schema; encodes and decodes event data as schemaless Avro binary."""

    def __init__(
        self, *, events: Mapping[str, EventSchema], raw: Mapping[str, Any], resolved: Mapping[str, Any]
    ) -> None:
        self._events = dict(events)
        self._raw = dict(raw)
        self._resolved = dict(resolved)

    @classmethod
    def load(cls, directory: Path | Traversable | None = None, *,
             schema_base_url: str = DEFAULT_SCHEMA_BASE) -> SchemaRegistry:
        """Load and check every ``.avsc`` file of ``directory`` (default: the packaged schemas); each type's
        ``dataschema`` is its URL under ``schema_base_url``."""
        found = _read_directory(files("schemas") if directory is None else directory)
        resolved: dict[str, dict[str, Any]] = {}
        events: dict[str, EventSchema] = {}
        owners: dict[str, str] = {}
        for name, (file_name, schema) in found.items():
            resolved[name] = _resolve(found, name)
            try:
                parsed = parse_schema(resolved[name])
            except Exception as exc:  # fastavro raises assorted types for a malformed schema
                raise SchemaError(f"{file_name}: not a valid Avro schema: {exc}") from None
            event = _event_schema(file_name, name, schema, parsed, schema_base_url.rstrip("/"))
            if event is None:
                continue
            if event.event_type in owners:
                claimed = owners[event.event_type]
                raise SchemaError(
                    f"{file_name}: event type {event.event_type!r} is already claimed by {claimed}"
                )
            owners[event.event_type] = file_name
            events[event.event_type] = event
        return cls(
            events=events, raw={name: schema for name, (_, schema) in found.items()}, resolved=resolved
        )

    def for_type(self, event_type: str) -> EventSchema:
        """The schema of ``event_type``; raises UnknownEventType when none is registered."""
        try:
            return self._events[event_type]
        except KeyError:
            raise UnknownEventType(
                f"no schema is registered for event type {event_type!r}", field="type"
            ) from None

    def encode(self, event_type: str, record: Mapping[str, Any]) -> bytes:
        """Encode ``record`` as schemaless Avro binary; raises SchemaViolation naming the bad field."""
        schema = self.for_type(event_type)
        problem = _datum_problem(self._resolved[schema.name], record, self._resolved)
        if problem is not None:
            path, reason = problem
            raise SchemaViolation(f"{event_type}: {path or '<data>'}: {reason}", field=path or None)
        buffer = io.BytesIO()
        try:
            schemaless_writer(buffer, schema.parsed, record)
        except Exception as exc:  # the checks above should catch everything; keep the contract if not
            raise SchemaViolation(f"{event_type}: cannot encode: {exc}") from None
        return buffer.getvalue()

    def decode(self, event_type: str, payload: bytes) -> dict[str, Any]:
        """Decode schemaless Avro binary of ``event_type``; raises SchemaViolation on bad bytes."""
        schema = self.for_type(event_type)
        data = bytes(payload)
        buffer = io.BytesIO(data)
        try:
            record = schemaless_reader(buffer, schema.parsed, None)
        except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ... on bad bytes
            raise SchemaViolation(
                f"{event_type}: data is not Avro of {schema.dataschema}: {type(exc).__name__}: {exc}",
                field="data",
            ) from None
        # Extra bytes mean the writer used another schema, even if a prefix happened to decode.
        if buffer.tell() != len(data):
            raise SchemaViolation(
                f"{event_type}: {len(data) - buffer.tell()} trailing bytes after the record", field="data"
            )
        if not isinstance(record, dict):
            raise SchemaViolation(f"{event_type}: data did not decode to a record", field="data")
        return record

    @property
    def event_types(self) -> list[str]:
        """Every registered event type, sorted."""
        return sorted(self._events)

    def raw_schemas(self) -> dict[str, dict[str, Any]]:
        """Every named type as written in its file, by full name."""
        return copy.deepcopy(self._raw)

    def resolved(self, name: str) -> dict[str, Any]:
        """The named type ``name`` as one self-contained schema: references inlined at first use."""
        try:
            return copy.deepcopy(self._resolved[name])
        except KeyError:
            raise SchemaError(f"no named type {name!r} in the registry") from None


def _read_directory(directory: Path | Traversable) -> dict[str, tuple[str, dict[str, Any]]]:
    """Full name -> (file name, schema) for every ``.avsc`` file, with the layout rules checked."""
    try:
        entries = sorted(directory.iterdir(), key=lambda entry: entry.name)
    except OSError as exc:
        raise SchemaError(f"cannot read schema directory {directory}: {exc}") from None
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for entry in entries:
        if not entry.name.endswith(".avsc") or not entry.is_file():
            continue
        try:
            schema = json.loads(entry.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SchemaError(f"{entry.name}: invalid JSON: {exc}") from None
        if (
            not isinstance(schema, dict)
            or schema.get("type") not in _NAMED
            or not isinstance(schema.get("name"), str)
        ):
            raise SchemaError(
                f"{entry.name}: must hold one named type (record, enum or fixed) as a JSON object"
            )
        name = _full_name(schema["name"], schema.get("namespace"))
        if "." not in name:
            # A type without a namespace would change meaning when inlined into another namespace.
            raise SchemaError(f"{entry.name}: type {name!r} needs a namespace")
        if entry.name != f"{name}.avsc":
            raise SchemaError(f"{entry.name}: defines {name}, so the file must be named {name}.avsc")
        found[name] = (entry.name, schema)
    return found


def _full_name(name: str, namespace: object) -> str:
    if "." in name or not isinstance(namespace, str) or not namespace:
        return name
    return f"{namespace}.{name}"


def _resolve(found: Mapping[str, tuple[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    """``name`` as one self-contained schema, each named type inlined where first used.

    Parsers (fastavro, avro) then see one document per type and every reference is a full name, so
    the result does not depend on the order the files were read in.
    """
    defined = {name}

    def named(file_name: str, schema: dict[str, Any], full_name: str) -> dict[str, Any]:
        out = {key: value for key, value in schema.items() if key != "namespace"} | {"name": full_name}
        if schema["type"] == "record" and isinstance(schema.get("fields"), list):
            namespace = full_name.rpartition(".")[0]
            out["fields"] = [
                {**item, "type": of_type(item.get("type"), namespace, file_name)}
                if isinstance(item, dict)
                else item
                for item in schema["fields"]
            ]
        return out

    def of_type(node: Any, namespace: str, file_name: str) -> Any:
        if isinstance(node, list):
            return [of_type(branch, namespace, file_name) for branch in node]
        if isinstance(node, dict):
            kind = node.get("type")
            if kind in _NAMED:
                # One definition per file is also what makes a duplicate full name impossible.
                raise SchemaError(f"{file_name}: defines {node.get('name')!r} inline; give it its own file")
            key = {"array": "items", "map": "values"}.get(str(kind), "type")
            return (
                node if kind in _PRIMITIVES else {**node, key: of_type(node.get(key), namespace, file_name)}
            )
        if not isinstance(node, str) or node in _PRIMITIVES:
            return node  # anything malformed is left for fastavro to report
        # Avro looks an unqualified name up in the enclosing namespace first.
        candidates = [node] if "." in node else [f"{namespace}.{node}", node]
        full_name = next((candidate for candidate in candidates if candidate in found), None)
        if full_name is None:
            raise SchemaError(f"{file_name}: unresolvable reference to named type {node!r}")
        if full_name in defined:
            return full_name
        defined.add(full_name)
        return named(*found[full_name], full_name)

    return named(*found[name], name)


def _event_schema(file_name: str, name: str, schema: dict[str, Any], parsed: Any,
                  base_url: str) -> EventSchema | None:
    event_type = schema.get(EVENT_TYPE_ATTRIBUTE)
    version = schema.get(VERSION_ATTRIBUTE)
    if event_type is None and version is None:
        return None
    if schema["type"] != "record":
        raise SchemaError(f"{file_name}: only a record can be the data of an event type")
    if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type):
        raise SchemaError(
            f"{file_name}: {EVENT_TYPE_ATTRIBUTE} {event_type!r} is not <system>.<entity>.<event>.v<major>"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaError(f"{file_name}: {VERSION_ATTRIBUTE} must be a positive integer, got {version!r}")
    return EventSchema(event_type=event_type, name=name, version=version, parsed=parsed, base_url=base_url)


# -- checking a datum before it is encoded: every field's type, no unknown field, aware timestamps, and only
# values the Avro reader can read back. A problem names the field path, never the value.



def _datum_problem(schema: Any, datum: Any, named: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first (field path, reason) where ``datum`` breaks ``schema`` (names resolved in ``named``)."""
    return _violation(schema, datum, "", named)


_Problem = tuple[str, str] | None  # (field path, reason)

_INSTANTS = ("timestamp-millis", "timestamp-micros")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST, _LAST = datetime.min.replace(tzinfo=UTC) - _EPOCH, datetime.max.replace(tzinfo=UTC) - _EPOCH
#: Logical type -> (lowest, highest, what) of the integers fastavro decodes again: a timestamp in
#: years 1 to 9999 (UTC), a date Python's ``date`` holds, a time of day.
_READABLE: dict[str, tuple[int, int, str]] = {
    "timestamp-millis": (_FIRST // timedelta(milliseconds=1), _LAST // timedelta(milliseconds=1),
                         "timestamp (epoch milliseconds)"),
    "timestamp-micros": (_FIRST // timedelta(microseconds=1), _LAST // timedelta(microseconds=1),
                         "timestamp (epoch microseconds)"),
    "date": (date.min.toordinal() - _EPOCH.toordinal(), date.max.toordinal() - _EPOCH.toordinal(),
             "date (days since 1970-01-01)"),
    "time-millis": (0, 86_400_000 - 1, "time of day (milliseconds)"),
    "time-micros": (0, 86_400_000_000 - 1, "time of day (microseconds)"),
}


def _violation(schema: Any, datum: Any, path: str, named: Mapping[str, Any]) -> _Problem:
    """The first (field path, reason) where ``datum`` breaks ``schema``, or None when it fits."""
    if isinstance(schema, list):
        return _union(schema, datum, path, named)
    if isinstance(schema, str):
        if schema not in _PRIMITIVES:
            return _violation(named[schema], datum, path, named)
        return None if _PRIMITIVE_CHECKS[schema](datum) else (path, _expected(schema, datum))
    kind, logical = schema["type"], schema.get("logicalType")
    if logical in _INSTANTS and isinstance(datum, datetime):
        return _instant(datum, path)
    if logical == "date" and isinstance(datum, date) and not isinstance(datum, datetime):
        return None
    if logical in _READABLE and type(datum) is int and kind in _PRIMITIVES:
        # Avro's JSON form: the writer takes any long, but only this range decodes again.
        low, high, what = _READABLE[logical]
        return None if low <= datum <= high else (path, f"{what} out of range")
    if logical not in (None, *_INSTANTS, "date") and kind in _PRIMITIVES:
        return None  # other logical types accept several Python types: the writer checks them
    if kind == "record":
        return _record(schema, datum, path, named)
    if kind == "enum":
        if isinstance(datum, str) and datum in schema["symbols"]:
            return None
        got = repr(datum) if isinstance(datum, str) else type(datum).__name__  # a misspelt symbol, not data
        return path, f"expected one of {', '.join(schema['symbols'])}, got {got}"
    if kind == "fixed":
        ok = isinstance(datum, bytes | bytearray) and len(datum) == schema["size"]
        return None if ok else (path, f"expected {schema['size']} bytes")
    if kind == "array":
        if not isinstance(datum, list | tuple):
            return path, _expected("array", datum)
        items = ((f"{path}[{index}]", item) for index, item in enumerate(datum))
        return next(_problems(schema["items"], items, named), None)
    if kind == "map":
        if not isinstance(datum, Mapping) or not all(isinstance(key, str) for key in datum):
            return path, "expected a map with string keys"
        values = ((f"{path}[{key!r}]", value) for key, value in datum.items())
        return next(_problems(schema["values"], values, named), None)
    return _violation(kind, datum, path, named)


def _instant(datum: datetime, path: str) -> _Problem:
    if datum.utcoffset() is None:
        # fastavro reads a naive datetime as local time: the instant would depend on the host.
        return path, "datetime must be timezone-aware"
    try:
        datum.astimezone(UTC)
    except OverflowError:
        return path, "timestamp out of range: its UTC instant is outside years 1 to 9999"
    return None


def _problems(schema: Any, items: Iterable[tuple[str, Any]], named: Mapping[str, Any]) -> Iterator[_Problem]:
    for path, item in items:
        problem = _violation(schema, item, path, named)
        if problem is not None:
            yield problem


def _record(schema: Mapping[str, Any], datum: Any, path: str, named: Mapping[str, Any]) -> _Problem:
    if not isinstance(datum, Mapping):
        return path, _expected("record", datum)
    prefix = f"{path}." if path else ""
    fields = schema["fields"]
    known = {item["name"] for item in fields}
    unknown = next((key for key in datum if key not in known), None)
    if unknown is not None:
        # fastavro would drop it silently: a misspelt optional field would become null.
        return f"{prefix}{unknown}", "unknown field"
    for item in fields:
        name = item["name"]
        if name in datum:
            problem = _violation(item["type"], datum[name], prefix + name, named)
            if problem is not None:
                return problem
        elif "default" not in item:
            return prefix + name, "required field is missing"
    return None


def _union(branches: list[Any], datum: Any, path: str, named: Mapping[str, Any]) -> _Problem:
    if any(_violation(branch, datum, path, named) is None for branch in branches):
        return None
    others = [branch for branch in branches if branch != "null"]
    if datum is not None and len(others) == 1:
        # An optional field: the reason inside its one real branch is the useful one.
        return _violation(others[0], datum, path, named)
    return path, f"{type(datum).__name__} matches no branch of the union"


def _expected(kind: str, datum: Any) -> str:
    # Name the type, never the value: messages end up in logs and dead letters, values may be personal.
    got = type(datum).__name__
    if kind in ("int", "long") and got == "int":
        got = "an int out of range"
    elif kind == "string" and got == "str":
        got = "a str with unpaired surrogates"
    return f"expected {kind}, got {got}"


def _is_int(bound: int) -> Callable[[Any], bool]:
    return lambda datum: type(datum) is int and -bound <= datum < bound


def _is_text(datum: Any) -> bool:
    if not isinstance(datum, str):
        return False
    if datum.isascii():
        return True
    try:
        datum.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_PRIMITIVE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "null": lambda datum: datum is None,
    "boolean": lambda datum: isinstance(datum, bool),
    "int": _is_int(2**31),
    "long": _is_int(2**63),
    "float": lambda datum: isinstance(datum, int | float) and not isinstance(datum, bool),
    "double": lambda datum: isinstance(datum, int | float) and not isinstance(datum, bool),
    "bytes": lambda datum: isinstance(datum, bytes | bytearray),
    "string": _is_text,
}
