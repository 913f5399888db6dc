"""Operation reports: per-unit activity over a window, and day/night shift reports.

Per unit, from its analytics-eligible fixes in the window (sorted by device time):

* `distance_m`: sum of geodesic (WGS84) distances between consecutive fixes. A step is left out
  when the fixes are more than 10 minutes apart (a gap is not interpolated) or when its implied
  speed exceeds the setting `max_speed_mps` (a jump; two fixes at the same time but different
  places count as a jump).
* `time_on_route_s`: sum of t_i+1 - t_i over consecutive fixes both inside the corridor of any
  patrol route assigned to the unit (shift hours of an assignment are not considered) and at
  most `max_gap_s` apart.
* `time_in_geofences`: the unit's presence time at each geofence (`service.geo.presence`; like
  the presence endpoint it links fixes up to max_gap_s beyond the window, clipped to it).
* `stops`: runs of consecutive fixes that all lie within 10 m of the run's first fix, with no
  gap over 10 minutes inside the run, lasting at least 300 s from first to last fix; a new run
  starts at the first fix that leaves the 10 m circle.
* `first_fix` / `last_fix`: device times of the first and last eligible fix (null when none).

The shift report cuts a local date (display time zone) into the day shift [day_start,
night_start) and the night shift [night_start, next day's day_start), and reports for each the
units as above, every patrol route's coverage ratio and every critical site's (geofence of kind
`critical_site`) covered ratio and uncovered intervals.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import LineString, mapping
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.analytics.coverage import compute_coverage
from service.analytics.positions import Fixes
from service.analytics.presence import (
    FencePresence,
    fence_presence,
    interval_rows,
    iso,
    min_dwell,
    read_fixes,
    unit_runs,
)
from service.areas.index import corridor_from_row, fence_from_row
from service.config import Settings
from service.errors import InvalidInput
from service.geo.corridor import Corridor
from service.schemas import GeoJSONDict
from service.store.models import Geofence, PatrolRoute, Unit, UnitPatrolRoute
from service.window import Window

GEOD = Geod(ellps="WGS84")

MAX_STEP_GAP_S = 600.0
STOP_RADIUS_M = 10.0
STOP_MIN_S = 300.0
MAX_LINE_POINTS = 2000
_STOP_AHEAD = 8  # fixes looked ahead of every candidate stop at once
_STOP_CHUNK = 1024  # most fixes measured from a stop's first fix at a time
CRITICAL_SITE = "critical_site"


def step_lengths(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Geodesic metres between consecutive points."""
    if lon.size < 2:
        return np.zeros(0)
    _, _, dist = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return np.asarray(dist, dtype=np.float64)


def track_distance_m(
    t: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    max_speed_mps: float,
    step: np.ndarray | None = None,
) -> float:
    """Distance travelled, skipping gaps over 10 minutes and jumps faster than max_speed_mps."""
    d = step_lengths(lon, lat) if step is None else step
    dt = np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(dt > 0, d / np.where(dt > 0, dt, 1.0), np.where(d > 0, np.inf, 0.0))
    keep = (dt <= MAX_STEP_GAP_S) & (speed <= max_speed_mps)
    return float(d[keep].sum())


def linked_time_s(t: np.ndarray, flag: np.ndarray, max_gap_s: float) -> float:
    """Sum of gaps between consecutive fixes both flagged and at most max_gap_s apart."""
    dt = np.diff(t)
    link = flag[:-1] & flag[1:] & (dt <= max_gap_s)
    return float(dt[link].sum())


