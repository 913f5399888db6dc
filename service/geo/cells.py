"""A lon/lat grid over a patrol route: each cell listed with the route pieces near it.

A database holding fixes as plain longitude/latitude can find the route near a fix with two
floor() divisions and a hash join against this grid, then measure the fix against a few short
pieces of the route instead of the whole line. The grid is exact for the corridor: every fix
within `corridor_m` (in the route's metric projection) of the route lies in a cell listing the
nearest stretch of route, so measuring against the listed pieces gives the same distance and
chainage as measuring against the whole line.

Per cell, the nearby segments are grouped into *pieces*: runs of consecutive segments. Most
cells list one piece; a cell near two stretches of the same route (a U-turn, a loop passing
close to itself) lists several, and the nearest of them wins (on a tie, the lower chainage, as
in GEOS line_locate_point). A cell whose every point lies within the corridor of its only piece
is marked `inside`, so a fix there is on route without measuring its distance.

The work is bounded whatever the route's shape: when the cells would be too many (a long
route, a narrow corridor, a route folded onto itself), they are made larger until the grid
fits its budget (larger cells stay exact, only fewer of them are `inside`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely import STRtree
from shapely.geometry import LineString

from service.geo.corridor import Corridor

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

# Metres per degree of latitude are 110,574 at the equator and more elsewhere; a UTM metre is
# a ground metre within 0.1 % inside its zone. These bounds turn a metric reach into a degree
# reach that is never too small (the exact test below discards the extra cells).
_M_PER_DEG_LAT = 110_000.0
_M_PER_DEG_LON_EQUATOR = 111_320.0
# Cell edges are straight in the metric projection between projected corners; the true edge
# bends by about cell² · tan(latitude) / 8R (micrometres for street-sized cells). This slack,
# generous up to 84 degrees of latitude, keeps both tests conservative.
_SLACK_M = 0.01
_SLACK_PER_M2 = 2e-7
# Consecutive segments turning back by more than ~177 degrees (a route retracing a dead-end
# street) start a new piece, so no piece runs over itself and the tie rule can apply.
_REVERSAL_COS = -0.999
# Budget of the grid: candidate (cell, route bit) pairs examined, and cells kept. Cells grow
# by this factor until both fit (a 500 km route with a 30 m corridor: ~40,000 cells).
MAX_CANDIDATES = 1_000_000
MAX_CELLS = 40_000
_GROWTH = 1.5


@dataclass(frozen=True)
class RouteGrid:
    """Grid cells near a route with their pieces, as parallel arrays (one row per cell piece)."""

    lon0: float
    lat0: float
    dlon: float
    dlat: float
    lon_ref: float  # longitudes are taken within 180 degrees of this one (the antimeridian)
    cell_x: IntArray
    cell_y: IntArray
    piece: IntArray  # index into the piece arrays below
    inside: NDArray[np.bool_]  # every point of the cell is on route, measured to this piece
    shared: NDArray[np.bool_]  # the cell lists more than one piece: the nearest one wins
    pieces: list[LineString]  # metric (projected) lines
    piece_start_m: FloatArray  # chainage of each piece's first vertex
    piece_length_m: FloatArray
    most_pieces: int  # the most pieces any one cell lists

    def cells_of(self, lons: FloatArray, lats: FloatArray) -> tuple[IntArray, IntArray]:
        """Cell x, y indices of WGS84 locations (the formula the database query uses)."""
        lons = np.asarray(lons, np.float64)
        lons = lons - 360.0 * np.floor((lons - self.lon_ref + 180.0) / 360.0)
        cx = np.floor((lons - self.lon0) / self.dlon).astype(np.int64)
        cy = np.floor((np.asarray(lats, np.float64) - self.lat0) / self.dlat).astype(np.int64)
        return cx, cy


def default_cell_m(corridor_m: float) -> float:
    """A cell size that keeps most cells inside the corridor and few pieces per cell."""
    return max(corridor_m / 2.0, 5.0)


def route_grid(corridor: Corridor, cell_m: float | None = None) -> RouteGrid:
    """The grid of cells within the corridor of a route, each with its nearby route pieces."""
    cell_m = default_cell_m(corridor.corridor_m) if cell_m is None else float(cell_m)
    if not (math.isfinite(cell_m) and cell_m > 0.0):
        raise ValueError(f"cell_m must be positive, got {cell_m!r}")
    reach = corridor.corridor_m
    projection = corridor.projection

    metric = shapely.get_coordinates(corridor.metric_line)
    delta = np.diff(metric, axis=0)
    seg_len = np.hypot(delta[:, 0], delta[:, 1])
    seg_start = np.concatenate(([0.0], np.cumsum(seg_len)[:-1]))
    # Zero-length segments add nothing (their point ends a neighbour); without them, segments
    # adjacent in this list are still joined end to start.
    keep = np.flatnonzero(seg_len > 0.0)
    a, d = metric[:-1][keep], delta[keep]
    seg_len, seg_start = seg_len[keep], seg_start[keep]

    lonlat = shapely.get_coordinates(corridor.line)
    lon_ref = float(np.mean(lonlat[:, 0]))
    max_abs_lat = min(float(np.abs(lonlat[:, 1]).max()) + 1.0, 89.0)
    m_per_deg_lon = _M_PER_DEG_LON_EQUATOR * max(math.cos(math.radians(max_abs_lat)), 0.01)
    while True:
        slack = _SLACK_M + _SLACK_PER_M2 * cell_m * cell_m
        cells = _candidate_cells(
            corridor, a, d, seg_len, lonlat, cell_m, reach + slack, m_per_deg_lon
        )
        if cells is not None:
            break
        cell_m *= _GROWTH
    lon0, lat0, dlon, dlat, cx, cy = cells

    # The exact test: a cell (its corners projected) within the corridor of a segment.
    corner_x, corner_y = [], []
    for ox, oy in ((0, 0), (1, 0), (1, 1), (0, 1)):
        x, y = projection.xy(lon0 + (cx + ox) * dlon, lat0 + (cy + oy) * dlat)
        corner_x.append(x)
        corner_y.append(y)
    quads = shapely.polygons(np.stack((np.stack(corner_x, 1), np.stack(corner_y, 1)), axis=2))
    segments = shapely.linestrings(np.stack((a, a + d), axis=1))
    cell, seg = STRtree(segments).query(quads, predicate="dwithin", distance=reach + slack)
    order = np.lexsort((seg, cell))
    cell, seg = cell[order], seg[order]

    # Runs of consecutive segments per cell become pieces, shared by the cells listing them.
    turn = (d[:-1] * d[1:]).sum(axis=1) / (seg_len[:-1] * seg_len[1:])
    reverses = np.r_[turn < _REVERSAL_COS, False]  # segment k turns back into k + 1
    new_run = np.ones(cell.size, dtype=np.bool_)
    new_run[1:] = (cell[1:] != cell[:-1]) | (seg[1:] != seg[:-1] + 1) | reverses[seg[:-1]]
    first = np.flatnonzero(new_run)
    last = np.r_[first[1:], cell.size] - 1
    run_cell, run_s0, run_s1 = cell[first], seg[first], seg[last]
    spans, piece = np.unique(np.column_stack((run_s0, run_s1)), axis=0, return_inverse=True)
    piece = piece.ravel()
    pieces = [LineString(np.vstack((a[s0 : s1 + 1], a[s1] + d[s1]))) for s0, s1 in spans.tolist()]
    cumulative = np.concatenate(([0.0], np.cumsum(seg_len)))
    piece_start = seg_start[spans[:, 0]]
    piece_length = cumulative[spans[:, 1] + 1] - cumulative[spans[:, 0]]

    runs_per_cell = np.bincount(run_cell, minlength=quads.size)
    shared = runs_per_cell[run_cell] > 1
    # A cell is inside when its four corners are within the corridor of one segment of its
    # piece: the distance to a segment is convex, so then the whole cell is. (Cells inside
    # only through several segments, round a bend, are left to the exact measurement; a
    # buffer of each piece would find those too, but costs minutes for a folded route.)
    corners = np.stack((np.stack(corner_x), np.stack(corner_y)), axis=2)  # (4, cells, 2)
    within = _max_corner_distance(corners[:, cell], a[seg], d[seg]) <= reach - slack
    inside = ~shared & np.logical_or.reduceat(within, first)
    return RouteGrid(
        lon0=lon0,
        lat0=lat0,
        lon_ref=lon_ref,
        dlon=dlon,
        dlat=dlat,
        cell_x=cx[run_cell].astype(np.int64),
        cell_y=cy[run_cell].astype(np.int64),
        piece=piece.astype(np.int64),
        inside=np.asarray(inside, dtype=np.bool_),
        shared=np.asarray(shared, dtype=np.bool_),
        pieces=pieces,
        piece_start_m=piece_start.astype(np.float64),
        piece_length_m=piece_length.astype(np.float64),
        most_pieces=int(runs_per_cell.max(initial=0)),
    )


def _max_corner_distance(corners: FloatArray, a: FloatArray, d: FloatArray) -> FloatArray:
    """Largest distance from the corners (4, n, 2) of each cell to its segment a -> a + d."""
    t = np.clip(((corners - a) * d).sum(axis=2) / (d * d).sum(axis=1), 0.0, 1.0)
    gap = corners - a - t[:, :, None] * d
    return np.sqrt((gap * gap).sum(axis=2).max(axis=0))


def _candidate_cells(
    corridor: Corridor,
    a: FloatArray,
    d: FloatArray,
    seg_len: FloatArray,
    lonlat: FloatArray,
    cell_m: float,
    reach: float,
    m_per_deg_lon: float,
) -> tuple[float, float, float, float, IntArray, IntArray] | None:
    """Grid origin, cell size in degrees and the cells near the route; None over budget."""
    # Candidate cells: around each segment, cut into cell-sized bits so a long diagonal does
    # not claim its whole bounding box.
    bits = np.maximum(np.ceil(seg_len / cell_m), 1.0).astype(np.int64)
    # At least 16 candidates per segment: with cells larger than the route, each of its
    # segments is one bit touching at most 4 x 4 cells, so the loop always ends.
    budget = max(MAX_CANDIDATES, 16 * seg_len.size)
    if bits.sum() > budget:
        return None
    dlat = cell_m / _M_PER_DEG_LAT
    dlon = cell_m / m_per_deg_lon
    pad_lat = 1.1 * reach / _M_PER_DEG_LAT + dlat
    pad_lon = 1.1 * reach / m_per_deg_lon + dlon
    lon0 = math.floor((float(lonlat[:, 0].min()) - 2 * pad_lon) / dlon) * dlon
    lat0 = math.floor((float(lonlat[:, 1].min()) - 2 * pad_lat) / dlat) * dlat
    owner = np.repeat(np.arange(seg_len.size), bits)
    j = np.arange(owner.size) - np.repeat(np.cumsum(bits) - bits, bits)
    p0 = a[owner] + (j / bits[owner])[:, None] * d[owner]
    p1 = a[owner] + ((j + 1) / bits[owner])[:, None] * d[owner]
    lon_a, lat_a = corridor.projection.lonlat(p0[:, 0], p0[:, 1])
    lon_b, lat_b = corridor.projection.lonlat(p1[:, 0], p1[:, 1])
    lo_x = np.floor((np.minimum(lon_a, lon_b) - pad_lon - lon0) / dlon).astype(np.int64)
    hi_x = np.floor((np.maximum(lon_a, lon_b) + pad_lon - lon0) / dlon).astype(np.int64)
    lo_y = np.floor((np.minimum(lat_a, lat_b) - pad_lat - lat0) / dlat).astype(np.int64)
    hi_y = np.floor((np.maximum(lat_a, lat_b) + pad_lat - lat0) / dlat).astype(np.int64)
    span_y = hi_y - lo_y + 1
    counts = (hi_x - lo_x + 1) * span_y
    if counts.sum() > budget:
        return None
    bit = np.repeat(np.arange(counts.size), counts)
    k = np.arange(bit.size) - np.repeat(np.cumsum(counts) - counts, counts)
    ny = int(hi_y.max()) + 1
    keys = np.unique((lo_x[bit] + k // span_y[bit]) * ny + lo_y[bit] + k % span_y[bit])
    if keys.size > MAX_CELLS:
        return None
    return lon0, lat0, dlon, dlat, keys // ny, keys % ny
