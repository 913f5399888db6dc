"""When a fix may have happened: the one time rule of every ingest door and every read.

- A fix's device time must lie from the earliest fix time (PATROLI_MIN_FIX_TIME, default
  2000-01-01T00:00:00Z) to now + PATROLI_MAX_FUTURE_S (default one day); anything else is
  refused with a message naming the value and the range. A fix later than now +
  PATROLI_FUTURE_TOLERANCE_S (but within the limit) is stored, flagged `future`.
- A numeric timestamp is Unix seconds if, read as seconds, it lies in that range; otherwise Unix
  milliseconds if, read as milliseconds, it does; otherwise it is refused.
- Times in queries (windows of reads) may lie anywhere in the years 1970-2199, which holds
  every fix that can be stored; numbers there follow the same rule within those years.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from service.config import (
    DEFAULT_EARLIEST,
    DEFAULT_MAX_FUTURE_S,
    DEFAULT_TOLERANCE_S,
    READ_EARLIEST,
    READ_LATEST,
)
from service.errors import InvalidInput


def iso(value: datetime) -> str:
    """An aware time as ISO 8601 with `Z` for UTC."""
    return value.isoformat().replace("+00:00", "Z")


def to_utc(value: datetime, name: str = "ts") -> datetime:
    """The same instant as an aware UTC datetime (naive means UTC); InvalidInput on overflow."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is after the year 9999 in UTC
        raise InvalidInput(f"{name}={value.isoformat()} is out of range") from None


def from_number(value: float, name: str, earliest: datetime, latest: datetime) -> datetime:
    """A Unix time in seconds or milliseconds, whichever lies in [earliest, latest]."""
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any float
        value = math.inf if value > 0 else -math.inf
    if math.isfinite(value):
        low, high = earliest.timestamp(), latest.timestamp()
        for scale in (1.0, 1000.0):
            seconds = value / scale
            if low <= seconds <= high:
                return datetime.fromtimestamp(seconds, UTC)
    shown = (
        int(value) if math.isfinite(value) and value.is_integer() and abs(value) < 1e16 else value
    )
    raise InvalidInput(
        f"{name}={shown!r} is neither Unix seconds nor Unix milliseconds between "
        f"{iso(earliest)} and {iso(latest.replace(microsecond=0))}"
    )


def check_read_time(value: datetime, name: str) -> datetime:
    """InvalidInput unless a query time lies in the years 1970-2199."""
    if not READ_EARLIEST <= value < READ_LATEST:
        raise InvalidInput(f"{name}={iso(value)} is outside the years 1970-2199")
    return value


def parse_read_time(value: str, name: str) -> datetime:
    """A query time, ISO 8601 or a Unix time (s or ms), as aware UTC within 1970-2199."""
    try:
        number: float | None = float(value)
    except ValueError:
        number = None
    if number is not None:
        return from_number(number, name, READ_EARLIEST, READ_LATEST)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name}={value!r} is not an ISO 8601 time or a Unix time in seconds"
        ) from None
    return check_read_time(to_utc(parsed, name), name)


class TimeSettings(Protocol):
    """The settings of the time rule (service.config.Settings has them)."""

    min_fix_time: datetime
    future_tolerance_s: float
    max_future_s: float


@dataclass(frozen=True)
class FixTimes:
    """The valid range of fix times: [earliest, now + max_future_s], flagged past tolerance."""

    earliest: datetime = DEFAULT_EARLIEST
    tolerance_s: float = DEFAULT_TOLERANCE_S
    max_future_s: float = DEFAULT_MAX_FUTURE_S

    @classmethod
    def of(cls, settings: TimeSettings) -> FixTimes:
        """The rule as configured."""
        return cls(
            earliest=settings.min_fix_time,
            tolerance_s=settings.future_tolerance_s,
            max_future_s=settings.max_future_s,
        )

    def latest(self, now: datetime) -> datetime:
        """The latest device time accepted at `now`."""
        return now + timedelta(seconds=self.max_future_s)

    def refusal(self, ts: datetime, now: datetime, name: str = "ts") -> str | None:
        """Why a fix time is refused (naming the value and the range), or None when valid."""
        latest = self.latest(now)
        if self.earliest <= ts <= latest:
            return None
        return (
            f"{name}={iso(ts)} is outside the valid range of fix times: {iso(self.earliest)} "
            f"(PATROLI_MIN_FIX_TIME) to {iso(latest.replace(microsecond=0))} (now + "
            f"{self.max_future_s:g} s, PATROLI_MAX_FUTURE_S)"
        )

    def check(self, ts: datetime, now: datetime, name: str = "ts") -> datetime:
        """The time, or InvalidInput when it is outside the valid range."""
        reason = self.refusal(ts, now, name)
        if reason is not None:
            raise InvalidInput(reason)
        return ts

    def is_future(self, ts: datetime, now: datetime) -> bool:
        """Whether a (valid) fix time is far enough ahead of now to be flagged `future`."""
        return ts > now + timedelta(seconds=self.tolerance_s)

    def from_number(self, value: float, name: str, now: datetime) -> datetime:
        """A numeric device time: Unix seconds or milliseconds, whichever lies in the range."""
        return from_number(value, name, self.earliest, self.latest(now))


DEFAULT_FIX_TIMES = FixTimes()
