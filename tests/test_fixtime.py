"""The one time rule: the valid range of fix times, and how numeric timestamps are read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.errors import InvalidInput
from service.fixtime import FixTimes, from_number, parse_read_time, to_utc

NOW = datetime(2024, 11, 27, 2, 15, tzinfo=UTC)
TIMES = FixTimes()  # 2000-01-01 .. now + 1 day, flagged future after 5 min


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),  # seconds
        (1_700_000_000_123, datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)),  # ms
        (946_684_800, datetime(2000, 1, 1, tzinfo=UTC)),
        (946_684_800_000, datetime(2000, 1, 1, tzinfo=UTC)),
    ],
)
def test_numbers_are_seconds_or_milliseconds_whichever_is_in_range(
    value: float, expected: datetime
) -> None:
    assert TIMES.from_number(value, "ts", NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        253_402_300_800,  # 9999-12-31 in seconds, 1978 in milliseconds: neither is valid
        20_000_000_000,  # 2603 in seconds, 1970-08 in milliseconds
        946_684_799,  # a second before 2000
        0,
        -1,
        float("inf"),
        float("nan"),
    ],
)
def test_numbers_valid_in_neither_unit_are_refused_naming_value_and_range(value: float) -> None:
    with pytest.raises(InvalidInput, match=r"ts=.* is neither Unix seconds nor Unix millis"):
        TIMES.from_number(value, "ts", NOW)


def test_range_refusal_names_the_value_the_range_and_the_settings() -> None:
    assert TIMES.refusal(datetime(2000, 1, 1, tzinfo=UTC), NOW) is None
    assert TIMES.refusal(NOW + timedelta(days=1), NOW) is None
    reason = TIMES.refusal(datetime(1, 1, 1, tzinfo=UTC), NOW)
    assert reason is not None
    assert "ts=0001-01-01T00:00:00Z" in reason and "2000-01-01T00:00:00Z" in reason
    assert "PATROLI_MIN_FIX_TIME" in reason and "PATROLI_MAX_FUTURE_S" in reason
    assert TIMES.refusal(NOW + timedelta(days=1, seconds=1), NOW) is not None


def test_future_flag_starts_after_the_tolerance() -> None:
    assert not TIMES.is_future(NOW + timedelta(seconds=300), NOW)
    assert TIMES.is_future(NOW + timedelta(seconds=301), NOW)


def test_overflowing_offsets_are_refused_not_raised() -> None:
    late = (
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
        .astimezone()
        .replace(tzinfo=UTC)
        .replace(tzinfo=None)
    )
    assert to_utc(late).tzinfo is UTC
    with pytest.raises(InvalidInput, match="out of range"):
        parse_read_time("9999-12-31T23:59:59-01:00", "to")
    with pytest.raises(InvalidInput, match="out of range"):
        parse_read_time("0001-01-01T00:00:00+01:00", "from")


def test_reads_accept_every_storable_fix_time() -> None:
    # Anything ingest can store (2000 onwards, a day ahead at most) lies in the read range.
    for when in (datetime(2000, 1, 1, tzinfo=UTC), NOW + timedelta(days=1)):
        assert parse_read_time(when.isoformat(), "from") == when
    assert parse_read_time("946684800", "from") == datetime(2000, 1, 1, tzinfo=UTC)
    assert parse_read_time("946684800000", "from") == datetime(2000, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="1970-2199"):
        parse_read_time("1969-12-31T00:00:00Z", "from")


def test_read_numbers_follow_the_same_rule_within_the_read_years() -> None:
    low, high = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
    assert from_number(1_700_000_000_000, "to", low, high).year == 2023
    with pytest.raises(InvalidInput):
        from_number(1e20, "to", low, high)
