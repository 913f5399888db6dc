"""Geometry validation: valid shapes pass, invalid ones fail with a message naming the problem."""

from __future__ import annotations

import math

import pytest
from shapely.geometry import LineString, MultiLineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from service.errors import InvalidGeometry
from service.geo.validate import (
    check_coordinates,
    check_ring_closed,
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