def count_stops(
    t: np.ndarray, lon: np.ndarray, lat: np.ndarray, step: np.ndarray | None = None
) -> int:
    """Runs of fixes within 10 m of the run's first fix lasting at least 300 s (see module).

    `step` may pass in the step_lengths of the track, when already known.
    """
    n = t.size
    if n < 2:
        return 0
    linked = np.diff(t) <= MAX_STEP_GAP_S
    if step is None:
        step = step_lengths(lon, lat)
    # Only a fix whose next fix is linked and within the radius can start a run of two or more;
    # every other fix is a run of its own, lasting 0 s, so the scan jumps between these.
    starts = np.flatnonzero(linked & (np.asarray(step) < STOP_RADIUS_M))
    if starts.size == 0:
        return 0
    # Where each candidate run ends, looking _STOP_AHEAD fixes ahead of all of them at once.
    ahead = starts[:, None] + np.arange(1, _STOP_AHEAD + 1)
    within = ahead < n
    ahead = np.minimum(ahead, n - 1)
    _, _, d = GEOD.inv(
        np.repeat(lon[starts], _STOP_AHEAD),
        np.repeat(lat[starts], _STOP_AHEAD),
        lon[ahead].ravel(),
        lat[ahead].ravel(),
    )
    stays = within & linked[ahead - 1] & (np.asarray(d).reshape(ahead.shape) < STOP_RADIUS_M)
    # (A run reaching past the track's end stops there: `within` is False beyond it.)
    run_end = np.where(stays.all(axis=1), -1, starts + 1 + np.argmin(stays, axis=1))
    stops = 0
    k = 0
    while k < starts.size:
        i = int(starts[k])
        j = int(run_end[k])
        if j < 0:  # a long stay: measure on from the run's first fix in growing chunks
            j, chunk = i + 1 + _STOP_AHEAD, _STOP_AHEAD
            while j < n:
                hi = min(n, j + chunk)
                chunk = min(2 * chunk, _STOP_CHUNK)
                _, _, dd = GEOD.inv(
                    np.full(hi - j, lon[i]), np.full(hi - j, lat[i]), lon[j:hi], lat[j:hi]
                )
                ends = np.flatnonzero(~(linked[j - 1 : hi - 1] & (np.asarray(dd) < STOP_RADIUS_M)))
                if ends.size:
                    j += int(ends[0])
                    break
                j = hi
        if t[j - 1] - t[i] >= STOP_MIN_S:
            stops += 1
        k = int(np.searchsorted(starts, j))
    return stops


def simplify_line(coords: np.ndarray, max_points: int = MAX_LINE_POINTS) -> np.ndarray:
    """A track with at most max_points vertices (Douglas-Peucker with a growing tolerance)."""
    if coords.shape[0] <= max_points:
        return coords
    line = LineString(coords)
    tolerance = 1e-6
    while True:
        out = shapely.get_coordinates(shapely.simplify(line, tolerance, preserve_topology=False))
        if out.shape[0] <= max_points:
            return out
        tolerance *= 2.0


def track_geometry(rep: UnitReport) -> dict[str, Any] | None:
    """A unit's simplified track as a GeoJSON LineString (None with fewer than two fixes)."""
    coords = simplify_line(rep.track)
    if coords.shape[0] < 2:
        return None
    return {"type": "LineString", "coordinates": coords.tolist()}


@dataclass
class UnitReport:
    """One unit's activity over a window."""

    unit_id: int
    name: str
    distance_m: float = 0.0
    time_on_route_s: float = 0.0
    time_in_geofences: dict[int, float] = field(default_factory=dict)
    stops: int = 0
    fixes: int = 0
    first_fix: float | None = None
    last_fix: float | None = None
    track: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


@dataclass(frozen=True)
class Areas:
    """The stored routes, geofences and assignments a report needs, read once."""

    units: list[tuple[int, str]]
    routes: list[tuple[PatrolRoute, Corridor]]
    fences: list[Geofence]
    assigned: dict[int, list[int]]

    @classmethod
    def load(cls, session: Session) -> Areas:
        """Read every unit, patrol route, geofence and assignment."""
        units = [(u, n) for u, n in session.execute(select(Unit.id, Unit.name).order_by(Unit.id))]
        routes = [
            (r, corridor_from_row(r))
            for r in session.scalars(select(PatrolRoute).order_by(PatrolRoute.id))
        ]
        fences = list(session.scalars(select(Geofence).order_by(Geofence.id)))
        assigned: dict[int, list[int]] = defaultdict(list)
        for unit_id, route_id in session.execute(
            select(UnitPatrolRoute.unit_id, UnitPatrolRoute.patrol_route_id)
        ):
            assigned[unit_id].append(route_id)
        return cls(units, routes, fences, dict(assigned))


def slice_fixes(fixes: Fixes, start: float, end: float) -> Fixes:
    """The fixes with start <= t < end (order kept)."""
    keep = (fixes.t >= start) & (fixes.t < end)
    return Fixes(fixes.unit_id[keep], fixes.t[keep], fixes.lon[keep], fixes.lat[keep])


