"""Geofences: polygons or circles, with containment and signed boundary distance in metres."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import cached_property

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import Geod
from shapely.geometry import Point, Polygon

from service.geo.nearest import PolylineLocator
from service.geo.projection import LocalProjection
from service.geo.validate import check_coordinates, validate_polygon, validate_radius

GEOD = Geod(ellps="WGS84")

CIRCLE_VERTICES = 72
_OUTLINE_MARGIN = 5e-4
_MIN_M_PER_DEG_LAT = 110_000.0
_MIN_M_PER_DEG_LON = 111_000.0
_BOX_MAX_LAT = 80.0  # nearer the poles, no longitude box (every fix is measured)
_BOX_MAX_RADIUS_M = 100_000.0  # above the largest radius allowed, kept as a guard
_RING_REACH_M = 50.0
_DENSIFY_DEG = 0.001
# Densified boundaries keep at most this many vertices: beyond, the step grows (only for
# boundaries of hundreds of thousands of km, folded into the allowed extent).
_MAX_DENSE_VERTICES = 100_000


def _arrays(lons: ArrayLike, lats: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lon_arr, lat_arr = np.broadcast_arrays(
        np.asarray(lons, dtype=np.float64), np.asarray(lats, dtype=np.float64)
    )
    return lon_arr, lat_arr


class Fence(ABC):
    """A geofence; build one with Fence.polygon or Fence.circle."""

    kind: str

    @classmethod
    def polygon(cls, poly: Polygon) -> PolygonFence:
        """A fence bounded by a WGS84 polygon (holes allowed); the boundary counts as inside."""
        return PolygonFence(poly)

    @classmethod
    def circle(cls, lon: float, lat: float, radius_m: float) -> CircleFence:
        """A fence of all points within radius_m metres (geodesic) of a WGS84 centre."""
        return CircleFence(lon, lat, radius_m)

    @abstractmethod
    def contains_many(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.bool_]:
        """Whether each location is inside the fence (boundary inclusive; non-finite: False)."""

    @abstractmethod
    def boundary_distance_many(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.float64]:
        """Signed metres from each location to the boundary: negative inside, positive outside."""

    @property
    @abstractmethod
    def outline(self) -> Polygon:
        """The fence as a WGS84 polygon, for maps and spatial indexes."""

    @property
    @abstractmethod
    def centroid(self) -> tuple[float, float]:
        """The fence's centre as (lon, lat)."""

    def contains(self, lon: float, lat: float) -> bool:
        """Whether one location is inside the fence (boundary inclusive)."""
        return bool(self.contains_many(np.array([lon]), np.array([lat]))[0])

    def boundary_distance_m(self, lon: float, lat: float) -> float:
        """Signed metres from one location to the boundary: negative inside, positive outside."""
        return float(self.boundary_distance_many(np.array([lon]), np.array([lat]))[0])


class PolygonFence(Fence):
    """A geofence bounded by a WGS84 polygon."""

    kind = "polygon"

    def __init__(self, poly: Polygon) -> None:
        self._poly = validate_polygon(poly)
        shapely.prepare(self._poly)
        self._projection = LocalProjection.for_geometry(self._poly)
        # Edges are straight in lon/lat (as GeoJSON and contains() treat them) but curve slightly
        # in UTM; densifying first keeps metric distances to that same boundary (~1 mm at 70°N).
        dense = shapely.segmentize(self._poly, _densify_step(self._poly))
        self._metric = self._projection.to_metric(dense)
        rings = [self._metric.exterior, *self._metric.interiors]
        self._rings = [
            PolylineLocator(shapely.get_coordinates(ring), _RING_REACH_M) for ring in rings
        ]

    def contains_many(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.bool_]:
        """Whether each location is inside the polygon or on its boundary."""
        lon_arr, lat_arr = _arrays(lons, lats)
        # For a point, "intersects" is exactly "covers": interior or boundary.
        return np.asarray(shapely.intersects_xy(self._poly, lon_arr, lat_arr), dtype=np.bool_)

    def boundary_distance_many(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.float64]:
        """Signed metres to the nearest ring (exterior or hole): negative inside."""
        lon_arr, lat_arr = _arrays(lons, lats)
        x, y = self._projection.xy(lon_arr.ravel(), lat_arr.ravel())
        distance = np.min([ring.locate(x, y)[0] for ring in self._rings], axis=0)
        # The sign comes from the same test as contains(), so the two never disagree.
        inside = self.contains_many(lon_arr, lat_arr).ravel()
        return np.where(inside, -distance, distance).reshape(lon_arr.shape)

    @property
    def outline(self) -> Polygon:
        """The polygon itself (WGS84)."""
        return self._poly

    @cached_property
    def centroid(self) -> tuple[float, float]:
        """Area centroid computed in metres, as (lon, lat)."""
        centre = self._metric.centroid
        lon, lat = self._projection.lonlat(centre.x, centre.y)
        return float(lon), float(lat)

    @cached_property
    def area_m2(self) -> float:
        """Area in square metres."""
        return float(self._metric.area)


