"""Geofences: containment and signed boundary distance, cross-checked with geodesics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Polygon

from service.errors import InvalidGeometry
from service.geo.fence import CircleFence, Fence, PolygonFence

GEOD = Geod(ellps="WGS84")
REL = 0.005

CENTRES = [(116.83, -1.27), (109.33, 0.0), (10.75, 59.91), (18.95, 69.65)]


def offset(lon: float, lat: float, azimuth: float, metres: float) -> tuple[float, float]:
    lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return lon2, lat2


def square(lon: float, lat: float, half_m: float) -> list[tuple[float, float]]:
    """Corners of a square of side 2 * half_m centred on (lon, lat), counter-clockwise."""
    south = offset(lon, lat, 180.0, half_m)[1]
    north = offset(lon, lat, 0.0, half_m)[1]
    west = offset(lon, lat, 270.0, half_m)[0]
    east = offset(lon, lat, 90.0, half_m)[0]
    return [(west, south), (east, south), (east, north), (west, north), (west, south)]


@pytest.mark.parametrize(("lon", "lat"), CENTRES)
@pytest.mark.parametrize("radius", [30.0, 500.0, 20_000.0])
@pytest.mark.parametrize("azimuth", [0.0, 73.0, 180.0, 290.0])
def test_circle_uses_geodesic_distance(
    lon: float, lat: float, radius: float, azimuth: float
) -> None:
    fence = Fence.circle(lon, lat, radius)
    inside = offset(lon, lat, azimuth, radius * 0.99)
    outside = offset(lon, lat, azimuth, radius * 1.01)
    assert fence.contains(*inside)
    assert not fence.contains(*outside)
    assert fence.boundary_distance_m(*inside) == pytest.approx(-0.01 * radius, abs=1e-3)
    assert fence.boundary_distance_m(*outside) == pytest.approx(0.01 * radius, abs=1e-3)
    assert fence.boundary_distance_m(lon, lat) == pytest.approx(-radius)


def test_circle_boundary_counts_as_inside() -> None:
    fence = Fence.circle(116.83, -1.27, 200.0)
    lon, lat = offset(116.83, -1.27, 45.0, 200.0)
    distance = fence.boundary_distance_m(lon, lat)
    assert abs(distance) < 1e-6
    assert fence.contains(lon, lat) is (distance <= 0.0)
    assert fence.contains(*offset(116.83, -1.27, 45.0, 199.999))


@pytest.mark.parametrize(("lon", "lat"), CENTRES)
@pytest.mark.parametrize("radius", [10.0, 500.0, 50_000.0])
def test_circle_outline_covers_the_circle(lon: float, lat: float, radius: float) -> None:
    fence = Fence.circle(lon, lat, radius)
    outline = fence.outline
    assert outline.is_valid
    assert outline.exterior.is_ccw
    assert len(outline.exterior.coords) - 1 >= 64
    # Used as a spatial-index pre-filter: no point of the circle may fall outside it.
    azimuths = np.linspace(0.0, 360.0, 3601)
    n = azimuths.size
    lons, lats, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), azimuths, np.full(n, radius))
    assert shapely.intersects_xy(outline, lons, lats).all()
    # ... and it is a close fit: vertices within 0.2 % of the radius.
    vlon, vlat = np.array(outline.exterior.coords).T
    _, _, dist = GEOD.inv(np.full(vlon.size, lon), np.full(vlon.size, lat), vlon, vlat)
    assert dist.min() >= radius
    assert dist.max() <= radius * 1.002


def test_circle_outline_near_the_antimeridian_stays_whole() -> None:
    fence = Fence.circle(179.99, -16.5, 5_000.0)
    outline = fence.outline
    assert outline.is_valid
    assert outline.bounds[2] - outline.bounds[0] < 0.2  # not torn across the globe


def test_circle_contains_many() -> None:
    fence = Fence.circle(116.83, -1.27, 100.0)
    lons = np.array([[116.83, 116.8305], [116.84, np.nan]])
    lats = np.array([[-1.27, -1.27], [-1.27, -1.27]])
    inside = fence.contains_many(lons, lats)
    assert inside.shape == (2, 2)
    assert inside.tolist() == [[True, True], [False, False]]
    distance = fence.boundary_distance_many(lons, lats)
    assert distance.shape == (2, 2)
    assert distance[0, 0] == pytest.approx(-100.0)
    assert np.isnan(distance[1, 1])


@pytest.mark.parametrize(
    ("lon", "lat", "radius"),
    [*[(lon, lat, r) for lon, lat in CENTRES for r in (50.0, 5_000.0)],
     (179.9995, -16.5, 300.0), (-179.9995, 16.5, 300.0), (30.0, 79.9, 2_000.0),
     (30.0, 85.0, 2_000.0), (116.83, -1.27, 50_000.0)],
)  # fmt: skip
def test_circle_contains_many_matches_the_geodesic_test(
    lon: float, lat: float, radius: float
) -> None:
    # Points spread over 3 radii in every direction, many right at the edge.
    rng = np.random.default_rng(int(radius))
    n = 4_000
    azimuth = rng.uniform(-180, 180, n)
    reach = np.concatenate(
        (rng.uniform(0, 3 * radius, n // 2), radius * (1 + rng.normal(0, 1e-3, n // 2)))
    )
    lons, lats, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), azimuth, reach)
    _, _, dist = GEOD.inv(np.full(n, lon), np.full(n, lat), lons, lats)
    inside = CircleFence(lon, lat, radius).contains_many(lons, lats)
    np.testing.assert_array_equal(inside, np.asarray(dist) <= radius)
    assert inside.sum() > n // 4 and (~inside).sum() > n // 4


def test_circle_attributes() -> None:
    fence = Fence.circle(116.83, -1.27, 100.0)
    assert isinstance(fence, CircleFence)
    assert fence.kind == "circle"
    assert fence.centroid == (116.83, -1.27)
    assert fence.radius_m == 100.0


@pytest.mark.parametrize(
    ("lon", "lat", "radius", "message"),
    [
        (116.83, -1.27, 0.0, "radius_m must be a positive number"),
        (116.83, -1.27, -10.0, "radius_m must be a positive number"),
        (116.83, -1.27, 60_000.0, "exceeds the maximum of 50000 m"),
        (116.83, -1.27, math.nan, "radius_m must be a positive number"),
        (116.83, 91.0, 100.0, "latitude 91.0 out of range"),
        (190.0, 0.0, 100.0, "longitude 190.0 out of range"),
    ],
)
def test_circle_rejects(lon: float, lat: float, radius: float, message: str) -> None:
    with pytest.raises(InvalidGeometry, match=message):
        Fence.circle(lon, lat, radius)


@pytest.fixture(params=CENTRES, ids=lambda c: f"{c[0]},{c[1]}")
def block(request: pytest.FixtureRequest) -> tuple[float, float, PolygonFence]:
    """A 1 km square fence with a 200 m square hole in its north-east quarter."""
    lon, lat = request.param
    hole_centre = offset(*offset(lon, lat, 0.0, 250.0), 90.0, 250.0)
    poly = Polygon(square(lon, lat, 500.0), [square(*hole_centre, 100.0)])
    return lon, lat, Fence.polygon(poly)


def test_polygon_contains(block: tuple[float, float, PolygonFence]) -> None:
    lon, lat, fence = block
    assert fence.kind == "polygon"
    assert fence.contains(lon, lat)
    assert fence.contains(*offset(lon, lat, 180.0, 490.0))
    assert not fence.contains(*offset(lon, lat, 180.0, 510.0))
    # The hole is outside the fence.
    hole_centre = offset(*offset(lon, lat, 0.0, 250.0), 90.0, 250.0)
    assert not fence.contains(*hole_centre)


def test_polygon_boundary_counts_as_inside(block: tuple[float, float, PolygonFence]) -> None:
    _, _, fence = block
    ring = np.array(fence.outline.exterior.coords)
    corner = ring[0]
    edge_mid = (ring[0] + ring[1]) / 2
    for lon, lat in (corner, edge_mid):
        assert fence.contains(float(lon), float(lat))
        assert fence.boundary_distance_m(float(lon), float(lat)) == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize(("metres", "expected"), [(400.0, -100.0), (450.0, -50.0), (700.0, 200.0)])
def test_polygon_boundary_distance_is_signed_metres(
    block: tuple[float, float, PolygonFence], metres: float, expected: float
) -> None:
    lon, lat, fence = block
    # Due west of the centre: the west edge is 500 m away.
    point = offset(lon, lat, 270.0, metres)
    assert fence.boundary_distance_m(*point) == pytest.approx(expected, rel=REL)


def test_polygon_boundary_distance_inside_the_hole(
    block: tuple[float, float, PolygonFence],
) -> None:
    lon, lat, fence = block
    hole_centre = offset(*offset(lon, lat, 0.0, 250.0), 90.0, 250.0)
    # In the middle of the 200 m hole: outside the fence, 100 m from the hole's edge.
    assert fence.boundary_distance_m(*hole_centre) == pytest.approx(100.0, rel=REL)


def test_polygon_many_matches_single(block: tuple[float, float, PolygonFence]) -> None:
    lon, lat, fence = block
    rng = np.random.default_rng(5)
    lons = lon + rng.uniform(-0.02, 0.02, 500)
    lats = lat + rng.uniform(-0.01, 0.01, 500)
    inside = fence.contains_many(lons, lats)
    distance = fence.boundary_distance_many(lons, lats)
    assert 0 < inside.sum() < inside.size
    np.testing.assert_array_equal(inside, distance <= 0.0)
    for i in range(0, 500, 41):
        assert fence.contains(float(lons[i]), float(lats[i])) is bool(inside[i])
        assert fence.boundary_distance_m(float(lons[i]), float(lats[i])) == pytest.approx(
            distance[i]
        )
    assert not fence.contains_many(np.array([np.nan]), np.array([lat]))[0]


def test_polygon_centroid_and_area(block: tuple[float, float, PolygonFence]) -> None:
    lon, lat, fence = block
    # 1 km² less the 0.04 km² hole, whose pull moves the centroid south-west.
    assert fence.area_m2 == pytest.approx(1_000_000 - 40_000, rel=REL)
    c_lon, c_lat = fence.centroid
    _, _, shift = GEOD.inv(lon, lat, c_lon, c_lat)
    # The hole's 40 000 m² sits 354 m from the centre: shift = 40 000 * 354 / 960 000.
    assert shift == pytest.approx(40_000 * 250 * math.sqrt(2) / 960_000, rel=0.02)
    assert c_lon < lon and c_lat < lat


def test_polygon_outline_is_the_polygon() -> None:
    poly = Polygon(square(116.83, -1.27, 300.0))
    fence = Fence.polygon(poly)
    assert fence.outline.equals(poly)


@pytest.mark.parametrize(
    ("poly", "message"),
    [
        (Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)]), "Self-intersection"),
        (Polygon([(0, 0), (1, 0), (2, 0), (0, 0)]), "zero area"),
        (Polygon([(0, 0), (1, 0), (1, 100), (0, 0)]), "latitude 100.0 out of range"),
    ],
)
def test_polygon_rejects(poly: Polygon, message: str) -> None:
    with pytest.raises(InvalidGeometry, match=message):
        Fence.polygon(poly)


def comb(teeth: int, lon: float = 114.63, lat: float = -3.47, size: float = 4.4) -> Polygon:
    """A comb of `teeth` teeth each `size` degrees long: a boundary of ~teeth * 2 * size deg."""
    xs = np.linspace(0.0, size, 2 * teeth + 2)
    top = []
    for t in range(teeth):
        top += [
            (xs[2 * t], size),
            (xs[2 * t + 1], size),
            (xs[2 * t + 1], 0.1),
            (xs[2 * t + 2], 0.1),
        ]
    ring = [(0.0, 0.0), (size, 0.0), *reversed(top), (0.0, 0.0)]
    return Polygon(np.array(ring) + np.array([lon, lat]))


def test_polygon_with_a_boundary_too_long_to_densify_finely_stays_right() -> None:
    # 19,999 positions within 490 km, but 4.7 million km of boundary: densified within a
    # vertex budget, distances still agree with the undensified polygon in the same metres.
    poly = comb(4_999)
    assert poly.is_valid and shapely.get_num_coordinates(poly) == 19_999
    fence = Fence.polygon(poly)
    rng = np.random.default_rng(4)
    corners = shapely.get_coordinates(poly)[rng.integers(0, 19_999, 2_000)]
    lons, lats = (corners + rng.normal(0.0, 0.002, corners.shape)).T
    signed = fence.boundary_distance_many(lons, lats)
    inside = shapely.intersects_xy(poly, lons, lats)
    np.testing.assert_array_equal(signed <= 0, inside)
    projection = fence._projection
    x, y = projection.xy(lons, lats)
    reference = shapely.distance(projection.to_metric(poly).boundary, shapely.points(x, y))
    np.testing.assert_allclose(np.abs(signed), reference, rtol=1e-3, atol=1.0)
