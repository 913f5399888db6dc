"""UTM zone choice and metric projection, cross-checked against geodesic distances."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pyproj import Geod
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from service.errors import InvalidGeometry
from service.geo.projection import LocalProjection, utm_crs

GEOD = Geod(ellps="WGS84")


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [
        (116.83, -1.27, 32750),  # Balikpapan: zone 50, southern hemisphere
        (106.85, -6.21, 32748),  # Jakarta
        (109.33, 0.0, 32649),  # Pontianak, on the equator: northern zone
        (109.33, -0.001, 32749),  # just south of the equator
        (18.95, 69.65, 32634),  # Tromsø
        (-74.0, 40.7, 32618),  # New York
        (0.0, 51.5, 32631),  # zone 31 starts at 0°
        (-0.1, 51.5, 32630),
        (114.0, -2.0, 32750),  # a zone boundary belongs to the eastern zone
        (-180.0, 10.0, 32601),
        (180.0, -10.0, 32760),
    ],
)
def test_utm_crs_picks_zone_and_hemisphere(lon: float, lat: float, epsg: int) -> None:
    assert utm_crs(lon, lat).to_epsg() == epsg


@pytest.mark.parametrize(("lon", "lat"), [(float("nan"), 0.0), (0.0, float("inf"))])
def test_utm_crs_rejects_non_finite_location(lon: float, lat: float) -> None:
    with pytest.raises(InvalidGeometry, match="non-finite"):
        utm_crs(lon, lat)


@pytest.mark.parametrize(
    ("geom", "epsg"),
    [
        (LineString([(116.80, -1.28), (116.86, -1.25)]), 32750),
        (Polygon([(18.9, 69.6), (19.0, 69.6), (19.0, 69.7), (18.9, 69.6)]), 32634),
        (Point(-74.0, 40.7), 32618),
    ],
)
def test_for_geometry_uses_the_zone_of_the_centroid(geom: BaseGeometry, epsg: int) -> None:
    projection = LocalProjection.for_geometry(geom)
    assert projection.epsg == epsg
    assert projection.crs.to_epsg() == epsg


def test_for_geometry_rejects_empty_geometry() -> None:
    with pytest.raises(InvalidGeometry, match="empty"):
        LocalProjection.for_geometry(LineString())


def test_round_trip_returns_the_original_coordinates() -> None:
    line = LineString([(116.83, -1.27), (116.84, -1.26), (116.85, -1.28)])
    projection = LocalProjection.for_geometry(line)
    metric = projection.to_metric(line)
    assert metric.geom_type == "LineString"
    # Southern-hemisphere UTM northings carry the 10 000 km false northing.
    assert 9_800_000 < metric.coords[0][1] < 10_000_000
    back = projection.to_wgs84(metric)
    np.testing.assert_allclose(np.array(back.coords), np.array(line.coords), atol=1e-9)


def test_xy_is_vectorised_and_matches_to_metric() -> None:
    projection = LocalProjection.for_point(116.83, -1.27)
    lons = np.array([[116.80, 116.83], [116.86, 116.90]])
    lats = np.array([[-1.30, -1.27], [-1.25, -1.20]])
    x, y = projection.xy(lons, lats)
    assert x.shape == y.shape == (2, 2)
    point = projection.to_metric(Point(116.86, -1.25))
    assert x[1, 0] == pytest.approx(point.x)
    assert y[1, 0] == pytest.approx(point.y)
    lon_back, lat_back = projection.lonlat(x, y)
    np.testing.assert_allclose(lon_back, lons, atol=1e-9)
    np.testing.assert_allclose(lat_back, lats, atol=1e-9)


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(116.83, -1.27), (109.33, 0.0), (18.95, 69.65), (113.98, -2.0)],
)
@pytest.mark.parametrize("azimuth", [0.0, 45.0, 90.0, 200.0])
@pytest.mark.parametrize("distance", [50.0, 2_000.0, 25_000.0])
def test_metric_distance_matches_geodesic(
    lon: float, lat: float, azimuth: float, distance: float
) -> None:
    lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, distance)
    line = LineString([(lon, lat), (lon2, lat2)])
    metric = LocalProjection.for_geometry(line).to_metric(line)
    assert metric.length == pytest.approx(distance, rel=0.005)


def test_projections_are_cheap_to_create_repeatedly() -> None:
    # Transformer creation takes milliseconds; per-ping projection objects must not pay it.
    started = time.perf_counter()
    for i in range(2_000):
        LocalProjection.for_point(100.0 + (i % 30), -1.0 + (i % 7))
    assert time.perf_counter() - started < 1.0


def test_web_mercator_matches_the_spherical_formula() -> None:
    from service.geo.projection import web_mercator

    lon, lat = np.array([116.83, -10.0]), np.array([-1.268, 45.0])
    x, y = web_mercator(lon, lat)
    r = 6378137.0
    assert np.allclose(x, r * np.radians(lon))
    assert np.allclose(y, r * np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)))
