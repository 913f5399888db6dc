"""The generated election-day city: deterministic, plausible, and loadable on both backends."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from pyproj import Geod
from shapely.geometry import Point, mapping
from sqlalchemy import text

from service.config import Settings
from service.demo.city import (
    CITY_EXTENT,
    DISTRICTS,
    KPU_LONLAT,
    MIN_SPACING_M,
    STATION_KIND,
    City,
    generate_city,
    route_length_m,
    simulate_city,
)
from service.demo.run import seed
from service.store.db import Store
from tests.helpers import cli_env, run_patroli

GEOD = Geod(ellps="WGS84")


def _fingerprint(city: City) -> list[object]:
    sc = city.scenario
    return [
        [(f.name, f.kind, f.geometry.wkt, f.radius_m) for f in sc.fences],
        [(r.name, r.line.wkt, r.corridor_m, r.closed) for r in sc.routes],
        [(u.name, u.device_id) for u in sc.units],
        city.unit_routes,
    ]


def test_generator_is_deterministic() -> None:
    assert _fingerprint(generate_city()) == _fingerprint(generate_city())
    assert _fingerprint(generate_city(seed=1)) == _fingerprint(generate_city(seed=1))
    assert _fingerprint(generate_city(seed=1)) != _fingerprint(generate_city())


def test_about_a_thousand_valid_stations_inside_the_city() -> None:
    city = generate_city()
    stations = city.stations
    assert 950 <= len(stations) <= 1050
    assert len({s.name for s in city.scenario.fences}) == len(city.scenario.fences)
    lon0, lat0, lon1, lat1 = CITY_EXTENT
    for s in stations:
        assert isinstance(s.geometry, Point) and s.geometry.is_valid
        assert lon0 < s.geometry.x < lon1 and lat0 < s.geometry.y < lat1, s.name
        assert s.kind == STATION_KIND and s.radius_m == 50.0
    # No two circles overlap: the stations are at least MIN_SPACING_M apart.
    xs = [s.geometry.x for s in stations]
    ys = [s.geometry.y for s in stations]
    closest = math.inf
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            if abs(xs[i] - xs[j]) < 0.002 and abs(ys[i] - ys[j]) < 0.002:
                closest = min(closest, GEOD.inv(xs[i], ys[i], xs[j], ys[j])[2])
    assert MIN_SPACING_M * 0.95 <= closest < 1000
    kpu = city.critical_site
    assert (kpu.geometry.x, kpu.geometry.y) == KPU_LONLAT
    # Every district has its share.
    for d in DISTRICTS:
        short = d.name.removeprefix("Balikpapan ")
        assert sum(s.name.endswith(f" {short}") for s in stations) == d.stations


def test_twenty_routes_through_their_district_stations() -> None:
    city = generate_city()
    routes = city.scenario.routes
    assert len(routes) == 20
    assert set(city.route_districts) == {d.name for d in DISTRICTS}
    station_points = {(s.geometry.x, s.geometry.y) for s in city.stations}
    for route in routes:
        coords = list(route.line.coords)
        assert route.closed and coords[0] == coords[-1]
        assert route.line.is_valid and route.line.is_simple, route.name
        assert set(coords) <= station_points, route.name
        assert 1000 <= route_length_m(route) <= 8000, route.name


def test_two_hundred_units_ten_per_route() -> None:
    city = generate_city()
    units = city.scenario.units
    assert len(units) == 200 and len({u.device_id for u in units}) == 200
    assert len(city.unit_routes) == 200
    assert [city.unit_routes.count(r) for r in range(20)] == [10] * 20


def test_simulated_units_report_every_five_seconds_along_their_route() -> None:
    city = generate_city()
    start = datetime(2026, 2, 14, 1, 0, tzinfo=UTC)
    parts = list(simulate_city(city, start, 600.0))
    assert len(parts) == 20
    devices = {p.device_id for part in parts for p in part}
    assert devices == {u.device_id for u in city.scenario.units}
    for index, part in enumerate(parts):
        route = city.scenario.routes[index]
        by_device: dict[str, list[datetime]] = {}
        for p in part:
            by_device.setdefault(p.device_id, []).append(p.ts)
        for times in by_device.values():
            steps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
            assert 4.0 <= sorted(steps)[len(steps) // 2] <= 6.0
        # Most fixes lie near the route (the rest: parking, bad fixes, the excursion).
        near = sum(
            GEOD.inv(p.lon, p.lat, *_nearest(route.line, p.lon, p.lat))[2] < 200 for p in part
        )
        assert near >= 0.9 * len(part), route.name


def _nearest(line: object, lon: float, lat: float) -> tuple[float, float]:
    from shapely.ops import nearest_points

    point = nearest_points(line, Point(lon, lat))[0]
    return point.x, point.y


def test_load_through_the_api(client: TestClient) -> None:
    city = generate_city()
    sc = city.scenario
    route_ids = []
    for r in sc.routes:
        feature = {
            "type": "Feature",
            "geometry": mapping(r.line),
            "properties": {"name": r.name, "corridor_m": r.corridor_m, "closed": r.closed},
        }
        resp = client.post("/api/v1/patrol-routes", json=feature)
        assert resp.status_code == 201, resp.text
        route_ids.append(resp.json()["id"])
    # The KPU office and one district's stations (the store test below takes all 1,001).
    fences = [f for f in sc.fences if f.kind != STATION_KIND or f.name.endswith(" Kota")]
    assert len(fences) == 131
    for f in fences:
        props = {"name": f.name, "kind": f.kind, "radius_m": f.radius_m}
        feature = {"type": "Feature", "geometry": mapping(f.geometry), "properties": props}
        resp = client.post("/api/v1/geofences", json=feature)
        assert resp.status_code == 201, resp.text
    for u, r in zip(sc.units, city.unit_routes, strict=True):
        body = {"name": u.name, "device_id": u.device_id, "patrol_route_ids": [route_ids[r]]}
        resp = client.post("/api/v1/units", json=body)
        assert resp.status_code == 201, resp.text
    assert len(client.get("/api/v1/geofences").json()["features"]) == len(fences)
    assert len(client.get("/api/v1/patrol-routes").json()["features"]) == 20
    units = client.get("/api/v1/units").json()
    assert len(units) == 200
    assert {tuple(u["patrol_route_ids"]) for u in units} == {(i,) for i in route_ids}

    # A minute of simulated pings of every unit is accepted.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    pings = [p for part in simulate_city(city, start, 60.0) for p in part]
    body = [
        {"device_id": p.device_id, "ts": p.ts.isoformat(), "lat": p.lat, "lon": p.lon}
        for p in pings
    ]
    resp = client.post("/api/v1/pings", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == len(pings) >= 200 * 10


def test_demo_seed_stores_the_city(settings: Settings, client: TestClient) -> None:
    city = generate_city()
    store = Store.from_url(settings.database_url)
    try:
        seed(store, city.scenario, settings, city.unit_routes)
    finally:
        store.dispose()
    fences = client.get("/api/v1/geofences").json()["features"]
    assert len(fences) == 1001
    assert sum(f["properties"]["kind"] == "critical_site" for f in fences) == 1
    routes = {
        f["properties"]["name"]: f["id"]
        for f in client.get("/api/v1/patrol-routes").json()["features"]
    }
    units = {u["device_id"]: u for u in client.get("/api/v1/units").json()}
    for u, r in zip(city.scenario.units, city.unit_routes, strict=True):
        assert units[u.device_id]["patrol_route_ids"] == [routes[city.scenario.routes[r].name]]


def test_patroli_demo_scenario_city(tmp_path: Path) -> None:
    db = tmp_path / "city.db"
    result = run_patroli(
        "demo",
        "--scenario",
        "city",
        "--database",
        f"sqlite:///{db}",
        # Longer than two of the simulation's tracker outages (each at most 9.5 min) in a row:
        # every unit has reported at least once.
        "--hours",
        "0.4",
        "--no-serve",
        env=cli_env("sqlite:///unused.db"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Seeding 200 units, 20 patrol routes, 1001 geofences" in out
    stored = int(out.split("pings stored")[0].split(":")[-1].strip())
    assert stored > 200 * 144 * 0.7  # 200 units, 24 min, every 10 s, minus gaps
    store = Store.from_url(f"sqlite:///{db}")
    try:
        with store.read() as session:
            per_route = session.execute(
                text(
                    "SELECT patrol_route_id, count(*) FROM unit_patrol_routes "
                    "GROUP BY patrol_route_id"
                )
            ).all()
            reporting = session.execute(text("SELECT count(DISTINCT unit_id) FROM pings")).scalar()
    finally:
        store.dispose()
    assert sorted(n for _, n in per_route) == [10] * 20
    assert reporting == 200
