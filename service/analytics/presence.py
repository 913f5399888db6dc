"""Critical-site presence: which units were at a geofence in a window, and when nobody was.

See `service.geo.presence` for the exact semantics of presence, visits, sambang, covered and
uncovered time. A geofence without `min_dwell_s` uses the setting `default_min_dwell_s`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.analytics.positions import Fixes, eligible_fixes
from service.areas.features import get_fence
from service.areas.index import fence_from_row
from service.config import Settings
from service.geo import presence as geo
from service.geo.fence import Fence
from service.store.models import Geofence, Unit
from service.window import Window

_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class Visit:
    """One unit's maximal presence interval at a geofence."""

    unit_id: int
    start: float
    end: float
    sambang: bool


@dataclass(frozen=True)
class FencePresence:
    """Presence at one geofence over a window."""

    start: float
    end: float
    covered: np.ndarray  # (n, 2) union over units, clipped to the window
    uncovered: np.ndarray  # (k, 2) positive-length gaps
    visits: list[Visit]
    present_s: dict[int, float]  # by unit id

    @property
    def covered_s(self) -> float:
        """Seconds of the window during which at least one unit was present."""
        return geo.total(self.covered)

    @property
    def coverage_ratio(self) -> float:
        """Covered share of the window."""
        span = self.end - self.start
        return self.covered_s / span if span > 0 else 0.0


def iso(t: float | datetime | None) -> str | None:
    """An epoch time or datetime as ISO 8601 UTC with a Z suffix."""
    if t is None:
        return None
    dt = t if isinstance(t, datetime) else datetime.fromtimestamp(round(t, 3), UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def unit_runs(fixes: Fixes) -> list[tuple[int, int, int]]:
    """(unit id, first index, end index) of each unit's contiguous run of fixes."""
    if fixes.t.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, fixes.unit_id[1:] != fixes.unit_id[:-1]])
    ends = np.r_[starts[1:], fixes.unit_id.size]
    return [(int(fixes.unit_id[a]), int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def fence_presence(
    fence: Fence, fixes: Fixes, start: float, end: float, max_gap_s: float, min_dwell_s: float
) -> FencePresence:
    """Presence of every unit at one geofence in [start, end), from already-read fixes.

    `fixes` should reach max_gap_s beyond both ends of the window (see `read_fixes`).
    """
    inside = fence.contains_many(fixes.lon, fixes.lat) if fixes.t.size else np.zeros(0, bool)
    per_unit: list[np.ndarray] = []
    found: list[Visit] = []
    present: dict[int, float] = {}
    for unit_id, a, b in unit_runs(fixes):
        t = fixes.t[a:b]
        keep = (t >= start - max_gap_s) & (t <= end + max_gap_s)
        intervals, sambang = geo.visits(
            t[keep], inside[a:b][keep], max_gap_s, min_dwell_s, start, end
        )
        if intervals.shape[0] == 0:
            continue
        per_unit.append(intervals)
        present[unit_id] = geo.total(intervals)
        found.extend(
            Visit(unit_id, float(lo), float(hi), bool(s))
            for (lo, hi), s in zip(intervals, sambang, strict=True)
        )
    stacked = np.concatenate(per_unit) if per_unit else np.zeros((0, 2))
    covered = geo.union(stacked)
    covered = covered[covered[:, 1] > covered[:, 0]]
    found.sort(key=lambda v: (v.start, v.unit_id))
    return FencePresence(
        start=start,
        end=end,
        covered=covered,
        uncovered=geo.complement(covered, start, end),
        visits=found,
        present_s=present,
    )


def read_fixes(session: Session, window: Window, max_gap_s: float) -> Fixes:
    """Eligible fixes of [from - max_gap_s, to + max_gap_s] (times to 1 ms), for edge presence."""
    margin = timedelta(seconds=max_gap_s)
    # eligible_fixes takes a half-open window; a fix exactly at to + max_gap_s still links.
    fixes = eligible_fixes(session, window.start - margin, window.end + margin + _EPSILON)
    # SQLite's julianday carries device time to about a millisecond: round to exactly that.
    fixes.t = np.round(fixes.t, 3)
    return fixes


def min_dwell(row: Geofence, settings: Settings) -> float:
    """The dwell that makes a visit a sambang at this geofence."""
    return row.min_dwell_s if row.min_dwell_s is not None else settings.default_min_dwell_s


def unit_names(session: Session) -> dict[int, str]:
    """Every unit's name by id."""
    return {uid: name for uid, name in session.execute(select(Unit.id, Unit.name))}


def interval_rows(intervals: np.ndarray) -> list[dict[str, Any]]:
    """(from, to) rows as JSON objects with ISO times and duration_s."""
    return [
        {"from": iso(float(lo)), "to": iso(float(hi)), "duration_s": round(float(hi - lo), 3)}
        for lo, hi in intervals
    ]


def hourly_rows(covered: np.ndarray, start: float, end: float, tz: tzinfo) -> list[dict[str, Any]]:
    """Covered ratio per local hour of day (null when the window holds no time in that hour)."""
    ratios = geo.hourly_presence(covered, start, end, tz)
    return [
        {"hour": h, "covered_ratio": None if math.isnan(r) else round(float(r), 6)}
        for h, r in enumerate(ratios.tolist())
    ]


def geofence_presence(
    session: Session, fence_id: int, window: Window, max_gap_s: float, settings: Settings
) -> dict[str, Any]:
    """Presence report of one geofence over [from, to): coverage, gaps, visits, per unit, hourly."""
    row = get_fence(session, fence_id)
    fixes = read_fixes(session, window, max_gap_s)
    start, end = window.start.timestamp(), window.end.timestamp()
    dwell = min_dwell(row, settings)
    result = fence_presence(fence_from_row(row), fixes, start, end, max_gap_s, dwell)
    names = unit_names(session)
    per_unit = []
    for unit_id in sorted(result.present_s):
        own = [v for v in result.visits if v.unit_id == unit_id]
        per_unit.append(
            {
                "unit_id": unit_id,
                "unit_name": names.get(unit_id),
                "present_s": round(result.present_s[unit_id], 3),
                "visits": len(own),
                "sambang": sum(v.sambang for v in own),
            }
        )
    return {
        "geofence_id": row.id,
        "name": row.name,
        "kind": row.kind,
        "window": {"from": iso(window.start), "to": iso(window.end), "timezone": settings.timezone},
        "max_gap_s": max_gap_s,
        "min_dwell_s": dwell,
        "covered_s": round(result.covered_s, 3),
        "coverage_ratio": round(result.coverage_ratio, 6),
        "uncovered_intervals": interval_rows(result.uncovered),
        "visits": [
            {
                "unit_id": v.unit_id,
                "unit_name": names.get(v.unit_id),
                "from": iso(v.start),
                "to": iso(v.end),
                "duration_s": round(v.end - v.start, 3),
                "sambang": v.sambang,
            }
            for v in result.visits
        ],
        "per_unit": per_unit,
        "hourly": hourly_rows(result.covered, start, end, settings.tz),
    }
