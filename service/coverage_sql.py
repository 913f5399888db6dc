"""Coverage tracks of a patrol route: located in PostGIS on PostgreSQL, in NumPy elsewhere.

On PostgreSQL the database checks each analytics-eligible fix of the window against the route
(ST_DWithin in the route's UTM projection) and measures its chainage (ST_LineLocatePoint), so
only fixes on the route, and the off-route fixes right before or after one, leave the
database. Those off-route fixes are kept as markers: two on-route fixes of a unit are linked
only when they are consecutive among all of the unit's fixes, and a marker between them keeps
them apart exactly as the full sequence would. The result feeds the same `route_coverage` as
the NumPy path (`Corridor.locate_on_route` on every fix read by `eligible_fixes`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.deps import Window
from service.errors import InvalidInput
from service.geo.corridor import Corridor
from service.geo.coverage import Coverage, Track, route_coverage
from service.positions import eligible_fixes
from service.quality import EXCLUDED

Method = Literal["auto", "sql", "numpy"]

# The geography prefilter measures on a sphere, and UTM distances differ from true ones by up
# to ~0.1 %: a reach 2 % (+1 m) beyond the corridor never drops a fix the corridor holds.
_REACH_FACTOR = 1.02
_REACH_EXTRA_M = 1.0

_LOCATE_SQL = text("""
WITH line AS (
    SELECT ST_Transform(ST_GeomFromEWKB(:line), CAST(:epsg AS integer)) AS m
),
projected AS MATERIALIZED (
    SELECT p.unit_id, p.ts, p.id,
           CASE WHEN p.geom && ST_GeomFromEWKB(:box)
                 AND ST_DWithin(
                     p.geom::geography, ST_GeomFromEWKB(:line)::geography, :reach_m, false
                 )
                THEN ST_Transform(p.geom, CAST(:epsg AS integer))
           END AS pm
    FROM pings AS p
    WHERE p.ts >= :start AND p.ts < :end AND (p.flags & :excluded) = 0
      AND (CAST(:unit_id AS integer) IS NULL OR p.unit_id = :unit_id)
),
located AS (
    SELECT unit_id, ts, id,
           CASE WHEN ST_DWithin(pm, line.m, :corridor_m) THEN ST_LineLocatePoint(line.m, pm)
           END AS frac
    FROM projected CROSS JOIN line
),
marked AS (
    SELECT unit_id, ts, id, frac,
           LAG(frac IS NOT NULL, 1, false) OVER w AS prev_on,
           LEAD(frac IS NOT NULL, 1, false) OVER w AS next_on
    FROM located
    WINDOW w AS (PARTITION BY unit_id ORDER BY ts, id)
)
SELECT unit_id, EXTRACT(EPOCH FROM ts)::float8 AS t, frac
FROM marked
WHERE frac IS NOT NULL OR prev_on OR next_on
ORDER BY unit_id, ts, id
""")


def _split_units(
    unit_id: np.ndarray, t: np.ndarray, chainage: np.ndarray, on_route: np.ndarray
) -> list[tuple[int, Track]]:
    """(unit id, track) per unit of rows ordered by unit."""
    if unit_id.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, unit_id[1:] != unit_id[:-1]])
    ends = np.r_[starts[1:], unit_id.size]
    return [
        (int(unit_id[a]), Track(t=t[a:b], chainage_m=chainage[a:b], on_route=on_route[a:b]))
        for a, b in zip(starts, ends, strict=True)
    ]


def sql_unit_tracks(
    session: Session, corridor: Corridor, window: Window, unit_id: int | None = None
) -> list[tuple[int, Track]]:
    """(unit id, track) of each unit near the route, located in PostGIS."""
    line = shapely.to_wkb(shapely.set_srid(corridor.line, 4326), include_srid=True)
    rows = session.execute(
        _LOCATE_SQL,
        {
            "line": line,
            "box": shapely.to_wkb(
                shapely.set_srid(shapely.envelope(corridor.area), 4326), include_srid=True
            ),
            "epsg": corridor.projection.epsg,
            "corridor_m": corridor.corridor_m,
            "reach_m": corridor.corridor_m * _REACH_FACTOR + _REACH_EXTRA_M,
            "start": window.start,
            "end": window.end,
            "excluded": int(EXCLUDED),
            "unit_id": unit_id,
        },
    ).all()
    if not rows:
        return []
    arr = np.array(rows, dtype=np.float64)  # NULL frac (off route) becomes NaN
    frac = arr[:, 2]
    on_route = np.isfinite(frac)
    return _split_units(arr[:, 0].astype(np.int64), arr[:, 1], frac * corridor.length_m, on_route)


def numpy_unit_tracks(
    session: Session, corridor: Corridor, window: Window, unit_id: int | None = None
) -> list[tuple[int, Track]]:
    """(unit id, track) of each unit with fixes in the window, located with Shapely/NumPy."""
    fixes = eligible_fixes(session, window.start, window.end)
    if unit_id is not None:
        keep = fixes.unit_id == unit_id
        fixes.unit_id, fixes.t = fixes.unit_id[keep], fixes.t[keep]
        fixes.lon, fixes.lat = fixes.lon[keep], fixes.lat[keep]
    if fixes.t.size == 0:
        return []
    on_route, chainage = corridor.locate_on_route(fixes.lon, fixes.lat)
    return _split_units(fixes.unit_id, fixes.t, chainage, on_route)


def unit_tracks(
    session: Session,
    corridor: Corridor,
    window: Window,
    unit_id: int | None = None,
    method: Method = "auto",
) -> list[tuple[int, Track]]:
    """(unit id, track) per unit: the SQL path on PostgreSQL, NumPy otherwise (or as asked)."""
    if method == "auto":
        # The in-database path gives the same answers (tests/test_coverage_parity.py) but is
        # slower today when most fixes lie on the route (bench/coverage.py), so NumPy it is.
        method = "numpy"
    if method == "sql":
        return sql_unit_tracks(session, corridor, window, unit_id)
    return numpy_unit_tracks(session, corridor, window, unit_id)


def route_fixes(
    session: Session, corridor: Corridor, window: Window, method: Method = "auto"
) -> list[Track]:
    """Coverage tracks of every unit for a route in the window."""
    return [track for _, track in unit_tracks(session, corridor, window, method=method)]


def check_segments(corridor: Corridor, segment_m: float, limit: int = 100_000) -> None:
    """InvalidInput when segment_m cuts the route into more than `limit` segments."""
    if corridor.length_m / segment_m > limit:
        raise InvalidInput(
            f"segment_m={segment_m} cuts this {corridor.length_m:.0f} m route into more than "
            f"{limit} segments"
        )


def stored_route_coverage(
    session: Session,
    corridor: Corridor,
    window: Window,
    segment_m: float,
    max_gap_s: float,
    method: Method = "auto",
) -> Coverage:
    """Coverage of a patrol route by the stored fixes of the window."""
    check_segments(corridor, segment_m)
    return route_coverage(
        corridor.length_m,
        route_fixes(session, corridor, window, method),
        window.start.timestamp(),
        window.end.timestamp(),
        closed=corridor.closed,
        segment_m=segment_m,
        max_gap_s=max_gap_s,
    )
