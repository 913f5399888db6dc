"""Route corridors: metres along and across routes agree with geodesics (pyproj.Geod)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shapely
import shapely.ops
from pyproj import Geod
from shapely.geometry import LineString, Point

from service.errors import InvalidGeometry
from service.geo.corridor import Corridor, RouteCheck

GEOD = Geod(ellps="WGS84")
REL = 0.005  # required agreement with geodesic distances


def walk(lon: float, lat: float, legs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Vertices reached by following (azimuth, metres) legs geodesically from a start."""
    points = [(lon, lat)]
    for azimuth, distance in legs:
        lon, lat, _ = GEOD.fwd(lon, lat, azimuth, distance)
        points.append((lon, lat))
    return points


def wiggle(
    n: int, heading: float, leg_m: float, amplitude: float = 25.0
) -> list[tuple[float, float]]:
    return [(heading + amplitude * math.sin(i * 0.7), leg_m) for i in range(n)]


ROUTES = {
    # Balikpapan, just south of the equator: UTM 50S.
    "balikpapan-10km": (116.83, -1.27, wiggle(20, 60.0, 500.0), 32750),
    "balikpapan-50km": (116.80, -1.20, wiggle(50, 120.0, 1_000.0), 32750),
    # Tromsø at 69.6°N, where a degree of longitude is a third of one at the equator.
    "tromso-50km": (18.80, 69.60, wiggle(50, 80.0, 1_000.0), 32634),
    # Pontianak: crosses the equator, so part of it is in the other hemisphere.
    "pontianak-equator": (109.33, -0.05, wiggle(20, 10.0, 600.0), 32649),
    # Runs 40 km east across 114°E, the boundary of UTM zones 49 and 50; the centroid (and so
    # the projection) is still in zone 49, and the part in zone 50 must measure as well.
    "zone-boundary": (113.80, -2.00, wiggle(40, 90.0, 1_000.0), 32749),
}


@pytest.fixture(params=sorted(ROUTES))
def route(request: pytest.FixtureRequest) -> tuple[list[tuple[float, float]], list, int]:
    lon, lat, legs, epsg = ROUTES[request.param]
    return walk(lon, lat, legs), legs, epsg


def test_route_uses_local_utm_zone(route: tuple[list, list, int]) -> None:
    points, _, epsg = route
    assert Corridor(LineString(points), 30.0).projection.epsg == epsg


def test_length_matches_geodesic(route: tuple[list, list, int]) -> None:
    points, legs, _ = route
    corridor = Corridor(LineString(points), 30.0)
    lons, lats = zip(*points, strict=True)
    assert corridor.length_m == pytest.approx(GEOD.line_length(lons, lats), rel=REL)
    assert corridor.length_m == pytest.approx(sum(d for _, d in legs), rel=REL)


