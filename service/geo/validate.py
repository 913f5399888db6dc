"""Geometry validation with messages that name the problem."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry

from service.errors import InvalidGeometry

MAX_RADIUS_M = 50_000.0


def _fmt(value: float) -> str:
    return repr(float(value))


def check_coordinates(geom: BaseGeometry) -> None:
    """Raise InvalidGeometry unless every coordinate is a finite WGS84 lon/lat."""
    coords = shapely.get_coordinates(geom)
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


def validate_line(geom: BaseGeometry) -> LineString:
    """A 2D LineString with at least two distinct points, or InvalidGeometry."""
    if not isinstance(geom, LineString):
        raise InvalidGeometry(f"expected a LineString, got {geom.geom_type}")
    if geom.is_empty:
        raise InvalidGeometry("line is empty")
    check_coordinates(geom)
    line = shapely.force_2d(geom)
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
    if not isinstance(geom, Polygon):
        raise InvalidGeometry(f"expected a Polygon, got {geom.geom_type}")
    if geom.is_empty:
        raise InvalidGeometry("polygon is empty")
    check_coordinates(geom)
    poly = shapely.force_2d(geom)
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
