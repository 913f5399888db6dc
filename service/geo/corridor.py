"""Patrol-route corridors: distance to and position along a route centerline, in metres."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import substring

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
        """The corridor polygon in WGS84 (slightly generous at curves), for indexes and maps."""
        buffered = self._metric.buffer(self._corridor_m * _BUFFER_WIDEN, quad_segs=_QUAD_SEGS)
        return self._projection.to_wgs84(buffered)

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
        return [
            self._projection.to_wgs84(substring(self._metric, float(start), float(end)))
            for start, end in self.segment_bounds(segment_m)
        ]

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