@pytest.mark.parametrize("offset", [25.0, 40.0, 60.0, 150.0, 400.0])
@pytest.mark.parametrize("side", [90.0, -90.0])
def test_distance_matches_geodesic_offset(
    route: tuple[list, list, int], offset: float, side: float
) -> None:
    points, legs, _ = route
    corridor = Corridor(LineString(points), 50.0)
    for leg in (1, len(legs) // 2, len(legs) - 2):
        azimuth, length = legs[leg]
        # Foot point half way along the leg, then a geodesic offset at right angles.
        mid_lon, mid_lat, back = GEOD.fwd(*points[leg], azimuth, length / 2)
        lon, lat, _ = GEOD.fwd(mid_lon, mid_lat, back + 180.0 + side, offset)
        check = corridor.check(lon, lat)
        assert check.distance_m == pytest.approx(offset, rel=REL)
        assert check.on_route is (offset <= 50.0)
        expected_chainage = sum(d for _, d in legs[:leg]) + length / 2
        assert check.chainage_m == pytest.approx(expected_chainage, rel=REL)


def test_chainage_matches_geodesic_distance_along(route: tuple[list, list, int]) -> None:
    points, legs, _ = route
    corridor = Corridor(LineString(points), 30.0)
    travelled = 0.0
    for i, (azimuth, length) in enumerate(legs):
        for frac in (0.0, 0.3, 0.9):
            lon, lat, _ = GEOD.fwd(*points[i], azimuth, length * frac)
            expected = travelled + length * frac
            check = corridor.check(lon, lat)
            assert check.chainage_m == pytest.approx(expected, rel=REL, abs=0.5)
            assert check.distance_m < 2.0  # on the centreline (edge vs geodesic: centimetres)
            assert check.on_route
        travelled += length


def test_point_at_walks_the_route(route: tuple[list, list, int]) -> None:
    points, _, _ = route
    corridor = Corridor(LineString(points), 30.0)
    for chainage in np.linspace(0.0, corridor.length_m, 9):
        lon, lat = corridor.point_at(float(chainage))
        check = corridor.check(lon, lat)
        assert check.distance_m == pytest.approx(0.0, abs=1e-6)
        assert check.chainage_m == pytest.approx(chainage, abs=1e-6)
    assert corridor.point_at(0.0) == pytest.approx(points[0], abs=1e-9)
    assert corridor.point_at(corridor.length_m) == pytest.approx(points[-1], abs=1e-9)
    # Beyond the ends of an open route the position is clamped.
    assert corridor.point_at(-100.0) == pytest.approx(points[0], abs=1e-9)
    assert corridor.point_at(corridor.length_m + 100.0) == pytest.approx(points[-1], abs=1e-9)


def test_check_many_matches_check_and_shapely_reference(route: tuple[list, list, int]) -> None:
    points, _, _ = route
    corridor = Corridor(LineString(points), 50.0)
    rng = np.random.default_rng(7)
    along = rng.uniform(0, corridor.length_m, 400)
    lons, lats = np.array([corridor.point_at(float(c)) for c in along]).T
    # Scatter around the route: most within ~100 m, some far away.
    lons = lons + rng.normal(0, 0.0008, lons.size) * np.where(rng.random(lons.size) < 0.1, 50, 1)
    lats = lats + rng.normal(0, 0.0008, lats.size)
    distance, on_route, chainage = corridor.check_many(lons, lats)
    x, y = corridor.projection.xy(lons, lats)
    pts = shapely.points(x, y)
    np.testing.assert_allclose(distance, shapely.distance(corridor.metric_line, pts), atol=1e-6)
    np.testing.assert_allclose(
        chainage, shapely.line_locate_point(corridor.metric_line, pts), atol=1e-6
    )
    np.testing.assert_array_equal(on_route, distance <= 50.0)
    assert 0 < on_route.sum() < on_route.size
    for i in range(0, 400, 37):
        single = corridor.check(float(lons[i]), float(lats[i]))
        assert single == RouteCheck(float(distance[i]), bool(on_route[i]), float(chainage[i]))
    fast_on, fast_chainage = corridor.locate_on_route(lons, lats)
    np.testing.assert_array_equal(fast_on, on_route)
    np.testing.assert_array_equal(fast_chainage[on_route], chainage[on_route])
    assert np.isnan(fast_chainage[~on_route]).all()


def balikpapan_line() -> LineString:
    return LineString(walk(116.83, -1.27, [(90.0, 1000.0), (0.0, 1000.0)]))


def test_check_many_keeps_shape_and_marks_bad_input_off_route() -> None:
    corridor = Corridor(balikpapan_line(), 30.0)
    lons = np.array([[116.835, np.nan], [116.835, 116.835]])
    lats = np.array([[-1.27, -1.27], [np.inf, -1.2701]])
    distance, on_route, chainage = corridor.check_many(lons, lats)
    assert distance.shape == on_route.shape == chainage.shape == (2, 2)
    assert on_route.tolist() == [[True, False], [False, True]]
    assert np.isnan(distance[0, 1]) and np.isnan(distance[1, 0])


def test_far_point_is_measured_exactly() -> None:
    corridor = Corridor(balikpapan_line(), 30.0)
    start = corridor.point_at(0.0)
    lon, lat, _ = GEOD.fwd(*start, 270.0, 20_000.0)  # 20 km west of the start
    check = corridor.check(lon, lat)
    assert check.distance_m == pytest.approx(20_000.0, rel=REL)
    assert check.chainage_m == 0.0
    assert not check.on_route


@pytest.mark.parametrize(("offset", "on_route"), [(29.99, True), (30.01, False)])
def test_corridor_edge(offset: float, on_route: bool) -> None:
    corridor = Corridor(balikpapan_line(), 30.0)
    # The first leg runs due east, so a metric offset in y is perpendicular to it.
    x, y = corridor.projection.xy(*corridor.point_at(500.0))
    lon, lat = corridor.projection.lonlat(x, y - offset)
    check = corridor.check(float(lon), float(lat))
    assert check.distance_m == pytest.approx(offset, abs=0.005)
    assert check.on_route is on_route


def test_out_and_back_route_reports_the_first_pass() -> None:
    # A route that goes out and comes back along the same street.
    out = walk(116.83, -1.27, [(90.0, 1000.0)])
    corridor = Corridor(LineString([*out, out[0]]), 30.0)
    assert corridor.length_m == pytest.approx(2000.0, rel=REL)
    lon, lat, _ = GEOD.fwd(*out[0], 90.0, 300.0)
    check = corridor.check(lon, lat)
    assert check.chainage_m == pytest.approx(300.0, rel=REL)
    _, _, chainage = corridor.check_many(np.array([lon]), np.array([lat]))
    assert chainage[0] == pytest.approx(300.0, rel=REL)


def test_figure_eight_route_is_accepted() -> None:
    a = walk(116.83, -1.27, [(45.0, 1000.0), (180.0, 707.0), (315.0, 1000.0)])
    corridor = Corridor(LineString(a), 30.0)
    assert corridor.length_m == pytest.approx(2707.0, rel=REL)


def test_closed_route_appends_its_start() -> None:
    ring = walk(116.83, -1.27, [(90.0, 1000.0), (0.0, 1000.0), (270.0, 1000.0)])
    corridor = Corridor(LineString(ring), 30.0, closed=True)
    assert corridor.closed
    assert corridor.line.coords[0] == corridor.line.coords[-1]
    assert len(corridor.line.coords) == len(ring) + 1
    assert corridor.length_m == pytest.approx(4000.0, rel=REL)
    # Chainage wraps round a loop: a quarter of a loop past the end is the first corner.
    assert corridor.point_at(corridor.length_m + 1000.0) == pytest.approx(
        corridor.point_at(1000.0), abs=1e-9
    )
    # Already closed: nothing appended.
    again = Corridor(corridor.line, 30.0, closed=True)
    assert len(again.line.coords) == len(corridor.line.coords)
    assert again.length_m == pytest.approx(corridor.length_m)
    # An open corridor on the same vertices lacks the closing side.
    assert Corridor(LineString(ring), 30.0).length_m == pytest.approx(3000.0, rel=REL)


def test_segments_cover_the_route() -> None:
    corridor = Corridor(balikpapan_line(), 30.0)
    bounds = corridor.segment_bounds(150.0)
    assert bounds.shape == (math.ceil(corridor.length_m / 150.0), 2)
    assert bounds[0, 0] == 0.0
    assert bounds[-1, 1] == corridor.length_m
    np.testing.assert_array_equal(bounds[1:, 0], bounds[:-1, 1])
    widths = bounds[:, 1] - bounds[:, 0]
    np.testing.assert_allclose(widths[:-1], 150.0)
    assert 0 < widths[-1] <= 150.0

    lines = corridor.segment_lines(150.0)
    assert len(lines) == len(bounds)
    assert lines[0].coords[0] == pytest.approx(corridor.line.coords[0], abs=1e-9)
    assert lines[-1].coords[-1] == pytest.approx(corridor.line.coords[-1], abs=1e-9)
    for line, width in zip(lines, widths, strict=True):
        lons, lats = line.xy
        assert GEOD.line_length(lons, lats) == pytest.approx(width, rel=REL)
    for before, after in itertools.pairwise(lines):
        assert before.coords[-1] == pytest.approx(after.coords[0], abs=1e-9)
    # The piece holding the corner follows the corner.
    corner = corridor.line.coords[1]
    assert any(Point(corner).distance(line) < 1e-9 for line in lines)


def test_area_covers_the_corridor_and_little_more() -> None:
    corridor = Corridor(balikpapan_line(), 50.0)
    area = corridor.area
    assert area.geom_type == "Polygon" and area.is_valid
    rng = np.random.default_rng(3)
    along = rng.uniform(-60.0, corridor.length_m + 60.0, 2000)
    lons, lats = np.array([corridor.point_at(float(c)) for c in np.clip(along, 0, None)]).T
    # Points scattered in every direction, including round the end caps and the corner.
    angle = rng.uniform(0, 2 * np.pi, lons.size)
    radius = rng.uniform(0, 60.0, lons.size)
    x, y = corridor.projection.xy(lons, lats)
    lons, lats = corridor.projection.lonlat(x + radius * np.cos(angle), y + radius * np.sin(angle))
    distance, on_route, _ = corridor.check_many(lons, lats)
    inside = shapely.intersects_xy(area, lons, lats)
    # Every on-route point is inside the area ...
    assert inside[on_route].all()
    # ... and nothing beyond 5 % more than the corridor is.
    assert not inside[distance > 50.0 * 1.05].any()


@pytest.mark.parametrize("corridor_m", [0.0, -5.0, math.nan, 50_001.0])
def test_rejects_bad_corridor_width(corridor_m: float) -> None:
    with pytest.raises(InvalidGeometry, match="corridor_m"):
        Corridor(balikpapan_line(), corridor_m)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (LineString([(116.83, -1.27), (116.83, -1.27)]), "at least 2 distinct points"),
        (LineString([(116.83, -1.27), (116.84, -91.0)]), "latitude -91.0 out of range"),
        (Point(116.83, -1.27), "expected a LineString"),
    ],
)
def test_rejects_bad_line(line: LineString, message: str) -> None:
    with pytest.raises(InvalidGeometry, match=message):
        Corridor(line, 30.0)


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("segment_m", [7.0, 150.0, 5_000.0])
def test_segment_lines_follow_the_centerline_exactly(closed: bool, segment_m: float) -> None:
    rng = np.random.default_rng(int(segment_m))
    xy = np.cumsum(rng.normal(0.0, 0.0005, (60, 2)), axis=0) + np.array([116.8, -1.2])
    xy = np.repeat(xy, rng.integers(1, 3, len(xy)), axis=0)  # repeated vertices too
    corridor = Corridor(LineString(xy), 30.0, closed=closed)
    lines = corridor.segment_lines(segment_m)
    bounds = corridor.segment_bounds(segment_m)
    assert len(lines) == len(bounds)
    for line, (start, end) in zip(lines, bounds, strict=True):
        expected = corridor.projection.to_wgs84(
            shapely.ops.substring(corridor.metric_line, float(start), float(end))
        )
        assert shapely.hausdorff_distance(line, expected) < 1e-12
        assert corridor.projection.to_metric(line).length == pytest.approx(end - start)


