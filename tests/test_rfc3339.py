"""RFC 3339 ``date-time`` exactly: each form the CloudEvents ``time`` attribute may take, and each it may not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.rfc3339 import parse


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2018-04-05T17:31:00Z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05t17:31:00z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05T18:31:00+01:00", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05T12:01:00-05:30", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05T17:31:00-00:00", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05T17:31:00.5Z", datetime(2018, 4, 5, 17, 31, 0, 500_000, tzinfo=UTC)),
        ("2018-04-05T17:31:00.123456Z", datetime(2018, 4, 5, 17, 31, 0, 123_456, tzinfo=UTC)),
        ("2025-03-14T09:26:53.5899912Z", datetime(2025, 3, 14, 9, 26, 53, 589_991, tzinfo=UTC)),
        ("2018-04-05T17:31:00.123456789123Z", datetime(2018, 4, 5, 17, 31, 0, 123_456, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
        ("2016-12-31T23:59:60.75Z", datetime(2017, 1, 1, tzinfo=UTC)),
        ("1990-12-31T15:59:60-08:00", datetime(1991, 1, 1, tzinfo=UTC)),
        ("2018-04-05T17:31:00+23:59", datetime(2018, 4, 4, 17, 32, tzinfo=UTC)),
    ],
)
def test_an_rfc3339_date_time_is_read_as_its_instant(text: str, instant: datetime) -> None:
    parsed = parse(text)
    assert parsed == instant
    assert parsed.utcoffset() is not None


def test_the_offset_is_kept_as_sent() -> None:
    assert parse("2018-04-05T18:31:00+01:00").utcoffset() == timedelta(hours=1)
    assert parse("2018-04-05T18:31:00Z").tzinfo is UTC
    assert parse("2018-04-05T18:31:00-05:30").tzinfo == timezone(-timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    "text",
    [
        "2018-04-05T18:31Z",  # no seconds
        "2018-04-05T18:31:00+0100",  # offset without a colon
        "2018-04-05T18:31:00+01",  # offset without minutes
        "2018-04-05T18:31:00",  # no offset at all
        "2018-04-05 18:31:00Z",  # a space is not the T of RFC 3339's date-time
        "2018-04-05",  # a date alone
        "2018-W14-4T18:31:00Z",  # week date
        "2018-095T18:31:00Z",  # ordinal date
        "20180405T183100Z",  # ISO 8601 basic format
        "2018-04-05T24:00:00Z",  # end of day as 24:00
        "2018-04-05T18:31:00,5Z",  # comma fraction
        "2018-04-05T18:31:00.Z",  # point without digits
        "2018-13-05T18:31:00Z",  # month 13
        "2018-00-05T18:31:00Z",  # month 0
        "2018-04-32T18:31:00Z",  # day 32
        "2018-02-30T18:31:00Z",  # 30 February
        "2023-02-29T18:31:00Z",  # 29 February of a common year
        "2018-04-05T18:60:00Z",  # minute 60
        "2018-04-05T18:31:61Z",  # second 61
        "2018-04-05T18:31:60Z",  # a leap second outside 23:59 UTC
        "2016-12-31T23:59:60+01:00",  # 22:59:60 UTC
        "2018-04-05T18:31:00+24:00",  # offset hour 24
        "2018-04-05T18:31:00+01:60",  # offset minute 60
        "0000-01-01T00:00:00Z",  # year 0: Python has none
        "0001-01-01T00:30:00+01:00",  # 31 December of year 0 in UTC
        "9999-12-31T23:00:00-05:00",  # year 10000 in UTC
        "9999-12-31T23:59:60Z",  # a leap second into year 10000
        "+12018-04-05T18:31:00Z",  # expanded year
        "\uff12\uff10\uff11\uff18-04-05T18:31:00Z",  # fullwidth digits
        "2018-04-05T18:31:00Z\n",  # trailing line break
        " 2018-04-05T18:31:00Z",  # leading space
        "",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)
