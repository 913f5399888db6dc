"""Geometry validation with messages that name the problem.

GeoJSON positions are checked against `GeometryLimits` (how many positions, how far a shape
extends, how long a route is) before any Shapely object is built, so a shape too large to
handle is refused in time proportional to its size, and every later step has bounded work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Geod
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from service.errors import InvalidGeometry, InvalidInput, PayloadTooLarge

G = TypeVar("G", LineString, Polygon)

MAX_RADIUS_M = 50_000.0
GEOD = Geod(ellps="WGS84")

Positions = Sequence[Sequence[float]]


@dataclass(frozen=True)
class GeometryLimits:
    """The most work one patrol route or geofence may cause.

    Messages name a limit as `env_prefix` + its field name, upper-cased (how it is configured).
    """

    max_geometry_vertices: int
    max_route_length_km: float
    max_extent_km: float
    max_corridor_m: float
    max_radius_m: float
    max_hysteresis_m: float
    env_prefix: str = ""

    def setting(self, name: str) -> str:
        """The configuration name of the limit `name`, e.g. PATROLI_MAX_CORRIDOR_M."""
        return f"{self.env_prefix}{name}".upper()


def _fmt(value: float) -> str:
    return repr(float(value))


def check_coordinates(geom: BaseGeometry) -> None:
    """Raise InvalidGeometry unless every coordinate is a finite WGS84 lon/lat."""
    check_lonlat(shapely.get_coordinates(geom))


def check_lonlat(coords: NDArray[np.float64]) -> None:
    """Raise InvalidGeometry unless every (lon, lat) row is finite and in WGS84 range."""
    if coords.size == 0:
        return
    finite = np.isfinite(coords)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        lon, lat = coords[row]
        raise InvalidGeometry(f"coordinate ({_fmt(lon)}, {_fmt(lat)}) is not finite")
    lons, lats = coords[:, 0], coords[:, 1]
    bad_lon = np.flatnonzero(np.abs(lons) > 180.0)
    if bad_lon.size:
        raise InvalidGeometry(f"longitude {_fmt(lons[bad_lon[0]])} out of range [-180, 180]")
    bad_lat = np.flatnonzero(np.abs(lats) > 90.0)
    if bad_lat.size:
        raise InvalidGeometry(f"latitude {_fmt(lats[bad_lat[0]])} out of range [-90, 90]")


def _flat(geom: BaseGeometry, kind: type[G], name: str) -> G:
    # The geometry as `kind`, non-empty, in range and 2D.
    if not isinstance(geom, kind):
        raise InvalidGeometry(f"expected a {kind.__name__}, got {geom.geom_type}")
    if geom.is_empty:
        raise InvalidGeometry(f"{name} is empty")
    check_coordinates(geom)
    return shapely.force_2d(geom)


def validate_line(geom: BaseGeometry) -> LineString:
    """A 2D LineString with at least two distinct points, or InvalidGeometry."""
    line = _flat(geom, LineString, "line")
    # Self-crossing is deliberately allowed: patrol routes legitimately cross themselves.
    distinct = np.unique(shapely.get_coordinates(line), axis=0)
    if len(distinct) < 2 or line.length == 0.0:
        raise InvalidGeometry("line needs at least 2 distinct points")
    return line


def check_ring_closed(coords: Sequence[Sequence[float]], name: str = "polygon ring") -> None:
    """Raise InvalidGeometry unless raw ring positions are closed and at least 4 long."""
    if len(coords) < 4:
        raise InvalidGeometry(f"{name} has {len(coords)} positions; a ring needs at least 4")
    # Shapely silently closes open rings, so closure must be checked on the raw positions.
    first, last = [float(v) for v in coords[0]], [float(v) for v in coords[-1]]
    if first != last:
        raise InvalidGeometry(
            f"{name} is not closed: first point {first} differs from last point {last}"
        )


def validate_polygon(geom: BaseGeometry) -> Polygon:
    """A simple, non-degenerate 2D Polygon (holes allowed), or InvalidGeometry."""
    poly = _flat(geom, Polygon, "polygon")
    if poly.is_valid:
        if poly.area == 0.0:
            raise InvalidGeometry("polygon has zero area")
        return poly
    # A bow-tie's signed area can cancel to zero, so "zero area" is only reported when even
    # the repaired shape encloses nothing; otherwise GEOS's reason names the crossing.
    if shapely.make_valid(poly).area == 0.0:
        raise InvalidGeometry("polygon has zero area")
    raise InvalidGeometry(f"polygon is invalid: {shapely.is_valid_reason(poly)}")


def validate_radius(radius_m: float, name: str = "radius_m") -> float:
    """The distance as a float if it is in (0, 50 000] metres, else InvalidGeometry."""
    try:
        value = float(radius_m)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0.0:
        raise InvalidGeometry(f"{name} must be a positive number of metres, got {radius_m!r}")
    if value > MAX_RADIUS_M:
        raise InvalidGeometry(f"{name} {value!r} exceeds the maximum of {MAX_RADIUS_M:.0f} m")
    return value


def check_vertex_count(count: int, what: str, limits: GeometryLimits) -> None:
    """PayloadTooLarge when a geometry has more positions than allowed."""
    limit = limits.max_geometry_vertices
    if count > limit:
        raise PayloadTooLarge(
            f"the {what} has {count} positions; at most {limit} are allowed "
            f"({limits.setting('max_geometry_vertices')})"
        )


def lonlat_array(positions: Positions, what: str) -> NDArray[np.float64]:
    """GeoJSON positions as an (n, 2) lon/lat array (altitudes dropped), or InvalidGeometry."""
    sizes = {len(p) for p in positions}
    if len(sizes) > 1:
        first = len(positions[0])
        at = next(i for i, p in enumerate(positions) if len(p) != first)
        raise InvalidGeometry(
            f"{what} mixes 2D and 3D positions: position 0 has {first} values, "
            f"position {at} has {len(positions[at])}"
        )
    if not sizes:
        raise InvalidGeometry(f"{what} has no positions")
    (size,) = sizes
    if size not in (2, 3):
        raise InvalidGeometry(
            f"{what}: a position is [lon, lat] or [lon, lat, alt], not {size} values"
        )
    try:
        coords = np.asarray(positions, dtype=np.float64)[:, :2]
    except (TypeError, ValueError, OverflowError):
        raise InvalidGeometry(f"{what}: every position must be numbers") from None
    check_lonlat(coords)
    return np.ascontiguousarray(coords)


def _parallel_m_per_rad(lat: float) -> float:
    """Radius of the parallel at `lat` on the WGS84 ellipsoid (metres per radian of lon)."""
    phi = math.radians(lat)
    return GEOD.a * math.cos(phi) / math.sqrt(1.0 - GEOD.es * math.sin(phi) ** 2)


def extent_km(coords: NDArray[np.float64]) -> tuple[float, float]:
    """East-west (along the bounding box's widest parallel) and north-south extent in km.

    Longitudes are taken as given, as every edge is a straight line in lon/lat: a line from
    179.9 to -179.9 runs the long way round.
    """
    lon_min, lat_min = coords.min(axis=0)
    lon_max, lat_max = coords.max(axis=0)
    widest = 0.0 if lat_min <= 0.0 <= lat_max else min(abs(lat_min), abs(lat_max))
    width = math.radians(lon_max - lon_min) * _parallel_m_per_rad(widest)
    _, _, height = GEOD.inv(0.0, float(lat_min), 0.0, float(lat_max))
    return width / 1000.0, float(height) / 1000.0


def check_extent(coords: NDArray[np.float64], what: str, limits: GeometryLimits) -> None:
    """InvalidGeometry when a shape extends farther east-west or north-south than allowed."""
    limit = limits.max_extent_km
    width, height = extent_km(coords)
    for size, direction in ((width, "east-west"), (height, "north-south")):
        if size > limit:
            raise InvalidGeometry(
                f"the {what} extends {size:.1f} km {direction}; at most {limit:g} km is "
                f"allowed ({limits.setting('max_extent_km')})"
            )


def route_length_km(coords: NDArray[np.float64], closed: bool = False) -> float:
    """Geodesic length of a route's positions in km (back to the start when closed)."""
    if closed:
        coords = np.vstack((coords, coords[:1]))
    return float(GEOD.line_length(coords[:, 0], coords[:, 1])) / 1000.0


def check_route_length(coords: NDArray[np.float64], closed: bool, limits: GeometryLimits) -> None:
    """InvalidGeometry when a route (closed: with its way back to the start) is too long."""
    limit = limits.max_route_length_km
    length = route_length_km(coords, closed)
    if length > limit:
        raise InvalidGeometry(
            f"the patrol route is {length:.1f} km long; at most {limit:g} km is allowed "
            f"({limits.setting('max_route_length_km')})"
        )


def route_line(positions: Positions, closed: bool, limits: GeometryLimits) -> LineString:
    """A patrol route's GeoJSON positions as a validated 2D LineString within the limits."""
    check_vertex_count(len(positions), "patrol route", limits)
    coords = lonlat_array(positions, "the patrol route")
    check_extent(coords, "patrol route", limits)
    check_route_length(coords, closed, limits)
    return validate_line(LineString(coords))


def fence_polygon(rings: Sequence[Positions], limits: GeometryLimits) -> Polygon:
    """A geofence's GeoJSON polygon rings as a validated 2D Polygon within the limits."""
    check_vertex_count(sum(len(ring) for ring in rings), "geofence", limits)
    if not rings:
        raise InvalidGeometry("polygon is empty")
    arrays = []
    for n, ring in enumerate(rings):
        name = "polygon ring" if n == 0 else f"hole {n}"
        coords = lonlat_array(ring, f"the {name}")
        check_ring_closed(coords.tolist(), name)
        arrays.append(coords)
    check_extent(np.vstack(arrays), "geofence", limits)
    return validate_polygon(Polygon(arrays[0], arrays[1:]))


def fence_point(position: Sequence[float]) -> Point:
    """A circle geofence's GeoJSON centre as a validated 2D Point."""
    (lon, lat) = lonlat_array([position], "the circle centre")[0]
    return Point(lon, lat)


def check_at_most(value: float, name: str, limit_name: str, limits: GeometryLimits) -> None:
    """InvalidInput when a distance property (metres) exceeds its configured limit."""
    limit = float(getattr(limits, limit_name))
    if value > limit:
        raise InvalidInput(
            f"{name} {value:g} m exceeds the limit of {limit:g} m ({limits.setting(limit_name)})"
        )
