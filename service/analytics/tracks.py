"""Coverage tracks of a patrol route: located in PostGIS on PostgreSQL, in NumPy elsewhere.

On PostgreSQL the database does the linear referencing. A lon/lat grid over the route
(`service.geo.cells`) is passed in as arrays; each analytics-eligible fix of the window finds
its cell with two floor() divisions and a hash join, and only fixes in a cell near the route
are projected (ST_Transform into the route's UTM zone) and measured against the few route
pieces listed for that cell (ST_DWithin for the corridor, ST_LineLocatePoint for the
chainage; on a cell near two stretches of the route the nearer piece wins). So only fixes on
the route, and the off-route fixes right before or after one, leave the database. Those
off-route fixes are kept as markers: two on-route fixes of a unit are linked only when they
are consecutive among all of the unit's fixes, and a marker between them keeps them apart
exactly as the full sequence would. Rows come back through binary COPY straight into NumPy.
A route folded onto itself so much that some cell lists more than `MAX_PIECES_PER_CELL`
pieces (each fix there would be measured against all of them) is located in NumPy instead.
The result feeds the same `route_coverage` as the NumPy path (`Corridor.locate_on_route` on
every fix read by `eligible_fixes`), and both give the same visits
(tests/analytics/test_tracks_parity.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np
import shapely
from sqlalchemy.orm import Session

from service.analytics.positions import Fixes, eligible_fixes
from service.areas.index import route_corridor
from service.errors import InvalidInput
from service.geo.cells import route_grid
from service.geo.corridor import Corridor
from service.geo.coverage import Coverage, Track, route_coverage
from service.quality import EXCLUDED
from service.store.pgcopy import copy_columns, local_settings
from service.window import Window

Method = Literal["auto", "sql", "numpy"]

MAX_PIECES_PER_CELL = 64

_LOCATE_SQL = """
WITH near AS (
    SELECT c.cx, c.cy, c.inside, c.shared, p.start_m, p.length_m,
           ST_GeomFromWKB(decode(p.wkb, 'hex'), %(epsg)s) AS line
    FROM unnest(CAST(%(cell_x)s AS bigint[]), CAST(%(cell_y)s AS bigint[]),
                CAST(%(piece)s AS integer[]), CAST(%(inside)s AS boolean[]),
                CAST(%(shared)s AS boolean[])) AS c(cx, cy, piece, inside, shared)
    JOIN unnest(CAST(%(wkb)s AS text[]), CAST(%(start_m)s AS float8[]),
                CAST(%(length_m)s AS float8[])) WITH ORDINALITY AS p(wkb, start_m, length_m, n)
      ON p.n = c.piece + 1
),
located AS (
    SELECT f.unit_id, f.ts, f.id,
           n.start_m + ST_LineLocatePoint(n.line, ST_Transform(f.geom, %(epsg)s)) * n.length_m
               AS chainage,
           CASE WHEN n.shared THEN ST_Distance(n.line, ST_Transform(f.geom, %(epsg)s)) ELSE 0.0
           END AS distance
    FROM pings AS f
    LEFT JOIN near AS n
      ON n.cx = floor(
             (f.lon - 360.0 * floor((f.lon - %(lon_ref)s + 180.0) / 360.0) - %(lon0)s) / %(dlon)s
         )::bigint
     AND n.cy = floor((f.lat - %(lat0)s) / %(dlat)s)::bigint
     AND (n.inside OR ST_DWithin(n.line, ST_Transform(f.geom, %(epsg)s), %(corridor_m)s))
    WHERE f.ts >= %(start)s AND f.ts < %(end)s AND (f.flags & %(excluded)s) = 0
      AND (CAST(%(unit_id)s AS integer) IS NULL OR f.unit_id = %(unit_id)s)
),
nearest AS (
    SELECT DISTINCT ON (unit_id, ts, id) unit_id, ts, id, chainage
    FROM located
    -- Distances equal to a micrometre are a tie (a route retracing a street): lower chainage.
    ORDER BY unit_id, ts, id, round(distance * 1e6), chainage
),
marked AS (
    SELECT unit_id, ts, id, chainage,
           lag(chainage IS NOT NULL, 1, false) OVER w AS prev_on,
           lead(chainage IS NOT NULL, 1, false) OVER w AS next_on
    FROM nearest
    WINDOW w AS (PARTITION BY unit_id ORDER BY ts, id)
)
SELECT unit_id, date_part('epoch', ts), coalesce(chainage, 'NaN')
FROM marked
WHERE chainage IS NOT NULL OR prev_on OR next_on
ORDER BY unit_id, ts, id
"""

# The cell join must be a hash join (the grid is small, the fixes many), and the sorts of a
# day of fixes should stay in memory; JIT compilation costs more than it saves here.
_PLANNER = {
    "enable_mergejoin": "off",
    "enable_nestloop": "off",
    "jit": "off",
    "work_mem": "64MB",
}


def _array(values: Any) -> str:
    """A PostgreSQL array literal of plain numbers, booleans or hex strings."""
    return "{" + ",".join(map(str, values)) + "}"


@lru_cache(maxsize=64)
def _grid_params(wkb: bytes, corridor_m: float, closed: bool) -> dict[str, Any] | None:
    corridor = route_corridor(shapely.from_wkb(wkb), corridor_m, closed)
    grid = route_grid(corridor)
    if grid.most_pieces > MAX_PIECES_PER_CELL:
        return None
    # Sent as array literals, built once per route: quoting ~10^4 numbers per query would cost
    # more than the query itself on a short window.
    return {
        "epsg": corridor.projection.epsg,
        "corridor_m": corridor.corridor_m,
        "lon0": grid.lon0,
        "lon_ref": grid.lon_ref,
        "lat0": grid.lat0,
        "dlon": grid.dlon,
        "dlat": grid.dlat,
        "cell_x": _array(grid.cell_x.tolist()),
        "cell_y": _array(grid.cell_y.tolist()),
        "piece": _array(grid.piece.tolist()),
        "inside": _array(grid.inside.tolist()),
        "shared": _array(grid.shared.tolist()),
        "wkb": _array(shapely.to_wkb(grid.pieces, hex=True).tolist()),
        "start_m": _array(map(repr, grid.piece_start_m.tolist())),
        "length_m": _array(map(repr, grid.piece_length_m.tolist())),
    }


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
    """(unit id, track) of each unit near the route, located in PostGIS (or NumPy, see above)."""
    grid = _grid_params(shapely.to_wkb(corridor.line), corridor.corridor_m, corridor.closed)
    if grid is None:
        return numpy_unit_tracks(session, corridor, window, unit_id)
    params = dict(grid)
    params.update(start=window.start, end=window.end, excluded=int(EXCLUDED), unit_id=unit_id)
    with local_settings(session, _PLANNER):
        unit, t, chainage = copy_columns(session, _LOCATE_SQL, params, ["i4", "f8", "f8"])
    on_route = np.isfinite(chainage)  # NaN marks an off-route neighbour of an on-route fix
    return _split_units(unit.astype(np.int64), t, chainage, on_route)


def numpy_unit_tracks(
    session: Session, corridor: Corridor, window: Window, unit_id: int | None = None
) -> list[tuple[int, Track]]:
    """(unit id, track) of each unit with fixes in the window, located with Shapely/NumPy."""
    fixes = eligible_fixes(session, window.start, window.end)
    if unit_id is not None:
        keep = fixes.unit_id == unit_id
        fixes.unit_id, fixes.t = fixes.unit_id[keep], fixes.t[keep]
        fixes.lon, fixes.lat = fixes.lon[keep], fixes.lat[keep]
    return located_tracks(corridor, fixes)


def located_tracks(corridor: Corridor, fixes: Fixes) -> list[tuple[int, Track]]:
    """(unit id, track) of each unit in fixes ordered by unit, located with Shapely/NumPy."""
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
    """(unit id, track) per unit: the SQL path on PostgreSQL, NumPy on SQLite (or as asked)."""
    if method == "auto":
        method = "numpy" if session.get_bind().dialect.name == "sqlite" else "sql"
    if method == "sql":
        return sql_unit_tracks(session, corridor, window, unit_id)
    return numpy_unit_tracks(session, corridor, window, unit_id)


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
    unit_id: int | None = None,
) -> Coverage:
    """Coverage of a patrol route by the stored fixes of the window (of one unit, or all)."""
    check_segments(corridor, segment_m)  # before reading the window, not after
    tracks = [track for _, track in unit_tracks(session, corridor, window, unit_id, method)]
    return tracks_coverage(corridor, tracks, window, segment_m, max_gap_s)


def tracks_coverage(
    corridor: Corridor, tracks: list[Track], window: Window, segment_m: float, max_gap_s: float
) -> Coverage:
    """Coverage of a patrol route by located tracks over the window."""
    check_segments(corridor, segment_m)
    return route_coverage(
        corridor.length_m,
        tracks,
        window.start.timestamp(),
        window.end.timestamp(),
        closed=corridor.closed,
        segment_m=segment_m,
        max_gap_s=max_gap_s,
    )
