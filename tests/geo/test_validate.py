"""Geometry validation: valid shapes pass, invalid ones fail with a message naming the problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import LineString, MultiLineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from service.errors import InvalidGeometry, InvalidInput, PayloadTooLarge, status_for
from service.geo.validate import (
    GeometryLimits,
    check_at_most,
    check_coordinates,
    check_ring_closed,
    extent_km,
    fence_point,
    fence_polygon,
    lonlat_array,
    route_length_km,
    route_line,
    validate_line,
    validate_polygon,
    validate_radius,
)

SQUARE = [(116.82, -1.28), (116.84, -1.28), (116.84, -1.26), (116.82, -1.26), (116.82, -1.28)]
HOLE = [(116.825, -1.275), (116.83, -1.275), (116.83, -1.27), (116.825, -1.275)]


def test_invalid_geometry_is_a_value_error() -> None:
    assert issubclass(InvalidGeometry, ValueError)


@pytest.mark.parametrize(
    "geom",
    [
        Point(116.83, -1.27),
        Point(180.0, 90.0),
        Point(-180.0, -90.0),
        LineString([(0.0, 0.0), (1.0, 1.0)]),
        Polygon(SQUARE),
    ],
)
def test_check_coordinates_accepts_wgs84(geom: BaseGeometry) -> None:
    check_coordinates(geom)


@pytest.mark.parametrize(
    ("geom", "message"),
    [
        (Point(116.83, 95.0), "latitude 95.0 out of range [-90, 90]"),
        (Point(116.83, -90.5), "latitude -90.5 out of range [-90, 90]"),
        (Point(181.0, 0.0), "longitude 181.0 out of range [-180, 180]"),
        (LineString([(0.0, 0.0), (-200.0, 1.0)]), "longitude -200.0 out of range [-180, 180]"),
        (Point(math.nan, 0.0), "coordinate (nan, 0.0) is not finite"),
        (LineString([(0.0, 0.0), (1.0, math.inf)]), "coordinate (1.0, inf) is not finite"),
    ],
)
def test_check_coordinates_names_the_bad_value(geom: BaseGeometry, message: str) -> None:
    with pytest.raises(InvalidGeometry) as excinfo:
        check_coordinates(geom)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    "line",
    [
        LineString([(116.83, -1.27), (116.84, -1.27)]),
        # A figure-eight: patrol routes may legitimately cross themselves.
        LineString([(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0)]),
        # Repeated vertices are harmless as long as two distinct points remain.
        LineString([(0.0, 0.0), (0.0, 0.0), (1.0, 0.0)]),
    ],
)
def test_validate_line_accepts(line: LineString) -> None:
    assert validate_line(line).equals(line)


def test_validate_line_drops_z() -> None:
    line = validate_line(LineString([(116.83, -1.27, 5.0), (116.84, -1.27, 7.0)]))
    assert not line.has_z
    assert list(line.coords) == [(116.83, -1.27), (116.84, -1.27)]


@pytest.mark.parametrize(
    ("geom", "message"),
    [
        (Point(0.0, 0.0), "expected a LineString, got Point"),
        (MultiLineString([[(0, 0), (1, 1)]]), "expected a LineString, got MultiLineString"),
        (LineString(), "line is empty"),
        (LineString([(1.0, 1.0), (1.0, 1.0)]), "line needs at least 2 distinct points"),
        (LineString([(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]), "at least 2 distinct points"),
        (LineString([(0.0, 0.0), (0.0, 91.0)]), "latitude 91.0 out of range"),
    ],
)
def test_validate_line_rejects(geom: BaseGeometry, message: str) -> None:
    with pytest.raises(InvalidGeometry, match=message.replace("[", r"\[")):
        validate_line(geom)


def test_check_ring_closed_accepts_a_closed_ring() -> None:
    check_ring_closed([list(p) for p in SQUARE])


@pytest.mark.parametrize(
    ("coords", "name", "message"),
    [
        (
            [[0, 0], [1, 0], [1, 1], [0, 1]],
            "polygon ring",
            "polygon ring is not closed: first point [0.0, 0.0] differs from last point [0.0, 1.0]",
        ),
        (
            [[0, 0], [1, 0], [1, 1], [0.0, 0.000001]],
            "hole 1",
            "hole 1 is not closed: first point [0.0, 0.0] differs from last point [0.0, 1e-06]",
        ),
        ([[0, 0], [1, 0], [0, 0]], "polygon ring", "polygon ring has 3 positions"),
        ([], "polygon ring", "polygon ring has 0 positions"),
    ],
)
def test_check_ring_closed_rejects(coords: list[list[float]], name: str, message: str) -> None:
    with pytest.raises(InvalidGeometry) as excinfo:
        check_ring_closed(coords, name)
    assert str(excinfo.value).startswith(message)


@pytest.mark.parametrize(
    "poly",
    [Polygon(SQUARE), Polygon(SQUARE, [HOLE])],
)
def test_validate_polygon_accepts(poly: Polygon) -> None:
    assert validate_polygon(poly).equals(poly)


@pytest.mark.parametrize(
    ("geom", "message"),
    [
        (LineString([(0, 0), (1, 1)]), "expected a Polygon, got LineString"),
        (Polygon(), "polygon is empty"),
        # A bow-tie: the two triangles' signed areas cancel, but the fault is the crossing.
        (Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)]), "Self-intersection"),
        (Polygon([(0, 0), (1, 0), (2, 0), (0, 0)]), "polygon has zero area"),
        # A hole reaching outside its shell.
        (
            Polygon([(0, 0), (2, 0), (2, 2), (0, 2)], [[(1, 1), (3, 1), (3, 1.5), (1, 1)]]),
            "polygon is invalid",
        ),
        (Polygon([(0, 0), (1, 0), (1, 95), (0, 0)]), "latitude 95.0 out of range"),
    ],
)
def test_validate_polygon_rejects(geom: BaseGeometry, message: str) -> None:
    with pytest.raises(InvalidGeometry, match=message):
        validate_polygon(geom)


@pytest.mark.parametrize("radius", [0.5, 1, 250.0, 50_000])
def test_validate_radius_accepts(radius: float) -> None:
    assert validate_radius(radius) == float(radius)


@pytest.mark.parametrize(
    ("radius", "message"),
    [
        (0, "radius_m must be a positive number of metres"),
        (-5.0, "radius_m must be a positive number of metres"),
        (math.nan, "radius_m must be a positive number of metres"),
        (math.inf, "radius_m must be a positive number of metres"),
        ("wide", "radius_m must be a positive number of metres"),
        (50_000.01, "radius_m 50000.01 exceeds the maximum of 50000 m"),
    ],
)
def test_validate_radius_rejects(radius: float, message: str) -> None:
    with pytest.raises(InvalidGeometry) as excinfo:
        validate_radius(radius)
    assert str(excinfo.value).startswith(message)


LIMITS = GeometryLimits(
    max_geometry_vertices=10,
    max_route_length_km=5.0,
    max_extent_km=3.0,
    max_corridor_m=100.0,
    max_radius_m=500.0,
    max_hysteresis_m=50.0,
    env_prefix="PATROLI_",
)
STREET = [[116.83, -1.268], [116.835, -1.268], [116.839, -1.268]]  # ~1 km east
BLOCK = [[116.83, -1.27], [116.84, -1.27], [116.84, -1.26], [116.83, -1.26], [116.83, -1.27]]


def test_limit_names_are_the_settings() -> None:
    assert LIMITS.setting("max_extent_km") == "PATROLI_MAX_EXTENT_KM"
    assert GeometryLimits(1, 1, 1, 1, 1, 1).setting("max_radius_m") == "MAX_RADIUS_M"


def test_route_line_accepts_a_route_within_the_limits() -> None:
    line = route_line([[*p, 12.5] for p in STREET], False, LIMITS)
    assert not line.has_z and list(line.coords) == [tuple(p) for p in STREET]
    assert route_line(STREET, True, LIMITS).length > 0


@pytest.mark.parametrize(
    ("positions", "closed", "error", "message"),
    [
        (
            [[116.83 + 0.0001 * k, -1.268] for k in range(11)],
            False,
            PayloadTooLarge,
            "the patrol route has 11 positions; at most 10 are allowed "
            "(PATROLI_MAX_GEOMETRY_VERTICES)",
        ),
        (
            [[116.83, -1.268], [116.84, -1.268, 1.0]],
            False,
            InvalidGeometry,
            "the patrol route mixes 2D and 3D positions: position 0 has 2 values, position 1 has 3",
        ),
        (
            [[116.83, -1.268, 1.0, 2.0], [116.84, -1.268, 1.0, 2.0]],
            False,
            InvalidGeometry,
            "the patrol route: a position is [lon, lat] or [lon, lat, alt], not 4 values",
        ),
        ([], False, InvalidGeometry, "the patrol route has no positions"),
        ([["a", "b"], [1.0, 2.0]], False, InvalidGeometry, "every position must be numbers"),
        ([[math.inf, 1.0], [1.0, 2.0]], False, InvalidGeometry, "(inf, 1.0) is not finite"),
        ([[1e308, 1.0], [1.0, 2.0]], False, InvalidGeometry, "longitude 1e+308 out of range"),
        ([[1.0, 2.0], [1.0, 2.0]], False, InvalidGeometry, "at least 2 distinct points"),
        (
            [[179.99, 0.0], [-179.99, 0.0]],
            False,
            InvalidGeometry,
            "the patrol route extends 40072.8 km east-west; at most 3 km is allowed "
            "(PATROLI_MAX_EXTENT_KM)",
        ),
        (
            [[116.83, -1.268], [116.85, -1.268], [116.83, -1.267], [116.85, -1.267]],
            False,
            InvalidGeometry,
            "the patrol route is 6.7 km long; at most 5 km is allowed "
            "(PATROLI_MAX_ROUTE_LENGTH_KM)",
        ),
    ],
)
def test_route_line_refuses_naming_the_limit(
    positions: list[list[float]], closed: bool, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as excinfo:
        route_line(positions, closed, LIMITS)
    assert message in str(excinfo.value)


def test_closing_a_route_adds_the_way_back() -> None:
    coords = np.array(STREET)
    assert route_length_km(coords, True) == pytest.approx(2 * route_length_km(coords), rel=1e-9)
    out = [[116.83, -1.268], [116.856, -1.268]]  # 2.9 km: allowed open, 5.8 km closed
    route_line(out, False, LIMITS)
    with pytest.raises(InvalidGeometry, match=r"is 5\.8 km long; at most 5 km"):
        route_line(out, True, LIMITS)


def test_vertex_count_is_checked_before_the_positions_are_read() -> None:
    # Positions past the limit are not even looked at (they would be refused otherwise).
    with pytest.raises(PayloadTooLarge):
        route_line([[0.0, 0.0]] * 5 + [["x"]] * 6, False, LIMITS)
    assert status_for(PayloadTooLarge("")) == 413 and status_for(InvalidInput("")) == 422


def test_fence_polygon_accepts_a_block_with_a_hole() -> None:
    hole = [[116.832, -1.268], [116.834, -1.268], [116.834, -1.266], [116.832, -1.268]]
    poly = fence_polygon([BLOCK, hole], LIMITS)
    assert len(poly.interiors) == 1 and poly.area > 0


@pytest.mark.parametrize(
    ("rings", "error", "message"),
    [
        ([BLOCK, [*BLOCK[:4], BLOCK[0]], BLOCK], PayloadTooLarge, "the geofence has 15 positions"),
        ([], InvalidGeometry, "polygon is empty"),
        ([BLOCK[:4]], InvalidGeometry, "polygon ring is not closed"),
        (
            [[*BLOCK[:2], [116.84, -1.26, 5.0], *BLOCK[3:]]],
            InvalidGeometry,
            "the polygon ring mixes",
        ),
        ([[[116.83, -1.27]] * 5], InvalidGeometry, "polygon has zero area"),
        (
            [BLOCK, [[117.0, -1.0], [117.001, -1.0], [117.001, -0.999], [117.0, -1.0]]],
            InvalidGeometry,
            "the geofence extends 19.0 km east-west",
        ),
        (
            [[[-180.0, -90.0], [180.0, -90.0], [180.0, 90.0], [-180.0, 90.0], [-180.0, -90.0]]],
            InvalidGeometry,
            "the geofence extends 40075.0 km east-west; at most 3 km is allowed "
            "(PATROLI_MAX_EXTENT_KM)",
        ),
    ],
)
def test_fence_polygon_refuses_naming_the_problem(
    rings: list[list[list[float]]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as excinfo:
        fence_polygon(rings, LIMITS)
    assert message in str(excinfo.value)


def test_a_hole_outside_its_shell_within_the_extent_is_invalid() -> None:
    hole = [[116.845, -1.27], [116.846, -1.27], [116.846, -1.269], [116.845, -1.27]]
    with pytest.raises(InvalidGeometry, match="Hole lies outside shell"):
        fence_polygon([BLOCK, hole], LIMITS)


def test_fence_point() -> None:
    assert fence_point([116.83, -1.27, 8.0]).coords[0] == (116.83, -1.27)
    with pytest.raises(InvalidGeometry, match=r"latitude -91\.0 out of range"):
        fence_point([116.83, -91.0])
    with pytest.raises(InvalidGeometry, match=r"not 1 values"):
        fence_point([116.83])


def test_extent_is_measured_along_the_widest_parallel() -> None:
    width, height = extent_km(np.array([[10.0, 60.0], [11.0, 61.0]]))
    assert width == pytest.approx(55.8, abs=0.1)  # one degree of longitude at 60 N
    assert height == pytest.approx(111.4, abs=0.1)
    width, _ = extent_km(np.array([[10.0, -10.0], [11.0, 10.0]]))
    assert width == pytest.approx(111.3, abs=0.1)  # the box spans the equator


def test_lonlat_array_drops_altitudes() -> None:
    coords = lonlat_array([(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)], "x")
    np.testing.assert_array_equal(coords, [[1.0, 2.0], [4.0, 5.0]])


@pytest.mark.parametrize(
    ("value", "name", "limit", "message"),
    [
        (100.5, "corridor_m", "max_corridor_m", "corridor_m 100.5 m exceeds the limit of 100 m "
         "(PATROLI_MAX_CORRIDOR_M)"),
        (501, "radius_m", "max_radius_m", "radius_m 501 m exceeds the limit of 500 m "
         "(PATROLI_MAX_RADIUS_M)"),
        (60, "hysteresis_m", "max_hysteresis_m", "hysteresis_m 60 m exceeds the limit of 50 m "
         "(PATROLI_MAX_HYSTERESIS_M)"),
    ],
)  # fmt: skip
def test_check_at_most(value: float, name: str, limit: str, message: str) -> None:
    check_at_most(getattr(LIMITS, limit), name, limit, LIMITS)
    with pytest.raises(InvalidInput) as excinfo:
        check_at_most(value, name, limit, LIMITS)
    assert str(excinfo.value) == message
