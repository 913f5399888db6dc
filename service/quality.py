"""Ping quality flags: stored as a bit set, reported by name."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import IntFlag

EARTH_RADIUS_M = 6_371_008.8  # mean radius: great-circle distances within 0.5 % of WGS84


class Flag(IntFlag):
    """Quality flags of a stored ping."""

    ZERO = 1  # position is exactly (0, 0): a tracker without a fix
    FUTURE = 2  # device time more than the tolerance ahead of the server clock
    DUPLICATE = 4  # same unit, device time and position as a stored ping (never stored twice)
    INACCURATE = 8  # reported accuracy worse than max_accuracy_m
    TELEPORT = 16  # implied speed from the previous good fix above max_speed_mps
    LATE = 32  # older than the unit's newest ping: counts in analytics, fires no live event


# Pings with any of these flags are left out of events and analytics.
EXCLUDED = Flag.ZERO | Flag.FUTURE | Flag.INACCURATE | Flag.TELEPORT
_EXCLUDED = int(EXCLUDED)
_ZERO, _FUTURE, _INACCURATE = int(Flag.ZERO), int(Flag.FUTURE), int(Flag.INACCURATE)
_TELEPORT, _LATE = int(Flag.TELEPORT), int(Flag.LATE)


_NAMES = [(int(f), f.name.lower()) for f in Flag if f.name]
_NAME_CACHE: dict[int, list[str]] = {}


def flag_names(flags: int) -> list[str]:
    """The names of the flags set in a bit set, lower case."""
    names = _NAME_CACHE.get(flags)
    if names is None:
        names = _NAME_CACHE[flags] = [name for bit, name in _NAMES if flags & bit]
    return list(names)


def eligible(flags: int) -> bool:
    """Whether a ping with these flags counts for events and analytics."""
    return not flags & _EXCLUDED


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance between two WGS84 points in metres (haversine)."""
    # Per-fix on the hot path: a plain-math haversine is ~20x cheaper than a pyproj call and
    # well within what a speed threshold needs.
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def assess(
    *,
    lon: float,
    lat: float,
    ts: datetime,
    accuracy_m: float | None,
    now: datetime,
    newest_ts: datetime | None,
    good: tuple[datetime, float, float] | None,
    max_accuracy_m: float,
    max_speed_mps: float,
    future_tolerance_s: float,
) -> int:
    """Quality flags of a new fix, given the unit's newest ping time and newest good fix."""
    flags = 0  # plain ints: this runs for every fix, and IntFlag arithmetic is slow
    if lon == 0 and lat == 0:
        flags |= _ZERO
    if ts > now + timedelta(seconds=future_tolerance_s):
        flags |= _FUTURE
    if accuracy_m is not None and accuracy_m > max_accuracy_m:
        flags |= _INACCURATE
    if newest_ts is not None and ts < newest_ts:
        flags |= _LATE
    if good is not None and not flags & (_ZERO | _LATE):
        good_ts, good_lon, good_lat = good
        dt = (ts - good_ts).total_seconds()
        dist = distance_m(good_lon, good_lat, lon, lat)
        # Same-second fixes: any real move is a jump; allow a few metres of jitter.
        speed = dist / dt if dt > 0 else (math.inf if dist > 5 else 0.0)
        if speed > max_speed_mps:
            flags |= _TELEPORT
    return flags
