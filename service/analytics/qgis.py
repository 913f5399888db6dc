"""The QGIS layers (PostGIS only): the coverage table and the settings the views read.

Migration 0007 creates four layers for desktop GIS (README, "Opening the data in QGIS"). Three
are views computed by PostGIS when QGIS reads them; `qgis_coverage_segments` is a table, since
coverage (linear referencing in each route's UTM zone, interpolated visits, loops) is the
Python computation the API answers with. `refresh_qgis` rewrites it for the current shift and
writes the settings row (time zone, max_gap_s, ...) the views read. The scheduler calls it every
`qgis_refresh_s`; with several workers or instances one transaction-scoped advisory lock lets
one of them write, and a refresh made by another within half the interval is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.analytics.reports import parse_hhmm, shift_windows
from service.analytics.running import RunningCoverage
from service.areas.index import GeoIndex
from service.config import Settings
from service.window import Window

# The relations QGIS opens, one layer each (deploy/qgis/patroli.qgs).
LAYERS = (
    "qgis_latest_positions",
    "qgis_tracks_today",
    "qgis_coverage_segments",
    "qgis_geofences",
)

_LOCK_KEY = 0x71676973  # one writer of the QGIS tables at a time (PostgreSQL advisory lock)
SEGMENT_ID_BASE = 100_000  # id = route id * this + segment (a route has at most 100,000)
FRESH_S = 30 * 60.0  # as the coverage map: visited this recently is fresh (green)
DEFAULT_REVISIT_S = 60 * 60.0  # stale (amber) up to the route's revisit_s, or this without one


@dataclass(frozen=True)
class Shift:
    """The shift a moment falls in: its name and its [from, to) in UTC."""

    name: str
    window: Window


def current_shift(now: datetime, settings: Settings) -> Shift:
    """The day or night shift (settings `shift_day_start`, `shift_night_start`) holding now."""
    day_start = parse_hhmm(settings.shift_day_start, "shift_day_start")
    night_start = parse_hhmm(settings.shift_night_start, "shift_night_start")
    local: date = now.astimezone(settings.tz).date()
    for day in (local - timedelta(days=1), local):
        for name, window in shift_windows(day, day_start, night_start, settings):
            if window.start <= now < window.end:
                return Shift(name, window)
    raise AssertionError(f"no shift holds {now.isoformat()}")  # the shifts tile every day


def segment_status(last_visit: float | None, now: float, revisit_s: float | None) -> str:
    """ "fresh", "stale" or "overdue", by time since the last visit, as on the coverage map."""
    if last_visit is None:
        return "overdue"
    age = now - last_visit
    limit = revisit_s if revisit_s is not None and revisit_s > 0 else DEFAULT_REVISIT_S
    if age >= limit:
        return "overdue"
    return "fresh" if age < FRESH_S else "stale"


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


_INSERT = text(
    """
    INSERT INTO qgis_coverage_segments (
        id, patrol_route_id, route_name, segment, start_m, end_m, covered, visits,
        first_visit, last_visit, last_visit_local, status, shift, shift_from, shift_to, as_of, geom
    )
    SELECT :id, :route_id, :route_name, :segment, :start_m, :end_m, :covered, :visits,
           :first_visit, :last_visit,
           to_char(CAST(:last_visit AS timestamptz) AT TIME ZONE :tz, 'YYYY-MM-DD HH24:MI:SS'),
           :status, :shift, :shift_from, :shift_to, :as_of, ST_GeomFromWKB(:wkb, 4326)
    -- A route deleted since the index was read is left out.
    WHERE EXISTS (SELECT 1 FROM patrol_routes WHERE id = :route_id)
    """
)

_SETTINGS = text(
    """
    INSERT INTO qgis_settings (
        id, timezone, max_gap_s, offline_after_s, default_min_dwell_s,
        shift, shift_from, shift_to, refreshed_at
    ) VALUES (1, :tz, :max_gap_s, :offline_after_s, :min_dwell_s, :shift, :start, :end, :now)
    ON CONFLICT (id) DO UPDATE SET
        timezone = EXCLUDED.timezone, max_gap_s = EXCLUDED.max_gap_s,
        offline_after_s = EXCLUDED.offline_after_s,
        default_min_dwell_s = EXCLUDED.default_min_dwell_s, shift = EXCLUDED.shift,
        shift_from = EXCLUDED.shift_from, shift_to = EXCLUDED.shift_to,
        refreshed_at = EXCLUDED.refreshed_at
    """
)


def refresh_qgis(
    session: Session,
    index: GeoIndex,
    settings: Settings,
    now: datetime,
    *,
    force: bool = False,
    coverage: RunningCoverage | None = None,
) -> int | None:
    """Rewrite the QGIS coverage table for the shift holding `now`; the rows written.

    None when skipped: not PostgreSQL, another worker holds the lock, or (unless `force`) a
    refresh less than half of `qgis_refresh_s` old is already there. Pass the same
    `coverage` each time to read only what is new (a fresh one reads the whole shift).
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar():
        return None
    last = session.execute(text("SELECT refreshed_at FROM qgis_settings WHERE id = 1")).scalar()
    if (
        not force
        and last is not None
        and abs((now - last).total_seconds()) < (settings.qgis_refresh_s / 2)
    ):
        return None
    shift = current_shift(now, settings)
    coverage = coverage or RunningCoverage()
    by_route = coverage.update(session, index.routes, (), settings, shift.window.start, now)
    end = now.timestamp()
    rows = []
    for route in index.routes:
        corridor = route.corridor
        cov = by_route[route.id]
        lines = corridor.segment_lines(settings.segment_m)
        for seg, line in zip(cov.segments, lines, strict=True):
            rows.append(
                {
                    "id": route.id * SEGMENT_ID_BASE + seg.index,
                    "route_id": route.id,
                    "route_name": route.name,
                    "segment": seg.index,
                    "start_m": round(seg.start_m, 3),
                    "end_m": round(seg.end_m, 3),
                    "covered": seg.visited,
                    "visits": seg.visits,
                    "first_visit": _dt(seg.first_visit),
                    "last_visit": _dt(seg.last_visit),
                    "tz": settings.timezone,
                    "status": segment_status(
                        seg.last_visit if seg.visited else None, end, route.revisit_s
                    ),
                    "shift": shift.name,
                    "shift_from": shift.window.start,
                    "shift_to": shift.window.end,
                    "as_of": now,
                    "wkb": shapely.to_wkb(line),
                }
            )
    session.execute(text("DELETE FROM qgis_coverage_segments"))
    if rows:
        session.execute(_INSERT, rows)
    session.execute(
        _SETTINGS,
        {
            "tz": settings.timezone,
            "max_gap_s": settings.max_gap_s,
            "offline_after_s": settings.offline_after_s,
            "min_dwell_s": settings.default_min_dwell_s,
            "shift": shift.name,
            "start": shift.window.start,
            "end": shift.window.end,
            "now": now,
        },
    )
    return len(rows)
