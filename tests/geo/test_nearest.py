"""Nearest point on a polyline: the fast locator agrees exactly with GEOS."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from service.geo.nearest import PolylineLocator


def random_polyline(rng: np.random.Generator, n: int, step: float) -> np.ndarray:
    heading = np.cumsum(rng.normal(0, 0.4, n))
    xy = np.cumsum(np.column_stack((np.cos(heading), np.sin(heading))) * step, axis=0)
    return np.vstack(([0.0, 0.0], xy)) + np.array([500_000.0, 9_850_000.0])


def points_around(rng: np.random.Generator, line: LineString, n: int, spread: float) -> np.ndarray:
    along = rng.uniform(0, line.length, n)
    base = shapely.get_coordinates(shapely.line_interpolate_point(line, along))
    return base + rng.normal(0, spread, (n, 2))


@pytest.mark.parametrize(
    ("vertices", "step", "reach"),
    [
        (300, 20.0, 30.0),  # a street route
        (8, 3_000.0, 30.0),  # few long segments
        (4_000, 0.5, 30.0),  # digitised every half metre: the grid gives way to the tree
        (300, 20.0, 500.0),
    ],
)
def test_matches_geos(vertices: int, step: float, reach: float) -> None:
    rng = np.random.default_rng(vertices)
    coords = random_polyline(rng, vertices, step)
    line = LineString(coords)
    locator = PolylineLocator(coords, reach)
    pts = np.vstack((points_around(rng, line, 3_000, 20.0), points_around(rng, line, 500, 2_000.0)))
    distance, chainage = locator.locate(pts[:, 0], pts[:, 1])
    geos = shapely.points(pts)
    np.testing.assert_allclose(distance, shapely.distance(line, geos), atol=1e-7)
    np.testing.assert_allclose(chainage, shapely.line_locate_point(line, geos), atol=1e-6)

    near_distance, near_chainage = locator.locate_near(pts[:, 0], pts[:, 1])
    near = distance <= reach
    assert near.any() and not near.all()
    np.testing.assert_array_equal(near_distance[near], distance[near])
    np.testing.assert_array_equal(near_chainage[near], chainage[near])
    assert np.isnan(near_distance[~near]).all() and np.isnan(near_chainage[~near]).all()


def test_equidistant_legs_resolve_to_the_earliest_chainage() -> None:
    # Out along y = 0, back along y = 20: a point on y = 10 is 10 m from both legs.
    coords = np.array([[0.0, 0.0], [1_000.0, 0.0], [1_000.0, 20.0], [0.0, 20.0]])
    locator = PolylineLocator(coords, 30.0)
    x = np.array([300.0, 300.0])
    y = np.array([10.0, 10.0])
    for locate in (locator.locate, locator.locate_near):
        distance, chainage = locate(x, y)
        np.testing.assert_allclose(distance, [10.0, 10.0])
        np.testing.assert_allclose(chainage, [300.0, 300.0])
    # Far away (the tree path) the same rule holds: 5 km west, the start (0, 0) and the end
    # (0, 20) are equally near, and the start wins.
    distance, chainage = locator.locate(np.array([-5_000.0]), np.array([10.0]))
    assert chainage[0] == 0.0
    assert distance[0] == pytest.approx(np.hypot(5_000.0, 10.0))


def test_repeated_vertices_and_non_finite_points() -> None:
    coords = np.array([[0.0, 0.0], [0.0, 0.0], [100.0, 0.0], [100.0, 0.0], [100.0, 50.0]])
    locator = PolylineLocator(coords, 25.0)
    distance, chainage = locator.locate(
        np.array([50.0, 110.0, np.nan, 0.0]), np.array([5.0, 25.0, 0.0, np.inf])
    )
    np.testing.assert_allclose(distance[:2], [5.0, 10.0])
    np.testing.assert_allclose(chainage[:2], [50.0, 125.0])
    assert np.isnan(distance[2:]).all() and np.isnan(chainage[2:]).all()


def test_rejects_degenerate_polyline() -> None:
    with pytest.raises(ValueError, match="non-zero length"):
        PolylineLocator(np.array([[1.0, 1.0], [1.0, 1.0]]), 10.0)


def test_a_street_retraced_many_times_is_located_as_walked_once() -> None:
    # 20,000 passes over the same 24 m: every pass is equally near every point, and the
    # first (lowest chainage) wins. Repeated segments are left out, so this stays quick.
    street = np.array([[500_000.0, 9_850_000.0], [500_024.0, 9_850_000.0]])
    retraced = street[np.arange(20_001) % 2]
    once = PolylineLocator(street, 30.0)
    many = PolylineLocator(retraced, 30.0)
    rng = np.random.default_rng(2)
    x = rng.uniform(499_950.0, 500_080.0, 20_000)
    y = rng.uniform(9_849_950.0, 9_850_050.0, 20_000)
    for locate in ("locate", "locate_near"):
        expected = getattr(once, locate)(x, y)
        got = getattr(many, locate)(x, y)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