class CircleFence(Fence):
    """A geofence of all points within a geodesic radius of a centre."""

    kind = "circle"

    def __init__(self, lon: float, lat: float, radius_m: float) -> None:
        check_coordinates(Point(lon, lat))
        self.radius_m = validate_radius(radius_m)
        self.lon = float(lon)
        self.lat = float(lat)

    def _distance(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.float64]:
        lon_arr, lat_arr = _arrays(lons, lats)
        _, _, dist = GEOD.inv(
            np.full(lon_arr.size, self.lon),
            np.full(lat_arr.size, self.lat),
            lon_arr.ravel(),
            lat_arr.ravel(),
        )
        return np.asarray(dist, dtype=np.float64).reshape(lon_arr.shape)

    def contains_many(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.bool_]:
        """Whether each location's geodesic distance to the centre is at most the radius."""
        lon_arr, lat_arr = _arrays(lons, lats)
        near = self._near(lon_arr, lat_arr)
        inside = np.zeros(lon_arr.shape, dtype=np.bool_)
        # NaN distances (invalid input) compare False.
        inside[near] = self._distance(lon_arr[near], lat_arr[near]) <= self.radius_m
        return inside

    def _near(self, lons: NDArray[np.float64], lats: NDArray[np.float64]) -> NDArray[np.bool_]:
        """A cheap box test: False only where the geodesic distance surely exceeds the radius."""
        # A degree of latitude is at least 110,574 m; a degree of longitude at least
        # 111,320 m * cos(latitude) (the parallel's radius is at least the equator's times
        # cos), and a geodesic is never shorter than 99 % of that over a few degrees.
        reach_lat = self.radius_m / _MIN_M_PER_DEG_LAT
        near = np.abs(lats - self.lat) <= reach_lat
        top = abs(self.lat) + reach_lat
        if top < _BOX_MAX_LAT and self.radius_m < _BOX_MAX_RADIUS_M:
            m_per_deg_lon = _MIN_M_PER_DEG_LON * math.cos(math.radians(top)) * 0.99
            dlon = np.abs((lons - self.lon + 180.0) % 360.0 - 180.0)
            near &= dlon <= self.radius_m / m_per_deg_lon
        return near | ~(np.isfinite(lons) & np.isfinite(lats))

    def boundary_distance_many(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.float64]:
        """Geodesic distance to the centre minus the radius."""
        return self._distance(lons, lats) - self.radius_m

    @cached_property
    def outline(self) -> Polygon:
        """A regular polygon whose edges touch the circle from outside, so it covers the circle."""
        # Vertices at radius / cos(pi / n) put each edge's midpoint on the circle: a
        # circumscribed polygon never drops an inside point when used as an index pre-filter.
        # Edges are straight in lon/lat, not in metres, and bow inwards slightly at high
        # latitude; the small extra margin keeps the circle covered up to 88 degrees.
        n = CIRCLE_VERTICES
        azimuths = np.arange(n, dtype=np.float64) * (360.0 / n)
        reach = self.radius_m / math.cos(math.pi / n) * (1.0 + _OUTLINE_MARGIN)
        lons, lats, _ = GEOD.fwd(
            np.full(n, self.lon), np.full(n, self.lat), azimuths, np.full(n, reach)
        )
        # Keep vertices on the centre's side of the antimeridian so the ring does not tear.
        lons = self.lon + (np.asarray(lons) - self.lon + 180.0) % 360.0 - 180.0
        ring = np.column_stack((lons, lats))
        # Azimuths run clockwise; reverse for the counter-clockwise exterior GeoJSON expects.
        return Polygon(ring[::-1])

    @property
    def centroid(self) -> tuple[float, float]:
        """The centre as (lon, lat)."""
        return self.lon, self.lat


def _densify_step(poly: Polygon) -> float:
    """_DENSIFY_DEG, or larger if densifying would give more than _MAX_DENSE_VERTICES."""
    rings = [poly.exterior, *poly.interiors]
    edges = np.concatenate(
        [np.hypot(*np.diff(shapely.get_coordinates(ring), axis=0).T) for ring in rings]
    )
    step = _DENSIFY_DEG
    while np.ceil(edges / step).sum() > _MAX_DENSE_VERTICES:
        step *= 2.0
    return step