def unit_reports(
    areas: Areas,
    fixes: Fixes,
    presence: dict[int, FencePresence],
    settings: Settings,
    max_gap_s: float,
) -> list[UnitReport]:
    """Every unit's report from fixes already cut to the window."""
    reports = {uid: UnitReport(uid, name) for uid, name in areas.units}
    on_route_by_route = {
        row.id: corridor.locate_on_route(fixes.lon, fixes.lat)[0]
        if fixes.t.size
        else np.zeros(0, bool)
        for row, corridor in areas.routes
    }
    for unit_id, a, b in unit_runs(fixes):
        rep = reports.get(unit_id)
        if rep is None:
            continue
        t, lon, lat = fixes.t[a:b], fixes.lon[a:b], fixes.lat[a:b]
        on_route = np.zeros(b - a, dtype=np.bool_)
        for route_id in areas.assigned.get(unit_id, []):
            if route_id in on_route_by_route:
                on_route |= on_route_by_route[route_id][a:b]
        rep.fixes = b - a
        step = step_lengths(lon, lat)
        rep.distance_m = track_distance_m(t, lon, lat, settings.max_speed_mps, step)
        rep.time_on_route_s = linked_time_s(t, on_route, max_gap_s)
        rep.stops = count_stops(t, lon, lat, step)
        rep.first_fix, rep.last_fix = float(t[0]), float(t[-1])
        rep.track = np.column_stack((lon, lat))
    for fence_id, result in presence.items():
        for rep in reports.values():
            rep.time_in_geofences[fence_id] = result.present_s.get(rep.unit_id, 0.0)
    return list(reports.values())


def _presence_all(
    areas: Areas, fixes: Fixes, start: float, end: float, max_gap_s: float, settings: Settings
) -> dict[int, FencePresence]:
    return {
        row.id: fence_presence(
            fence_from_row(row), fixes, start, end, max_gap_s, min_dwell(row, settings)
        )
        for row in areas.fences
    }


def unit_json(rep: UnitReport, areas: Areas) -> dict[str, Any]:
    """One unit's report as a JSON object."""
    return {
        "unit_id": rep.unit_id,
        "unit_name": rep.name,
        "fixes": rep.fixes,
        "distance_m": round(rep.distance_m, 2),
        "time_on_route_s": round(rep.time_on_route_s, 3),
        "time_in_geofences": [
            {
                "geofence_id": row.id,
                "name": row.name,
                "present_s": round(rep.time_in_geofences.get(row.id, 0.0), 3),
            }
            for row in areas.fences
        ],
        "stops": rep.stops,
        "first_fix": iso(rep.first_fix),
        "last_fix": iso(rep.last_fix),
    }


def geofence_columns(fences: list[Geofence]) -> list[str]:
    """CSV columns of the time spent in each geofence: time_in_<name>_s (with #id if shared)."""
    names = Counter(row.name for row in fences)
    return [
        f"time_in_{row.name}_s" if names[row.name] == 1 else f"time_in_{row.name} #{row.id}_s"
        for row in fences
    ]


_UNIT_BASE = ["fixes", "distance_m", "time_on_route_s"]
_UNIT_TAIL = ["stops", "first_fix", "last_fix"]


def unit_columns(areas: Areas) -> list[str]:
    """CSV header of a unit row."""
    return ["unit_id", "unit_name", *_UNIT_BASE, *geofence_columns(areas.fences), *_UNIT_TAIL]


