"""The PostGIS SQL coverage path gives the same visits as the Shapely/NumPy path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shapely.geometry import LineString
from sqlalchemy import text

from service.analytics import tracks as coverage_sql
from service.analytics.tracks import Method, stored_route_coverage, unit_tracks
from service.areas.features import get_route
from service.areas.index import corridor_from_row
from service.geo import cells
from service.geo.coverage import VisitRuns, visit_runs
from service.quality import Flag
from service.store.bulk import insert_pings
from service.store.db import Store
from service.store.migrate import upgrade
from service.store.models import PatrolRoute, Unit
from service.window import Window

T0 = datetime(2024, 11, 26, 23, 0, tzinfo=UTC)
WINDOW = Window(T0 + timedelta(minutes=5), T0 + timedelta(minutes=35))
LON, LAT = 116.8300, -1.2680
OPEN = LineString([(LON, LAT), (LON + 0.006, LAT + 0.001), (LON + 0.009, LAT - 0.004),
                   (LON + 0.015, LAT - 0.003)])  # fmt: skip
LOOP = LineString([(LON, LAT), (LON + 0.005, LAT), (LON + 0.006, LAT + 0.004),
                   (LON + 0.001, LAT + 0.005), (LON - 0.001, LAT + 0.002)])  # fmt: skip
# Out and back along two legs ~33 m apart: fixes between them lie within both corridors.
HAIRPIN = LineString([(LON, LAT - 0.01), (LON + 0.02, LAT - 0.01), (LON + 0.0203, LAT - 0.00985),
                      (LON + 0.02, LAT - 0.0097), (LON, LAT - 0.0097)])  # fmt: skip


def _tracks(route: PatrolRoute, seed: int, units: list[int]) -> list[dict[str, Any]]:
    """Random tracks of several units along and around a route: gaps, excursions, bad fixes."""
    rng = np.random.default_rng(seed)
    corridor = corridor_from_row(route)
    length = corridor.length_m
    rows: list[dict[str, Any]] = []
    for unit_id in units:
        n = 1500
        dt = rng.choice([0.0, 3.0, 7.5, 15.0, 30.0, 45.0, 90.0, 400.0], size=n,
                        p=[0.02, 0.2, 0.25, 0.25, 0.13, 0.07, 0.05, 0.03])  # fmt: skip
        t = np.cumsum(dt + rng.integers(0, 1000, size=n) / 1000.0 * (dt > 0))
        speed = rng.normal(0.0, 2.5, size=n)
        speed[rng.random(n) < 0.05] *= -1
        c = rng.uniform(0, length) + np.cumsum(speed * np.r_[0.0, np.diff(t)])
        c = (
            np.mod(c, length)
            if route.closed
            else np.abs(length - np.abs(np.mod(c, 2 * length) - length))
        )
        lateral = rng.normal(0.0, 10.0, size=n)
        away = rng.random(n) < 0.12
        lateral[away] = rng.choice([-1, 1], size=int(away.sum())) * rng.uniform(
            35, 250, size=int(away.sum())
        )
        angle = rng.uniform(0, 2 * np.pi, size=n)
        base = [corridor.metric_line.interpolate(float(x)) for x in c]
        x = np.array([p.x for p in base]) + lateral * np.cos(angle)
        y = np.array([p.y for p in base]) + lateral * np.sin(angle)
        lon, lat = corridor.projection.lonlat(x, y)
        flags = np.where(rng.random(n) < 0.04, int(Flag.INACCURATE), 0)
        flags[rng.random(n) < 0.03] |= int(Flag.LATE)  # late fixes still count
        for k in range(n):
            ts = T0 + timedelta(seconds=float(t[k]))
            rows.append({
                "unit_id": unit_id, "ts": ts, "received_at": ts, "lon": float(lon[k]),
                "lat": float(lat[k]), "speed_mps": None, "heading": None, "accuracy_m": None,
                "altitude_m": None, "battery": None, "flags": int(flags[k]), "source": "json",
                "client_ping_id": None, "attributes": None,
            })  # fmt: skip
    return rows


def _load(store: Store, seed: int) -> dict[str, int]:
    """Units, both routes and random pings; returns route ids by name."""
    with store.write() as session:
        units = [Unit(name=f"U{k}", device_id=f"u{k}") for k in range(8)]
        open_route = PatrolRoute(name="open", corridor_m=30.0, closed=False, geom=OPEN)
        loop = PatrolRoute(name="loop", corridor_m=25.0, closed=True, geom=LOOP)
        hairpin = PatrolRoute(name="hairpin", corridor_m=25.0, closed=False, geom=HAIRPIN)
        session.add_all([*units, open_route, loop, hairpin])
        session.flush()
        ids = [u.id for u in units]
        rows = (
            _tracks(open_route, seed, ids[:3])
            + _tracks(loop, seed + 1, ids[3:6])
            + _tracks(hairpin, seed + 2, ids[6:])
        )
        insert_pings(session, rows)
        return {"open": open_route.id, "loop": loop.id, "hairpin": hairpin.id}


def _runs(
    store: Store, route_id: int, method: Method, unit_id: int | None = None
) -> tuple[VisitRuns, list[int], float, int, int]:
    """Visits, unit ids, coverage ratio, fixes read and off-route fixes read, by one path."""
    with store.read() as session:
        corridor = corridor_from_row(get_route(session, route_id))
        pairs = unit_tracks(session, corridor, WINDOW, unit_id=unit_id, method=method)
        runs = visit_runs(corridor.length_m, [t for _, t in pairs], WINDOW.start.timestamp(),
                          WINDOW.end.timestamp(), closed=corridor.closed, segment_m=10.0,
                          max_gap_s=60.0)  # fmt: skip
        ratio = stored_route_coverage(session, corridor, WINDOW, 10.0, 60.0, method).coverage_ratio
    fixes = sum(t.t.size for _, t in pairs)
    off = sum(int((~t.on_route).sum()) for _, t in pairs)
    return runs, [u for u, _ in pairs], ratio, fixes, off


def _visits(runs: VisitRuns, units: list[int]) -> list[tuple[int, int]]:
    return list(zip(runs.segment.tolist(), [units[u] for u in runs.unit], strict=True))


@pytest.fixture
def stores(postgis_url: str, tmp_path: Path) -> Iterator[dict[str, Store]]:
    """An empty PostGIS store and an empty SQLite store."""
    pg = Store.from_url(postgis_url)
    with pg.write() as session:
        session.execute(text("TRUNCATE pings, units, patrol_routes RESTART IDENTITY CASCADE"))
    lite = Store.from_url(f"sqlite:///{tmp_path / 'parity.db'}")
    upgrade(lite.engine)
    yield {"postgis": pg, "sqlite": lite}
    pg.dispose()
    lite.dispose()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_path_matches_shapely_path(stores: dict[str, Store], seed: int) -> None:
    routes = {name: _load(store, seed) for name, store in stores.items()}
    for route in ("open", "loop", "hairpin"):
        sql = _runs(stores["postgis"], routes["postgis"][route], "sql")
        ref = _runs(stores["postgis"], routes["postgis"][route], "numpy")
        lite = _runs(stores["sqlite"], routes["sqlite"][route], "numpy")
        assert sql[0].segment.size > 100, "the random tracks should visit the route"
        assert 0.05 < sql[2] < 0.95, "the random tracks should leave parts of the route unvisited"
        for other in (ref, lite):
            assert _visits(sql[0], sql[1]) == _visits(other[0], other[1]), route
            np.testing.assert_allclose(sql[0].entry, other[0].entry, rtol=0, atol=1e-3)
            np.testing.assert_allclose(sql[0].exit, other[0].exit, rtol=0, atol=1e-3)
            assert sql[2] == pytest.approx(other[2], abs=1e-12)
        # Only on-route fixes and their off-route neighbours (as markers) leave the database.
        assert 0 < sql[4] < ref[4] and sql[3] - sql[4] == ref[3] - ref[4]


def test_sql_path_for_one_unit_matches(stores: dict[str, Store]) -> None:
    routes = _load(stores["postgis"], 4)
    for route, unit in (("open", 2), ("hairpin", 7)):
        sql = _runs(stores["postgis"], routes[route], "sql", unit)
        ref = _runs(stores["postgis"], routes[route], "numpy", unit)
        assert sql[1] == ref[1] == [unit]
        assert _visits(sql[0], sql[1]) == _visits(ref[0], ref[1]) and sql[0].segment.size > 50
        np.testing.assert_allclose(sql[0].entry, ref[0].entry, rtol=0, atol=1e-3)


def test_auto_is_sql_on_postgis_and_numpy_on_sqlite(stores: dict[str, Store]) -> None:
    for name, store in stores.items():
        route_id = _load(store, 5)["loop"]
        auto = _runs(store, route_id, "auto")
        expected = _runs(store, route_id, "sql" if name == "postgis" else "numpy")
        # The SQL path reads only on-route fixes and their neighbours: fewer off-route fixes.
        assert (auto[3], auto[4]) == (expected[3], expected[4]), name


def test_sql_path_matches_on_a_route_retracing_itself(stores: dict[str, Store]) -> None:
    # A dead-end street patrolled out and back: each fix is as near the outbound leg as the
    # return leg, and both paths give it the lower chainage.
    out = [(LON, LAT + 0.02), (LON + 0.0027, LAT + 0.0209), (LON + 0.0054, LAT + 0.02)]
    line = LineString(out + out[-2::-1])
    results = {}
    for name, store in stores.items():
        with store.write() as session:
            unit = Unit(name="U", device_id="u-retrace")
            route = PatrolRoute(name="retrace", corridor_m=20.0, closed=False, geom=line)
            session.add_all([unit, route])
            session.flush()
            insert_pings(session, _tracks(route, 11, [unit.id]))
            route_id = route.id
        for method in ("sql", "numpy") if name == "postgis" else ("numpy",):
            results[name, method] = _runs(store, route_id, method)
    sql = results["postgis", "sql"]
    assert sql[0].segment.size > 50
    half = len(sql[0].bounds) // 2
    assert sql[0].segment.max() < half + 2, "fixes land on the outbound leg (lower chainage)"
    for other in (results["postgis", "numpy"], results["sqlite", "numpy"]):
        assert _visits(sql[0], sql[1]) == _visits(other[0], other[1])
        assert sql[2] == pytest.approx(other[2], abs=1e-12)


@pytest.fixture
def fresh_grids() -> Iterator[None]:
    """Grid parameters built anew (a test changes the grid budget), and dropped after."""
    coverage_sql._grid_params.cache_clear()
    yield
    coverage_sql._grid_params.cache_clear()


def test_sql_path_matches_with_cells_grown_to_fit_the_budget(
    stores: dict[str, Store], fresh_grids: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A budget of 60 cells makes the cells several times the corridor: fewer are inside,
    # more fixes are measured, the visits are the same.
    monkeypatch.setattr(cells, "MAX_CELLS", 60)
    routes = _load(stores["postgis"], 6)
    for route in ("open", "loop", "hairpin"):
        with stores["postgis"].read() as session:
            corridor = corridor_from_row(get_route(session, routes[route]))
        grid = cells.route_grid(corridor)
        assert len(set(zip(grid.cell_x.tolist(), grid.cell_y.tolist(), strict=True))) <= 60
        assert grid.dlat * 110_000.0 > 2 * corridor.corridor_m
        sql = _runs(stores["postgis"], routes[route], "sql")
        ref = _runs(stores["postgis"], routes[route], "numpy")
        assert sql[0].segment.size > 100
        assert _visits(sql[0], sql[1]) == _visits(ref[0], ref[1]), route
        np.testing.assert_allclose(sql[0].entry, ref[0].entry, rtol=0, atol=1e-3)
        assert sql[2] == pytest.approx(ref[2], abs=1e-12)


def test_a_route_folded_onto_itself_is_measured_in_numpy(
    stores: dict[str, Store], fresh_grids: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any cell listing more pieces than allowed (here: more than none) sends the route to
    # NumPy, which reads every fix of the window instead of only those near the route.
    monkeypatch.setattr(coverage_sql, "MAX_PIECES_PER_CELL", 0)
    routes = _load(stores["postgis"], 7)
    sql = _runs(stores["postgis"], routes["hairpin"], "sql")
    ref = _runs(stores["postgis"], routes["hairpin"], "numpy")
    assert _visits(sql[0], sql[1]) == _visits(ref[0], ref[1]) and sql[0].segment.size > 100
    assert (sql[3], sql[4]) == (ref[3], ref[4])
