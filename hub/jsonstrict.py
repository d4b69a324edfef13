"""Strict JSON for every body the hub reads from outside: the CloudEvents ingress and vendor webhooks.

Python's :func:`json.loads` accepts more than a hostile sender should get: ``NaN``, numbers it then
turns into ``inf``, an object with the same key twice (the last one silently wins), ``"\\ud800"``
(a lone surrogate, which breaks the first ``.encode()`` downstream), and nesting or integers large
enough to exhaust the stack or the CPU. :func:`loads` refuses all of them, before anything else
looks at the document, with errors that are :class:`~hub.errors.InvalidEvent` (a client's fault)::

    InvalidEvent
     └── JsonError
          ├── MalformedJson     not UTF-8, not JSON, NaN/Infinity, a duplicate key, a lone surrogate
          └── JsonTooComplex    deeper than MAX_DEPTH, an integer over MAX_INT_DIGITS, a number past float

Messages name what was read (``what``) and never quote it: bodies may carry secrets and personal data.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hub.errors import InvalidEvent

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "JsonError", "JsonTooComplex", "MalformedJson", "loads"]

#: Deepest nesting accepted (the outermost value is level 1).
MAX_DEPTH = 32
#: Longest integer accepted, sign excluded: every Avro long fits, and ``int()`` stays linear.
MAX_INT_DIGITS = 19

_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonError(InvalidEvent):
    """A body that strict JSON refuses."""


class MalformedJson(JsonError):
    """Not UTF-8, not JSON, or JSON the hub refuses: NaN/Infinity, a duplicate key, a lone surrogate."""


class JsonTooComplex(JsonError):
    """Nesting, integer length or number size beyond the bounds."""


def loads(body: bytes, *, what: str = "body") -> Any:
    """The JSON value of ``body``, strictly; raises :class:`MalformedJson` or :class:`JsonTooComplex`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson(f"the {what} is not UTF-8") from None

    def parse_int(digits: str) -> int:
        if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
            raise JsonTooComplex(f"an integer in the {what} has more than {MAX_INT_DIGITS} digits")
        return int(digits)

    def parse_float(literal: str) -> float:
        number = float(literal)
        if math.isinf(number):
            raise JsonTooComplex(f"a number in the {what} is beyond the range of a double")
        return number

    def no_constants(name: str) -> Any:
        raise MalformedJson(f"{name} in the {what} is not JSON")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) != len(pairs):
            raise MalformedJson(f"an object in the {what} has the same key twice")
        return document

    try:
        value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=no_constants,
                           object_pairs_hook=unique_keys)
    except RecursionError:
        raise JsonTooComplex(f"the {what} is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"the {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    _check_tree(value, what)
    return value


def _check_tree(value: Any, what: str) -> None:
    """Depth and lone surrogates, walked without recursion (the value may be 1000 levels deep)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JsonTooComplex(f"the {what} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, str):
            _check_text(node, what)
        elif isinstance(node, dict):
            for key, child in node.items():
                _check_text(key, what)
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _check_text(text: str, what: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise MalformedJson(f"a string in the {what} holds a lone surrogate (\\ud800-\\udfff)")
