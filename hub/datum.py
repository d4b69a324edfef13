"""Checking a datum against a resolved Avro schema before it is encoded: every field's type, no unknown
field, timezone-aware timestamps, and only values the Avro reader can read back (a timestamp in years 1
to 9999, a date Python holds, a time of day). A problem names the field path, never the value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["PRIMITIVES", "violation"]

#: Avro's primitive type names.
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PRIMITIVES = PRIMITIVES


def violation(schema: Any, datum: Any, named: Mapping[str, Any]) -> tuple[str, str] | None:
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
