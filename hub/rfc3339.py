"""RFC 3339 ``date-time``, exactly: the only timestamp form a CloudEvents ``time`` may take.

Accepted: ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)``, with ``t`` and ``z`` allowed in lower
case (RFC 3339 section 5.6) and a fraction of any length (digits past microseconds are truncated).
Refused: everything else ISO 8601 allows and RFC 3339 does not (no seconds, ``+0100``, week and
ordinal dates, ``T24:00``, a comma before the fraction, a space instead of ``T``), out-of-range
fields (month 13, 30 February), and instants Python cannot hold (outside years 1 to 9999 in UTC).

A leap second (``:60``) is accepted only where it can happen, at 23:59:60 UTC (15:59:60-08:00 is the
same instant), and becomes the first instant after it: every ``23:59:60.x`` reads as ``00:00:00`` of
the next day, so timestamps keep their order without ever falling inside the same second twice.
``-00:00`` (offset unknown) reads as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["parse"]

_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))"
)


def parse(text: str) -> datetime:
    """The timezone-aware instant of an RFC 3339 ``date-time``; ValueError for anything else."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (
        int(match[name]) for name in ("year", "month", "day", "hour", "minute", "second"))
    offset = timedelta(0)
    if match["utc"] is None:
        offset_hour, offset_minute = int(match["offset_hour"]), int(match["offset_minute"])
        if offset_hour > 23 or offset_minute > 59:
            raise ValueError("UTC offset out of range")
        offset = timedelta(hours=offset_hour, minutes=offset_minute) * (-1 if match["sign"] == "-" else 1)
    zone = UTC if not offset else timezone(offset)
    microsecond = int((match["fraction"] or "0")[:6].ljust(6, "0"))
    leap = second == 60
    if leap:
        utc_minute = (hour * 60 + minute - offset // timedelta(minutes=1)) % 1440
        if utc_minute != 23 * 60 + 59:
            raise ValueError("a leap second happens only at 23:59:60 UTC")
        second, microsecond = 59, 0
    try:
        # datetime checks every field's range, 30 February and year 0 included.
        instant = datetime(year, month, day, hour, minute, second, microsecond, tzinfo=zone)
        if leap:
            instant += timedelta(seconds=1)
        instant.astimezone(UTC)  # the UTC instant must exist too (0001-01-01T00:00:00+01:00 does not)
    except (ValueError, OverflowError):
        raise ValueError("date-time out of range") from None
    return instant