def folded_routes() -> dict[str, LineString]:
    """Routes of 20,000 positions (the most allowed) crossing or retracing themselves."""
    k = np.arange(20_000)
    rng = np.random.default_rng(9)
    deg = 1.0 / 111_300.0
    golden = k * 2.399963
    spoke = (k % 2) * 12.0 * deg
    return {
        "one street, back and forth": LineString(
            np.column_stack((116.83 + (k % 2) * 24.0 * deg, np.full(k.size, -1.268)))
            + rng.normal(0.0, 0.3 * deg, (k.size, 2))
        ),
        "a star of 12 m spokes": LineString(
            np.column_stack((116.83 + spoke * np.cos(golden), -1.268 + spoke * np.sin(golden)))
        ),
        "a zig-zag of 20 m teeth": LineString(
            np.column_stack((116.83 + k * 19.0 * deg, -1.268 + (k % 2) * 15.0 * deg))
        ),
    }


@pytest.mark.parametrize("corridor_m", [30.0, 1_000.0])
@pytest.mark.parametrize("name", list(folded_routes()))
def test_area_of_a_folded_route_is_built_and_bounded(name: str, corridor_m: float) -> None:
    # One GEOS buffer of such a line took over a minute and gigabytes (or failed).
    corridor = Corridor(folded_routes()[name], corridor_m)
    area = corridor.area
    assert area.is_valid and not area.is_empty
    assert shapely.get_num_coordinates(area) <= 20_000
    lons, lats = shapely.get_coordinates(corridor.line)[::97].T
    assert shapely.intersects_xy(area, lons, lats).all()
    assert shapely.intersects_xy(shapely.box(*corridor.bounds), *_on_route(corridor)).all()