def unit_row(rep: UnitReport, areas: Areas) -> list[Any]:
    """One unit's report as a flat CSV row (same order as unit_columns)."""
    data = unit_json(rep, areas)
    fences = [g["present_s"] for g in data["time_in_geofences"]]
    return [
        data["unit_id"],
        data["unit_name"],
        data["fixes"],
        data["distance_m"],
        data["time_on_route_s"],
        *fences,
        data["stops"],
        data["first_fix"] or "",
        data["last_fix"] or "",
    ]


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection), also after
# leading blanks; the full-width forms too, in some locales. Such text cells (names typed by
# users) are written with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Control characters (CR and LF among them) and Unicode line separators: a line break inside a
# cell lets importers that read line by line start a new row with the text after it.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _cell(value: Any) -> Any:
    """A CSV cell made safe for spreadsheets: control characters as spaces, formulas as text."""
    if not isinstance(value, str):
        return value
    text = _CONTROL.sub(" ", value)
    if text.lstrip().startswith(_FORMULA_START):
        return "'" + text
    return text


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    """Rows as CSV text with a header line (text cells made safe for spreadsheets)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([_cell(c) for c in header])
    writer.writerows([_cell(c) for c in row] for row in rows)
    return buf.getvalue()


def _intervals_text(rows: list[dict[str, Any]]) -> str:
    """Intervals as ISO 8601 "from/to" pairs separated by "; "."""
    return "; ".join(f"{r['from']}/{r['to']}" for r in rows)


@dataclass(frozen=True)
class Report:
    """A computed unit report in every output format."""

    window: dict[str, Any]
    reports: list[UnitReport]
    areas: Areas

    def json(self) -> dict[str, Any]:
        """The report as JSON."""
        return {"window": self.window, "units": [unit_json(r, self.areas) for r in self.reports]}

    def csv(self) -> str:
        """The report as CSV: one row per unit."""
        return to_csv(unit_columns(self.areas), [unit_row(r, self.areas) for r in self.reports])

    def geojson(self) -> GeoJSONDict:
        """The report as a FeatureCollection: one LineString (simplified track) per unit."""
        features = []
        for rep in self.reports:
            features.append(
                {
                    "type": "Feature",
                    "id": rep.unit_id,
                    "geometry": track_geometry(rep),
                    "properties": unit_json(rep, self.areas),
                }
            )
        return {"type": "FeatureCollection", "features": features, "window": self.window}


def _window_json(start: datetime, end: datetime, settings: Settings) -> dict[str, Any]:
    return {"from": iso(start), "to": iso(end), "timezone": settings.timezone}


def units_report(session: Session, window: Window, settings: Settings) -> Report:
    """Every unit's report over [from, to), in one read of the fixes."""
    areas = Areas.load(session)
    fixes = read_fixes(session, window, settings.max_gap_s)
    start, end = window.start.timestamp(), window.end.timestamp()
    presence = _presence_all(areas, fixes, start, end, settings.max_gap_s, settings)
    part = slice_fixes(fixes, start, end)
    reports = unit_reports(areas, part, presence, settings, settings.max_gap_s)
    return Report(_window_json(window.start, window.end, settings), reports, areas)


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str, name: str) -> time:
    """A local time of day written HH:MM."""
    match = _HHMM.match(value)
    if match is None:
        raise InvalidInput(f"{name}={value!r} is not a time of day HH:MM")
    return time(int(match.group(1)), int(match.group(2)))


def parse_date(value: str) -> date:
    """A calendar date written YYYY-MM-DD."""
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"date={value!r} is not a date YYYY-MM-DD") from None
    if not 1970 <= parsed.year < 2200:
        raise InvalidInput(f"date={value!r} is outside the years 1970-2199")
    return parsed


def shift_windows(
    day: date, day_start: time, night_start: time, settings: Settings
) -> list[tuple[str, Window]]:
    """The day and night shift windows of a local date, in UTC."""
    if not day_start < night_start:
        raise InvalidInput("day_start must be earlier than night_start")
    tz = settings.tz
    a = datetime.combine(day, day_start, tz)
    b = datetime.combine(day, night_start, tz)
    c = datetime.combine(day + timedelta(days=1), day_start, tz)
    return [("day", Window(a, b)), ("night", Window(b, c))]


