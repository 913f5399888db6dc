"""Local metric projections (UTM) for measuring WGS84 geometries in metres."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TypeVar

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from service.errors import InvalidGeometry

G = TypeVar("G", bound=BaseGeometry)
XY = tuple[NDArray[np.float64], NDArray[np.float64]]

WGS84 = CRS.from_epsg(4326)
WEB_MERCATOR = 3857


def utm_zone(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone containing a WGS84 location (326xx north, 327xx south)."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidGeometry(f"cannot pick a UTM zone for non-finite location ({lon}, {lat})")
    # Out-of-range longitudes are wrapped; lon = 180 itself belongs to zone 60 (its west side).
    offset = lon + 180.0 if -180.0 <= lon <= 180.0 else (lon + 180.0) % 360.0
    zone = min(int(offset // 6.0) + 1, 60)
    return (32600 if lat >= 0.0 else 32700) + zone


@lru_cache(maxsize=256)
def _crs(epsg: int) -> CRS:
    return CRS.from_epsg(epsg)


@lru_cache(maxsize=256)
def _transformers(epsg: int) -> tuple[Transformer, Transformer]:
    # Transformer creation costs milliseconds; pyproj >= 3.1 transformers are thread-safe,
    # so one cached pair per zone serves every request thread.
    crs = _crs(epsg)
    forward = Transformer.from_crs(WGS84, crs, always_xy=True)
    inverse = Transformer.from_crs(crs, WGS84, always_xy=True)
    return forward, inverse


def utm_crs(lon: float, lat: float) -> CRS:
    """UTM zone CRS (EPSG 326xx / 327xx) for a WGS84 location."""
    return _crs(utm_zone(lon, lat))


class LocalProjection:
    """A metric UTM projection fitted to a WGS84 location or geometry."""

    __slots__ = ("_forward", "_inverse", "epsg")

    def __init__(self, epsg: int) -> None:
        self.epsg = epsg
        self._forward, self._inverse = _transformers(epsg)

    @classmethod
    def for_point(cls, lon: float, lat: float) -> LocalProjection:
        """Projection in the UTM zone of a WGS84 location."""
        return cls(utm_zone(lon, lat))

    @classmethod
    def for_geometry(cls, geom: BaseGeometry) -> LocalProjection:
        """Projection in the UTM zone of a WGS84 geometry's centroid."""
        if geom is None or geom.is_empty:
            raise InvalidGeometry("cannot project an empty geometry")
        centre = geom.centroid
        if centre.is_empty or not (math.isfinite(centre.x) and math.isfinite(centre.y)):
            # Degenerate geometries (e.g. a zero-length line) have no centroid; any vertex
            # is as good for choosing the zone.
            x, y = shapely.get_coordinates(geom)[0]
            return cls.for_point(float(x), float(y))
        return cls.for_point(centre.x, centre.y)

    @property
    def crs(self) -> CRS:
        """The metric CRS."""
        return _crs(self.epsg)

    def to_metric(self, geom: G) -> G:
        """The WGS84 geometry in this projection's metres."""
        return shapely.transform(geom, self._forward_xy, interleaved=False)

    def to_wgs84(self, geom: G) -> G:
        """The metric geometry back in WGS84 lon/lat."""
        return shapely.transform(geom, self._inverse_xy, interleaved=False)

    def xy(self, lons: ArrayLike, lats: ArrayLike) -> XY:
        """Metric x, y arrays for arrays of WGS84 longitudes and latitudes."""
        return self._forward_xy(
            np.asarray(lons, dtype=np.float64), np.asarray(lats, dtype=np.float64)
        )

    def lonlat(self, x: ArrayLike, y: ArrayLike) -> XY:
        """WGS84 longitude, latitude arrays for arrays of metric x, y."""
        return self._inverse_xy(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))

    def _forward_xy(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> XY:
        px, py = self._forward.transform(x, y)
        return np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)

    def _inverse_xy(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> XY:
        lon, lat = self._inverse.transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def __repr__(self) -> str:
        return f"LocalProjection(epsg={self.epsg})"


def web_mercator(lons: ArrayLike, lats: ArrayLike) -> XY:
    """Web Mercator (EPSG:3857) x, y metres of WGS84 longitudes and latitudes."""
    forward, _ = _transformers(WEB_MERCATOR)
    x, y = forward.transform(np.asarray(lons, dtype=np.float64), np.asarray(lats, dtype=np.float64))
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
