"""Strict JSON, shared by the CloudEvents ingress and the vendor webhooks: what it reads and what it refuses."""

from __future__ import annotations

import pytest

from hub.errors import InvalidEvent, JsonError, JsonTooComplex, MalformedJson
from hub.ingress.binding import MAX_DEPTH, MAX_INT_DIGITS, loads
from hub.ingress.problems import Kind, from_error

SECRET = "s3cr3t-client-state"


def nested(levels: int) -> bytes:
    return b"[" * (levels - 1) + b"1" + b"]" * (levels - 1)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"a": [1, -2, 3.5, true, null, "x"]}', {"a": [1, -2, 3.5, True, None, "x"]}),
        ('{"name": "Müller 株式会社"}'.encode(), {"name": "Müller 株式会社"}),
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # an escaped surrogate pair is one character
        (b'"\\u00e9\\t"', "\u00e9\t"),
        (b"9" * MAX_INT_DIGITS, int("9" * MAX_INT_DIGITS)),
        (b"-" + b"9" * MAX_INT_DIGITS, -int("9" * MAX_INT_DIGITS)),
        (b"1e308", 1e308),
        (b'{"a": {"a": 1}, "b": {"a": 2}}', {"a": {"a": 1}, "b": {"a": 2}}),  # one key per object
    ],
)
def test_valid_json_is_read_as_json_loads_would(body: bytes, value: object) -> None:
    assert loads(body) == value


def test_nesting_up_to_the_bound_is_read() -> None:
    assert loads(nested(MAX_DEPTH)) is not None


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{}",
        b"\xed\xa0\x80",  # a surrogate encoded as UTF-8 bytes is not UTF-8
        b"{not json",
        b"",
        b'{"a": 1} {"b": 2}',
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"[-Infinity]",
        b'{"a": 1, "a": 2}',
        b'{"outer": {"a": 1, "b": 2, "a": 1}}',
        b'["\\ud800"]',
        b'"\\udfff"',
        b'{"\\ud800": 1}',
        b'{"a": {"b": "ok \\ud83d"}}',
        b'["\\ude00\\ud83d"]',  # a pair in the wrong order is two lone surrogates
        b'"a\nb"',  # a raw control character inside a string
    ],
)
def test_malformed_or_refused_json_is_malformed_json(body: bytes) -> None:
    with pytest.raises(MalformedJson):
        loads(body)


@pytest.mark.parametrize(
    "body",
    [
        nested(MAX_DEPTH + 1),
        nested(100),
        nested(5000),
        b"[" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"1" * (MAX_INT_DIGITS + 1),
        b"-" + b"1" * (MAX_INT_DIGITS + 1),
        b'{"n": ' + b"9" * 5000 + b"}",
        b"1e400",
        b"-1e400",
    ],
)
def test_json_beyond_the_bounds_is_too_complex(body: bytes) -> None:
    with pytest.raises(JsonTooComplex):
        loads(body)


@pytest.mark.parametrize(
    "body",
    [
        f'{{"clientState": "{SECRET}", "a": 1, "a": 2}}'.encode(),
        f'{{"clientState": "{SECRET}", "x": "\\ud800"}}'.encode(),
        f'{{"clientState": "{SECRET}", "x": '.encode(),
        f'{{"clientState": "{SECRET}", "n": {"9" * 40}}}'.encode(),
        f'{{"clientState": "{SECRET}", "x": NaN}}'.encode(),
    ],
)
def test_no_message_quotes_the_body(body: bytes) -> None:
    with pytest.raises(JsonError) as caught:
        loads(body, what="notification")
    assert SECRET not in str(caught.value)
    assert "notification" in str(caught.value)


def test_the_errors_are_invalid_events_with_their_own_problem_kinds() -> None:
    with pytest.raises(InvalidEvent) as malformed:
        loads(b'{"a": 1, "a": 1}')
    with pytest.raises(InvalidEvent) as complex_:
        loads(nested(5000))
    assert from_error(malformed.value).kind is Kind.MALFORMED_JSON
    assert from_error(complex_.value).kind is Kind.JSON_TOO_COMPLEX
    assert from_error(complex_.value).kind.status == 400
