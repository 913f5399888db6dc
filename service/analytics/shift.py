"""The figures of one shift, read once: units, patrol routes, critical sites and tracks.

A shift is named by a local date (display time zone) and `shift`:

* `day`: [date day_start, date night_start);
* `night`: [date night_start, next day's day_start);
* `HH:MM-HH:MM`: from the first time on the date to the second, on the next day when it is not
  later (`22:00-06:00`); `07:00-07:00` is a whole day.

A shift still running is reported up to now; one not begun yet is refused (422).

The figures are those of the JSON endpoints for the same window: per unit those of
`/api/v1/reports/units` (service.analytics.reports), per route the coverage of
`/api/v1/coverage/patrol-routes/{id}`, per geofence the presence of
`/api/v1/presence/geofences/{id}`. Besides:

* `time_off_route_s` of a unit with assigned routes: time linked between consecutive fixes at
  most max_gap_s apart (as time on route is) less its time on route; None without an assigned
  route.
* a route's *uncovered* intervals: the window minus the time some unit was on the route, a
  unit being on it over [t_i, t_i+1] when consecutive fixes are both inside its corridor and at
  most max_gap_s apart (the presence rule of critical sites, with the corridor as the area).
* `hours`: the covered share of each local clock hour of the window, in time order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from service.analytics.coverage import compute_coverage
from service.analytics.positions import Fixes
from service.analytics.presence import (
    FencePresence,
    fence_presence,
    min_dwell,
    read_fixes,
    unit_runs,
)
from service.analytics.reports import (
    Areas,
    UnitReport,
    linked_time_s,
    parse_date,
    parse_hhmm,
    slice_fixes,
    unit_reports,
)
from service.areas.index import fence_from_row
from service.config import Settings
from service.errors import InvalidInput
from service.geo import presence as geo
from service.geo.corridor import Corridor
from service.geo.coverage import Coverage
from service.geo.fence import Fence
from service.store.models import Geofence, PatrolRoute
from service.window import Window

SHIFT_NAMES = ("day", "night")
_SPAN = re.compile(r"^(\d\d:\d\d)-(\d\d:\d\d)$")


@dataclass(frozen=True)
class Shift:
    """A named shift of a local date and its window (UTC; its end at most now)."""

    date: date
    name: str  # "day", "night" or "HH:MM-HH:MM"
    window: Window
    running: bool  # the shift has not ended yet: reported up to now


def shift_window(
    day: str, shift: str, day_start: str, night_start: str, settings: Settings
) -> Shift:
    """The window of `shift` on local date `day` (see module doc), or InvalidInput."""
    when = parse_date(day)
    tz = settings.tz
    if shift in SHIFT_NAMES:
        a = parse_hhmm(day_start, "day_start")
        b = parse_hhmm(night_start, "night_start")
        if not a < b:
            raise InvalidInput("day_start must be earlier than night_start")
        start_at, end_at, next_day = (a, b, False) if shift == "day" else (b, a, True)
    else:
        match = _SPAN.match(shift)
        if match is None:
            raise InvalidInput(
                f"shift={shift!r} is neither 'day', 'night' nor a span of local times 'HH:MM-HH:MM'"
            )
        start_at = parse_hhmm(match.group(1), "shift start")
        end_at = parse_hhmm(match.group(2), "shift end")
        next_day = end_at <= start_at
    start = datetime.combine(when, start_at, tz)
    end = datetime.combine(when + timedelta(days=1 if next_day else 0), end_at, tz)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    longest = timedelta(days=settings.max_window_days)
    if end - start > longest:
        raise InvalidInput(
            f"the shift is {(end - start) / timedelta(hours=1):g} hours long; at most "
            f"{settings.max_window_days:g} days may be asked at once (PATROLI_MAX_WINDOW_DAYS)"
        )
    now = datetime.now(UTC)
    if start >= now:
        raise InvalidInput(f"date={day!r} shift={shift!r} has not started yet")
    return Shift(when, shift, Window(start, min(end, now)), running=end > now)


@dataclass(frozen=True)
class RouteFigures:
    """One patrol route over the shift."""

    row: PatrolRoute
    corridor: Corridor
    coverage: Coverage
    uncovered: np.ndarray  # (k, 2) epoch seconds


@dataclass(frozen=True)
class FenceFigures:
    """One geofence over the shift."""

    row: Geofence
    fence: Fence
    presence: FencePresence
    hours: list[tuple[float, float, int, float]]  # from, to, local hour, covered share


@dataclass(frozen=True)
class UnitFigures:
    """One unit over the shift."""

    report: UnitReport
    time_off_route_s: float | None


@dataclass(frozen=True)
class ShiftFigures:
    """Everything the shift report shows but the alerts."""

    window: Window
    routes: list[RouteFigures]
    fences: list[FenceFigures]
    units: list[UnitFigures]
    fixes: Fixes  # eligible fixes of the window, by unit and time


def _uncovered_route(
    corridor: Corridor, around: Fixes, start: float, end: float, max_gap_s: float
) -> np.ndarray:
    """The window minus the time some unit was inside the route's corridor (see module doc)."""
    if around.t.size == 0:
        return geo.complement(np.zeros((0, 2)), start, end)
    inside = corridor.locate_on_route(around.lon, around.lat)[0]
    pieces = []
    for _, a, b in unit_runs(around):
        t = around.t[a:b]
        keep = (t >= start - max_gap_s) & (t <= end + max_gap_s)
        intervals, _ = geo.visits(t[keep], inside[a:b][keep], max_gap_s, 0.0, start, end)
        pieces.append(intervals)
    covered = geo.union(np.concatenate(pieces)) if pieces else np.zeros((0, 2))
    return geo.complement(covered, start, end)


def shift_figures(session: Session, window: Window, settings: Settings) -> ShiftFigures:
    """The figures of [from, to) for the shift report, reading the fixes once."""
    max_gap_s = settings.max_gap_s
    areas = Areas.load(session)
    around = read_fixes(session, window, max_gap_s)
    start, end = window.start.timestamp(), window.end.timestamp()
    part = slice_fixes(around, start, end)

    fences = []
    presence: dict[int, FencePresence] = {}
    for row in areas.fences:
        fence = fence_from_row(row)
        result = fence_presence(fence, around, start, end, max_gap_s, min_dwell(row, settings))
        presence[row.id] = result
        hours = geo.hour_bins(result.covered, start, end, settings.tz)
        fences.append(FenceFigures(row, fence, result, hours))

    reports = unit_reports(areas, part, presence, settings, max_gap_s)
    tracked: dict[int, float] = {}
    for unit_id, a, b in unit_runs(part):
        t = part.t[a:b]
        tracked[unit_id] = linked_time_s(t, np.ones(t.size, dtype=np.bool_), max_gap_s)
    units = [
        UnitFigures(
            rep,
            max(0.0, tracked.get(rep.unit_id, 0.0) - rep.time_on_route_s)
            if areas.assigned.get(rep.unit_id)
            else None,
        )
        for rep in reports
    ]

    routes = [
        RouteFigures(
            row,
            corridor,
            compute_coverage(corridor, part, window, settings.segment_m, max_gap_s),
            _uncovered_route(corridor, around, start, end, max_gap_s),
        )
        for row, corridor in areas.routes
    ]
    return ShiftFigures(window, routes, fences, units, part)