def _on_route(corridor: Corridor) -> tuple[np.ndarray, np.ndarray]:
    """Locations all round the corridor's edge and inside it."""
    rng = np.random.default_rng(10)
    along = rng.uniform(0, corridor.length_m, 4_000)
    base = shapely.get_coordinates(shapely.line_interpolate_point(corridor.metric_line, along))
    angle = rng.uniform(0, 2 * np.pi, along.size)
    radius = corridor.corridor_m * np.sqrt(rng.uniform(0.9, 1.0, along.size))
    x, y = (base + np.column_stack((np.cos(angle), np.sin(angle))) * radius[:, None]).T
    lons, lats = corridor.projection.lonlat(x, y)
    on_route = corridor.check_many(lons, lats)[1]
    assert on_route.mean() > 0.5
    return lons[on_route], lats[on_route]


def test_bounds_cover_the_corridor() -> None:
    corridor = Corridor(balikpapan_line(), 50.0)
    west, south, east, north = corridor.bounds
    assert shapely.intersects_xy(shapely.box(*corridor.bounds), *_on_route(corridor)).all()
    # ... and not much more: within 60 m of the area on every side.
    grown = corridor.projection.to_wgs84(corridor.projection.to_metric(corridor.area).buffer(60))
    assert shapely.box(west, south, east, north).within(shapely.envelope(grown))
