"""Patrol-route corridors: distance to and position along a route centerline, in metres."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import LineString, Point, Polygon

from service.errors import InvalidInput
from service.geo.nearest import PolylineLocator
from service.geo.projection import LocalProjection
from service.geo.segments import segment_edges
from service.geo.validate import validate_line, validate_radius

# Round caps and joins of a buffer are polygons inscribed in the true circle; widening the
# buffer by 1/cos(half the vertex angle) makes `area` cover every point within corridor_m, so it
# never wrongly excludes an on-route ping when used as a spatial-index pre-filter.
_QUAD_SEGS = 8
_BUFFER_WIDEN = 1.0 / math.cos(math.pi / (4 * _QUAD_SEGS))
_MIN_REACH_M = 25.0
# The area is the union of buffers of runs of at most this many segments: one GEOS buffer of
# a line crossing or retracing itself thousands of times takes quadratic time and memory (a
# minute and gigabytes for a route walking back and forth); short runs keep each buffer cheap.
# Vertices are first snapped to a grid of 1/_AREA_SNAP of the corridor width, and the buffer
# widened by as much, so that a stretch retraced many times is buffered once.
_AREA_RUN = 8
_AREA_SNAP = 32.0
# Maps draw the area: a more detailed outline (a long, densely winding route) is simplified
# until it has at most this many vertices.
_AREA_VERTICES = 20_000
# Edges of the metric bounding box are densified to this many points on the way to WGS84.
_BOX_POINTS = 64
_BOX_MARGIN_DEG = 1e-6


@dataclass(frozen=True)
class RouteCheck:
    """Where a location lies relative to a route: distance, inside the corridor, chainage."""

    distance_m: float
    on_route: bool
    chainage_m: float


class Corridor:
    """A patrol route centerline (WGS84) with a corridor of corridor_m metres either side."""

    def __init__(self, line: LineString, corridor_m: float, closed: bool = False) -> None:
        line = validate_line(line)
        self._corridor_m = validate_radius(corridor_m, "corridor_m")
        coords = shapely.get_coordinates(line)
        if closed and not np.array_equal(coords[0], coords[-1]):
            line = LineString(np.vstack((coords, coords[:1])))
        self._line = line
        self._closed = closed
        self._projection = LocalProjection.for_geometry(line)
        self._metric = self._projection.to_metric(line)
        # The locator's fast path must reach at least the corridor for on_route to be exact.
        reach = max(self._corridor_m, _MIN_REACH_M)
        self._locator = PolylineLocator(shapely.get_coordinates(self._metric), reach)
        self._length_m = float(self._metric.length)

    @property
    def line(self) -> LineString:
        """The centerline in WGS84 (ending at its start point when closed)."""
        return self._line

    @property
    def closed(self) -> bool:
        """Whether the route is a loop."""
        return self._closed

    @property
    def corridor_m(self) -> float:
        """Corridor half-width: a ping within this distance of the centerline is on route."""
        return self._corridor_m

    @property
    def length_m(self) -> float:
        """Centerline length in metres."""
        return self._length_m

    @property
    def projection(self) -> LocalProjection:
        """The metric projection all distances are measured in."""
        return self._projection

    @property
    def metric_line(self) -> LineString:
        """The centerline in the projection's metres."""
        return self._metric

    @cached_property
    def area(self) -> Polygon:
        """The corridor polygon in WGS84 (up to 5 % wider than the corridor), for maps.

        An outline of more than _AREA_VERTICES vertices is simplified to fit (by a few metres
        for the longest, most winding routes allowed).
        """
        width = self._corridor_m * _BUFFER_WIDEN
        grid = width / _AREA_SNAP
        coords = shapely.get_coordinates(self._metric)
        coords = np.round((coords - coords[0]) / grid) * grid + coords[0]
        vertices, run = _distinct_runs(coords, _AREA_RUN)
        runs = shapely.linestrings(vertices, indices=run)
        reach = width + grid * math.sqrt(0.5)  # snapping moved vertices by at most this
        merged = shapely.union_all(shapely.buffer(runs, reach, quad_segs=_QUAD_SEGS))
        # Less than the widening: the outline still covers the corridor, minus snapping steps.
        merged = shapely.simplify(merged, grid / 2.0, preserve_topology=True)
        tolerance = grid
        while shapely.get_num_coordinates(merged) > _AREA_VERTICES:
            merged = shapely.simplify(merged, tolerance, preserve_topology=True)
            tolerance *= 2.0
        return self._projection.to_wgs84(merged)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """WGS84 (min lon, min lat, max lon, max lat) covering the corridor, for indexes."""
        minx, miny, maxx, maxy = self._metric.bounds
        reach = self._corridor_m * _BUFFER_WIDEN
        box = shapely.box(minx - reach, miny - reach, maxx + reach, maxy + reach)
        # Straight in metres, the box's edges bend a little in lon/lat: densified, their
        # WGS84 bounds are those of the whole box.
        step = max(maxx - minx, maxy - miny, reach) / _BOX_POINTS
        lon0, lat0, lon1, lat1 = self._projection.to_wgs84(shapely.segmentize(box, step)).bounds
        m = _BOX_MARGIN_DEG
        return lon0 - m, lat0 - m, lon1 + m, lat1 + m

    def check(self, lon: float, lat: float) -> RouteCheck:
        """Distance to the centerline, corridor membership and chainage of one location."""
        distance, on_route, chainage = self.check_many(np.array([lon]), np.array([lat]))
        return RouteCheck(float(distance[0]), bool(on_route[0]), float(chainage[0]))

    def check_many(
        self, lons: ArrayLike, lats: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
        """Vectorised check: distance (m), on_route, chainage (m) arrays for many locations."""
        lons, lats = np.broadcast_arrays(np.asarray(lons, np.float64), np.asarray(lats, np.float64))
        x, y = self._projection.xy(lons.ravel(), lats.ravel())
        distance, chainage = self._locator.locate(x, y)
        # Unprojectable input gives NaN, which compares False: such pings are never on route.
        on_route = distance <= self._corridor_m
        shape = lons.shape
        return distance.reshape(shape), on_route.reshape(shape), chainage.reshape(shape)

    def locate_on_route(
        self, lons: ArrayLike, lats: ArrayLike
    ) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """on_route and chainage (NaN when off route) arrays; faster than check_many."""
        # Same on_route and chainage as check_many, but pings beyond the corridor are never
        # measured exactly, which is most of the cost when few pings are near this route.
        lons, lats = np.broadcast_arrays(np.asarray(lons, np.float64), np.asarray(lats, np.float64))
        x, y = self._projection.xy(lons.ravel(), lats.ravel())
        distance, chainage = self._locator.locate_near(x, y)
        on_route = distance <= self._corridor_m
        chainage[~on_route] = np.nan
        return on_route.reshape(lons.shape), chainage.reshape(lons.shape)

    def segment_bounds(self, segment_m: float) -> NDArray[np.float64]:
        """Start/end chainage (m) of consecutive segment_m pieces, shape (n, 2)."""
        return segment_edges(self._length_m, segment_m)

    def segment_lines(self, segment_m: float) -> list[LineString]:
        """The WGS84 centerline piece of each segment, in segment order."""
        # All pieces at once: the vertices strictly inside each piece's chainage range, between
        # the points interpolated at its ends (linear in the number of vertices and pieces).
        bounds = self.segment_bounds(segment_m)
        coords = shapely.get_coordinates(self._metric)
        steps = np.hypot(*np.diff(coords, axis=0).T)
        chainage = np.concatenate(([0.0], np.cumsum(steps)))
        ends_x = np.interp(bounds, chainage, coords[:, 0])
        ends_y = np.interp(bounds, chainage, coords[:, 1])
        first = np.searchsorted(chainage, bounds[:, 0], side="right")
        stop = np.maximum(np.searchsorted(chainage, bounds[:, 1], side="left"), first)
        inner = stop - first
        sizes = inner + 2
        piece = np.repeat(np.arange(len(bounds)), sizes)
        at = _ranges(sizes)  # position within the piece
        vertex = np.repeat(first, sizes) + at - 1
        x = coords[np.clip(vertex, 0, len(coords) - 1), 0]
        y = coords[np.clip(vertex, 0, len(coords) - 1), 1]
        head, tail = at == 0, at == np.repeat(sizes - 1, sizes)
        x[head], y[head] = ends_x[:, 0], ends_y[:, 0]
        x[tail], y[tail] = ends_x[:, 1], ends_y[:, 1]
        lon, lat = self._projection.lonlat(x, y)
        lines = shapely.linestrings(np.column_stack((lon, lat)), indices=piece)
        return list(lines)

    def point_at(self, chainage_m: float) -> tuple[float, float]:
        """WGS84 (lon, lat) at a chainage; wraps round a loop, clamps to the ends otherwise."""
        if not math.isfinite(chainage_m):
            raise InvalidInput(f"chainage_m must be finite, got {chainage_m!r}")
        if self._closed:
            chainage_m %= self._length_m
        else:
            chainage_m = min(max(chainage_m, 0.0), self._length_m)
        point: Point = self._metric.interpolate(chainage_m)
        lon, lat = self._projection.lonlat(point.x, point.y)
        return float(lon), float(lat)

    def __repr__(self) -> str:
        return (
            f"Corridor(length_m={self._length_m:.1f}, corridor_m={self._corridor_m}, "
            f"closed={self._closed})"
        )


def _ranges(sizes: NDArray[np.int64]) -> NDArray[np.int64]:
    """0, 1, ..., size - 1 for each size, concatenated."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _distinct_runs(
    coords: NDArray[np.float64], run: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Vertices and run indices of the line's first passes, cut into runs of `run` segments.

    A segment repeating an earlier one (either way) or of zero length is left out.
    """
    pairs = np.hstack((coords[:-1], coords[1:]))
    flip = (pairs[:, 0] > pairs[:, 2]) | (
        (pairs[:, 0] == pairs[:, 2]) & (pairs[:, 1] > pairs[:, 3])
    )
    pairs[flip] = pairs[flip][:, [2, 3, 0, 1]]
    _, first = np.unique(pairs, axis=0, return_index=True)
    keep = np.zeros(len(pairs), dtype=np.bool_)
    keep[first] = True
    keep &= (pairs[:, :2] != pairs[:, 2:]).any(axis=1)
    seg = np.flatnonzero(keep)
    if not seg.size:  # every vertex snapped onto one point
        return coords[:2], np.zeros(2, dtype=np.int64)
    new = (seg % run == 0) | np.r_[True, np.diff(seg) != 1]
    owner = np.cumsum(new) - 1
    last = np.r_[new[1:], True]
    # Each run: the start of each of its segments, then the end of its last one.
    vertex = np.concatenate((seg, seg[last] + 1))
    index = np.concatenate((owner, owner[last]))
    order = np.lexsort((vertex, index))
    return coords[vertex[order]], index[order]
