"""The lon/lat grid of a route: looking a fix up in it gives the corridor's exact answers."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from service.geo.cells import MAX_CANDIDATES, MAX_CELLS, RouteGrid, route_grid
from service.geo.corridor import Corridor
from service.geo.projection import LocalProjection


def metric_route(lon: float, lat: float, xy: np.ndarray) -> LineString:
    """A WGS84 line from metric offsets (m) around a location."""
    projection = LocalProjection.for_point(lon, lat)
    x0, y0 = projection.xy(np.array([lon]), np.array([lat]))
    lons, lats = projection.lonlat(xy[:, 0] + x0[0], xy[:, 1] + y0[0])
    return LineString(np.column_stack((lons, lats)))


def winding(n: int = 300, step: float = 25.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    heading = np.cumsum(rng.normal(0, 0.35, n))
    xy = np.cumsum(np.column_stack((np.cos(heading), np.sin(heading))) * step, axis=0)
    return np.vstack(([0.0, 0.0], xy))


HAIRPIN = np.array([[0.0, 0.0], [800.0, 0.0], [820.0, 15.0], [800.0, 30.0], [0.0, 30.0]])
LOOP = np.array([[0.0, 0.0], [600.0, 0.0], [650.0, 400.0], [100.0, 450.0], [-40.0, 200.0]])
LONG_DIAGONALS = np.array([[0.0, 0.0], [4_000.0, 3_000.0], [9_000.0, 2_000.0], [9_500.0, 8_000.0]])
REPEATED = np.array([[0.0, 0.0], [200.0, 0.0], [200.0, 0.0], [200.0, 0.0], [400.0, 100.0]])
# A dead-end street patrolled out and back: the route retraces itself exactly.
RETRACED = np.array([[0.0, 0.0], [300.0, 100.0], [600.0, 0.0], [300.0, 100.0], [0.0, 0.0]])

CASES = {
    "street in Balikpapan": (116.83, -1.268, winding(), 30.0, False),
    "hairpin, legs 30 m apart": (116.83, -1.268, HAIRPIN, 25.0, False),
    "loop": (116.83, -1.268, LOOP, 20.0, True),
    "long diagonal segments": (116.83, -1.268, LONG_DIAGONALS, 40.0, False),
    "repeated vertices": (116.83, -1.268, REPEATED, 30.0, False),
    "Tromsø (69.6 N)": (18.95, 69.65, winding(seed=1), 30.0, False),
    "across the equator": (109.3, -0.004, winding(seed=2) * np.array([0.3, 1.0]), 15.0, False),
    "wide corridor": (116.83, -1.268, winding(seed=3), 250.0, False),
    "very wide corridor": (116.83, -1.268, winding(60, 400.0, seed=4), 5_000.0, False),
    "retracing itself": (116.83, -1.268, RETRACED, 20.0, False),
    "next to the antimeridian (Fiji)": (
        179.9985,
        -16.8,
        np.array([[0.0, 0.0], [150.0, 5.0]]),
        30.0,
        False,
    ),
}


def lookup(grid: RouteGrid, corridor: Corridor, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
    """Chainage of each location as the database query finds it (NaN off route)."""
    cells: dict[tuple[int, int], list[int]] = {}
    for row, key in enumerate(zip(grid.cell_x.tolist(), grid.cell_y.tolist(), strict=True)):
        cells.setdefault(key, []).append(row)
    cx, cy = grid.cells_of(lons, lats)
    x, y = corridor.projection.xy(lons, lats)
    points = shapely.points(x, y)
    chainage = np.full(lons.size, np.nan)
    for k in range(lons.size):
        best: tuple[int, float] | None = None
        for row in cells.get((int(cx[k]), int(cy[k])), []):
            piece = grid.pieces[grid.piece[row]]
            distance = float(shapely.distance(piece, points[k]))
            if grid.inside[row]:
                assert distance <= corridor.corridor_m, "an inside cell holds an off-route point"
            elif distance > corridor.corridor_m:
                continue
            along = float(grid.piece_start_m[grid.piece[row]] + piece.project(points[k]))
            key = (round(distance * 1e6), along)  # equal to a micrometre: lower chainage
            if best is None or key < best:
                best = key
        if best is not None:
            chainage[k] = best[1]
    return chainage


@pytest.mark.parametrize("name", list(CASES))
def test_grid_lookup_matches_the_corridor(name: str) -> None:
    lon, lat, xy, corridor_m, closed = CASES[name]
    corridor = Corridor(metric_route(lon, lat, xy), corridor_m, closed)
    grid = route_grid(corridor)
    rng = np.random.default_rng(7)
    along = rng.uniform(0, corridor.length_m, 2_500)
    base = shapely.get_coordinates(shapely.line_interpolate_point(corridor.metric_line, along))
    spread = rng.choice([0.3, 1.0, 2.0], size=(along.size, 1)) * corridor_m
    x, y = (base + rng.normal(0, 1, base.shape) * spread).T
    lons, lats = corridor.projection.lonlat(x, y)

    on_route, expected = corridor.locate_on_route(lons, lats)
    found = lookup(grid, corridor, lons, lats)
    assert on_route.sum() > 500 and (~on_route).sum() > 200
    np.testing.assert_array_equal(np.isfinite(found), on_route)
    np.testing.assert_allclose(found[on_route], expected[on_route], rtol=0, atol=1e-6)


def test_pieces_are_runs_of_the_route_with_their_chainage() -> None:
    corridor = Corridor(metric_route(116.83, -1.268, winding()), 30.0)
    grid = route_grid(corridor)
    for piece, start, length in zip(
        grid.pieces, grid.piece_start_m, grid.piece_length_m, strict=True
    ):
        assert piece.length == pytest.approx(length, abs=1e-6)
        first = shapely.Point(piece.coords[0])
        assert corridor.metric_line.project(first) == pytest.approx(start, abs=1e-6)


def test_cells_near_two_legs_list_both_and_are_never_inside() -> None:
    corridor = Corridor(metric_route(116.83, -1.268, HAIRPIN), 25.0)
    grid = route_grid(corridor)
    assert grid.shared.any() and not (grid.shared & grid.inside).any()
    assert grid.inside.any(), "cells along a single leg are inside the corridor"


def test_cell_size_must_be_positive() -> None:
    corridor = Corridor(metric_route(116.83, -1.268, HAIRPIN), 25.0)
    with pytest.raises(ValueError, match="cell_m"):
        route_grid(corridor, cell_m=0.0)


def largest_routes() -> dict[str, np.ndarray]:
    """Metric shapes of 20,000 positions and ~480 km: the largest the default limits allow."""
    k = np.arange(20_000)
    rng = np.random.default_rng(5)
    rows = np.repeat(np.arange(2_000), 10)
    along = np.tile(np.linspace(0.0, 250.0, 10), 2_000)
    along[rows % 2 == 1] = 250.0 - along[rows % 2 == 1]
    return {
        "zig-zag": np.column_stack((k * 19.0, (k % 2) * 15.0)),
        # 2,000 rows of 250 m, 5 m apart: every cell is near many stretches of the route.
        "lawnmower": np.column_stack((along, rows * 5.0)),
        # One 24 m street walked back and forth, never twice on exactly the same line.
        "retracing one street": np.column_stack(((k % 2) * 24.0, np.zeros(k.size)))
        + rng.normal(0.0, 0.3, (k.size, 2)),
    }


@pytest.mark.parametrize("corridor_m", [1.0, 30.0, 1_000.0])
@pytest.mark.parametrize("name", list(largest_routes()))
def test_grid_of_the_largest_route_allowed_stays_within_budget(
    name: str, corridor_m: float
) -> None:
    corridor = Corridor(metric_route(116.83, -1.268, largest_routes()[name]), corridor_m)
    grid = route_grid(corridor)
    cells = np.unique(np.column_stack((grid.cell_x, grid.cell_y)), axis=0)
    assert len(cells) <= MAX_CELLS
    assert grid.cell_x.size <= MAX_CANDIDATES and len(grid.pieces) <= grid.cell_x.size
    if grid.most_pieces > 64:
        return  # the SQL path measures such a route in NumPy (analytics/test_tracks_parity.py)
    # Larger cells, still exact.
    rng = np.random.default_rng(8)
    along = rng.uniform(0, corridor.length_m, 600)
    base = shapely.get_coordinates(shapely.line_interpolate_point(corridor.metric_line, along))
    x, y = (base + rng.normal(0, 1.5 * corridor_m, base.shape)).T
    lons, lats = corridor.projection.lonlat(x, y)
    on_route, expected = corridor.locate_on_route(lons, lats)
    found = lookup(grid, corridor, lons, lats)
    assert on_route.sum() > 100
    np.testing.assert_array_equal(np.isfinite(found), on_route)
    np.testing.assert_allclose(found[on_route], expected[on_route], rtol=0, atol=1e-6)