@dataclass(frozen=True)
class ShiftReport:
    """A computed shift report in every output format."""

    date: str
    shifts: list[dict[str, Any]]
    unit_reports: list[tuple[str, dict[str, Any], list[UnitReport]]]
    areas: Areas

    def json(self) -> dict[str, Any]:
        """The report as JSON."""
        return {"date": self.date, "shifts": self.shifts}

    def csv(self) -> str:
        """One row per shift and unit, patrol route and critical site (`record` says which)."""
        fences = geofence_columns(self.areas.fences)
        header = ["shift", "shift_from", "shift_to", "record", "id", "name", *_UNIT_BASE]
        header += [*fences, *_UNIT_TAIL, "coverage_ratio", "covered_s", "uncovered_intervals"]
        blank_unit = [""] * (len(_UNIT_BASE) + len(fences) + len(_UNIT_TAIL))
        rows: list[list[Any]] = []
        for shift, (name, window, reports) in zip(self.shifts, self.unit_reports, strict=True):
            lead = [name, window["from"], window["to"]]
            rows += [[*lead, "unit", *unit_row(rep, self.areas), "", "", ""] for rep in reports]
            for r in shift["patrol_routes"]:
                ident = [r["patrol_route_id"], r["name"]]
                rows.append(
                    [*lead, "patrol_route", *ident, *blank_unit, r["coverage_ratio"], "", ""]
                )
            for c in shift["critical_sites"]:
                gaps = _intervals_text(c["uncovered_intervals"])
                ident = [c["geofence_id"], c["name"]]
                rows.append(
                    [
                        *lead,
                        "critical_site",
                        *ident,
                        *blank_unit,
                        c["coverage_ratio"],
                        c["covered_s"],
                        gaps,
                    ]
                )
        return to_csv(header, rows)

    def geojson(self) -> GeoJSONDict:
        """Per shift: each unit's simplified track, each patrol route and critical site."""
        routes = {row.id: row for row, _ in self.areas.routes}
        fences = {row.id: row for row in self.areas.fences}
        features: list[dict[str, Any]] = []
        for shift, (name, _, reports) in zip(self.shifts, self.unit_reports, strict=True):
            for rep in reports:
                features.append(
                    {
                        "type": "Feature",
                        "geometry": track_geometry(rep),
                        "properties": {
                            "record": "unit",
                            "shift": name,
                            **unit_json(rep, self.areas),
                        },
                    }
                )
            for r in shift["patrol_routes"]:
                features.append(
                    {
                        "type": "Feature",
                        "geometry": mapping(routes[r["patrol_route_id"]].geom),
                        "properties": {"record": "patrol_route", "shift": name, **r},
                    }
                )
            for c in shift["critical_sites"]:
                fence = fences[c["geofence_id"]]
                features.append(
                    {
                        "type": "Feature",
                        "geometry": mapping(fence.geom),
                        "properties": {
                            "record": "critical_site",
                            "shift": name,
                            "radius_m": fence.radius_m,
                            **c,
                        },
                    }
                )
        return {"type": "FeatureCollection", "features": features, "date": self.date}


def shifts_report(
    session: Session, day: str, day_start: str, night_start: str, settings: Settings
) -> ShiftReport:
    """Day and night shift reports of a local date, reading the fixes once."""
    now = datetime.now(UTC)
    # A shift still running is reported up to now; one not started yet is left out.
    windows = [
        (name, Window(w.start, min(w.end, now)))
        for name, w in shift_windows(
            parse_date(day),
            parse_hhmm(day_start, "day_start"),
            parse_hhmm(night_start, "night_start"),
            settings,
        )
        if w.start < now
    ]
    if not windows:
        raise InvalidInput(f"date={day!r}: no shift of that day has started yet")
    areas = Areas.load(session)
    max_gap_s = settings.max_gap_s
    fixes = read_fixes(session, Window(windows[0][1].start, windows[-1][1].end), max_gap_s)
    shifts: list[dict[str, Any]] = []
    per_shift: list[tuple[str, dict[str, Any], list[UnitReport]]] = []
    for name, window in windows:
        start, end = window.start.timestamp(), window.end.timestamp()
        part = slice_fixes(fixes, start, end)
        presence = _presence_all(areas, fixes, start, end, max_gap_s, settings)
        reports = unit_reports(areas, part, presence, settings, max_gap_s)
        window_json = _window_json(window.start, window.end, settings)
        routes = []
        for row, corridor in areas.routes:
            result = compute_coverage(corridor, part, window, settings.segment_m, max_gap_s)
            routes.append(
                {
                    "patrol_route_id": row.id,
                    "name": row.name,
                    "coverage_ratio": round(result.coverage_ratio, 6),
                }
            )
        sites = []
        for fence in areas.fences:
            if fence.kind != CRITICAL_SITE:
                continue
            site = presence[fence.id]
            sites.append(
                {
                    "geofence_id": fence.id,
                    "name": fence.name,
                    "covered_s": round(site.covered_s, 3),
                    "coverage_ratio": round(site.coverage_ratio, 6),
                    "uncovered_intervals": interval_rows(site.uncovered),
                }
            )
        shifts.append(
            {
                "shift": name,
                "window": window_json,
                "units": [unit_json(r, areas) for r in reports],
                "patrol_routes": routes,
                "critical_sites": sites,
            }
        )
        per_shift.append((name, window_json, reports))
    return ShiftReport(day, shifts, per_shift, areas)
