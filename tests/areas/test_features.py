"""Patrol routes and geofences: GeoJSON in and out, invalid geometry refused with a reason."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.areas.index import corridor_from_row
from service.config import Settings
from service.geo.corridor import Corridor
from service.store.models import PatrolRoute
from tests.conftest import ADMIN_KEY
from tests.helpers import (
    LAT,
    LON0,
    LON1,
    box_ring,
    circle_feature,
    line_feature,
    ping,
    polygon_feature,
    route_feature,
    window,
    zigzag_positions,
)


def test_route_round_trip(client: TestClient) -> None:
    r = client.post("/api/v1/patrol-routes", json=route_feature(corridor_m=40, closed=False))
    assert r.status_code == 201, r.text
    feature = r.json()
    assert feature["type"] == "Feature"
    assert feature["geometry"] == {
        "type": "LineString",
        "coordinates": [[LON0, LAT], [LON1, LAT]],
    }
    props = feature["properties"]
    assert props["corridor_m"] == 40 and props["closed"] is False
    assert props["length_m"] == pytest.approx(1001.5, abs=1.0)
    fc = client.get("/api/v1/patrol-routes").json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1


def test_route_patch_and_delete(client: TestClient) -> None:
    rid = client.post("/api/v1/patrol-routes", json=route_feature()).json()["id"]
    r = client.patch(f"/api/v1/patrol-routes/{rid}", json={"properties": {"corridor_m": 55}})
    assert r.status_code == 200
    assert r.json()["properties"]["corridor_m"] == 55
    assert r.json()["properties"]["name"] == "Jl. Sudirman"
    new_line = {"type": "LineString", "coordinates": [[LON0, LAT], [LON0, LAT + 0.01]]}
    r = client.patch(f"/api/v1/patrol-routes/{rid}", json={"geometry": new_line})
    assert r.json()["geometry"]["coordinates"][1] == [LON0, LAT + 0.01]
    assert client.delete(f"/api/v1/patrol-routes/{rid}").status_code == 204
    assert client.get(f"/api/v1/patrol-routes/{rid}").status_code == 404


@pytest.mark.parametrize(
    ("coordinates", "message"),
    [
        ([[LON0, LAT]], "at least 2"),
        ([[LON0, LAT], [LON0, LAT]], "2 distinct points"),
        ([[LON0, 95.0], [LON1, LAT]], "latitude 95.0 out of range"),
        ([[190.0, LAT], [LON1, LAT]], "longitude 190.0 out of range"),
    ],
)
def test_invalid_route_is_422_naming_the_problem(
    client: TestClient, coordinates: list, message: str
) -> None:
    feature = route_feature()
    feature["geometry"]["coordinates"] = coordinates
    r = client.post("/api/v1/patrol-routes", json=feature)
    assert r.status_code == 422
    assert message in r.json()["detail"]
    assert client.get("/api/v1/patrol-routes").json()["features"] == []


def test_circle_and_polygon_geofences(client: TestClient) -> None:
    r = client.post("/api/v1/geofences", json=circle_feature(116.834, LAT, min_dwell_s=600))
    assert r.status_code == 201, r.text
    props = r.json()["properties"]
    assert props["radius_m"] == 150 and props["kind"] == "critical_site"
    assert props["min_dwell_s"] == 600
    square = [
        [116.83, -1.27],
        [116.831, -1.27],
        [116.831, -1.269],
        [116.83, -1.269],
        [116.83, -1.27],
    ]
    poly = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [square]},
        "properties": {"name": "Pos jaga", "kind": "checkpoint"},
    }
    r = client.post("/api/v1/geofences", json=poly)
    assert r.status_code == 201, r.text
    assert r.json()["geometry"]["type"] == "Polygon"
    assert len(client.get("/api/v1/geofences").json()["features"]) == 2


@pytest.mark.parametrize(
    ("geometry", "props", "message"),
    [
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
            {},
            "same start and end",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            {},
            "Self-intersection",
        ),
        ({"type": "Point", "coordinates": [116.83, -1.27]}, {}, "radius_m"),
        ({"type": "Point", "coordinates": [116.83, -91]}, {"radius_m": 100}, "latitude"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
            {"radius_m": 5},
            "radius_m only applies",
        ),
    ],
)
def test_invalid_geofence_is_422(
    client: TestClient, geometry: dict, props: dict, message: str
) -> None:
    feature = {"type": "Feature", "geometry": geometry, "properties": {"name": "x", **props}}
    r = client.post("/api/v1/geofences", json=feature)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_geofence_patch_circle_to_polygon(client: TestClient) -> None:
    fid = client.post("/api/v1/geofences", json=circle_feature(116.834, LAT)).json()["id"]
    r = client.patch(f"/api/v1/geofences/{fid}", json={"properties": {"radius_m": 200}})
    assert r.json()["properties"]["radius_m"] == 200
    square = [[116.83, -1.27], [116.831, -1.27], [116.831, -1.269], [116.83, -1.27]]
    r = client.patch(
        f"/api/v1/geofences/{fid}", json={"geometry": {"type": "Polygon", "coordinates": [square]}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["radius_m"] is None


# ---- limits on geometry work -------------------------------------------------------------


@pytest.fixture
def limited(make_settings: Callable[..., Settings]) -> Callable[..., TestClient]:
    """An admin client of an app built with some settings changed (closed by the test)."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        c = TestClient(create_app(make_settings(**overrides)))
        c.__enter__()
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        clients.append(c)
        return c

    yield build  # type: ignore[misc]
    for c in clients:
        c.__exit__(None, None, None)


def _stored(client: TestClient, kind: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/v1/{kind}").json()["features"])


def test_route_over_the_vertex_limit_is_413_naming_the_setting(client: TestClient) -> None:
    r = client.post("/api/v1/patrol-routes", json=line_feature(zigzag_positions(20_001)))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == (
        "the patrol route has 20001 positions; at most 20000 are allowed "
        "(PATROLI_MAX_GEOMETRY_VERTICES)"
    )
    assert _stored(client, "patrol-routes") == []


def test_the_largest_route_allowed_is_accepted(client: TestClient) -> None:
    r = client.post("/api/v1/patrol-routes", json=line_feature(zigzag_positions(20_000)))
    assert r.status_code == 201, r.text
    assert 480_000 < r.json()["properties"]["length_m"] < 500_000


def test_geofence_over_the_vertex_limit_is_413(limited: Callable[..., TestClient]) -> None:
    client = limited(max_geometry_vertices=100)
    ring = [[LON0 + 0.001 * k, LAT + (0.001 if k % 2 else 0.0)] for k in range(98)]
    shell = [*ring, [ring[-1][0], LAT - 0.01], [LON0, LAT - 0.01], ring[0]]  # 101 positions
    r = client.post("/api/v1/geofences", json=polygon_feature([shell]))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == (
        "the geofence has 101 positions; at most 100 are allowed (PATROLI_MAX_GEOMETRY_VERTICES)"
    )
    # Holes count too.
    hole = box_ring(LON0 + 0.01, LAT - 0.005, 0.001, 0.001)
    outer = box_ring(LON0, LAT - 0.01, 0.1, 0.1)
    r = client.post("/api/v1/geofences", json=polygon_feature([outer, *[hole] * 20]))
    assert r.status_code == 413 and "has 105 positions" in r.json()["detail"]
    assert _stored(client, "geofences") == []


def test_zigzag_route_too_long_is_422_naming_the_setting(client: TestClient) -> None:
    # The shape that took minutes and gigabytes: a zig-zag of 55 km legs (here 50 of them).
    positions = [[116.0 + k * 0.02, -1.0 if k % 2 else -1.5] for k in range(50)]
    r = client.post("/api/v1/patrol-routes", json=line_feature(positions))
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        "the patrol route is 2711.3 km long; at most 500 km is allowed "
        "(PATROLI_MAX_ROUTE_LENGTH_KM)"
    )
    assert _stored(client, "patrol-routes") == []


def test_closing_a_route_counts_the_way_back(limited: Callable[..., TestClient]) -> None:
    client = limited(max_route_length_km=1.5)
    # Out 1 km and back north 0.3 km: 1.3 km open, 2.3 km closed.
    out = [[LON0, LAT], [LON1, LAT], [LON1, LAT + 0.0027]]
    assert client.post("/api/v1/patrol-routes", json=line_feature(out)).status_code == 201
    r = client.post("/api/v1/patrol-routes", json=line_feature(out, closed=True))
    assert r.status_code == 422
    assert "at most 1.5 km is allowed (PATROLI_MAX_ROUTE_LENGTH_KM)" in r.json()["detail"]


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        # Edges are straight in lon/lat: this one runs the long way round the world.
        ([[179.9, 0.0], [-179.9, 0.0]], "the patrol route extends 40052.8 km east-west"),
        ([[116.8, -5.0], [116.8, 0.0]], "the patrol route extends 552.9 km north-south"),
    ],
)
def test_route_extending_too_far_is_422(
    client: TestClient, positions: list[list[float]], message: str
) -> None:
    r = client.post("/api/v1/patrol-routes", json=line_feature(positions))
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"{message}; at most 500 km is allowed (PATROLI_MAX_EXTENT_KM)"


def test_geofence_covering_the_world_is_422(client: TestClient) -> None:
    world = box_ring(-180.0, -90.0, 360.0, 180.0)
    r = client.post("/api/v1/geofences", json=polygon_feature([world]))
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        "the geofence extends 40075.0 km east-west; at most 500 km is allowed "
        "(PATROLI_MAX_EXTENT_KM)"
    )
    # A province-sized one is still too wide; a district-sized one is fine.
    r = client.post("/api/v1/geofences", json=polygon_feature([box_ring(114.0, -2.0, 6.0, 1.0)]))
    assert r.status_code == 422 and "extends 667.8 km east-west" in r.json()["detail"]
    r = client.post("/api/v1/geofences", json=polygon_feature([box_ring(116.0, -1.5, 2.0, 2.0)]))
    assert r.status_code == 201, r.text
    assert len(_stored(client, "geofences")) == 1


@pytest.mark.parametrize(
    ("kind", "feature", "message"),
    [
        (
            "patrol-routes",
            route_feature(corridor_m=1500),
            "corridor_m 1500 m exceeds the limit of 1000 m (PATROLI_MAX_CORRIDOR_M)",
        ),
        (
            "geofences",
            circle_feature(116.834, LAT, radius_m=50_001),
            "radius_m 50001 m exceeds the limit of 50000 m (PATROLI_MAX_RADIUS_M)",
        ),
        (
            "geofences",
            circle_feature(116.834, LAT, hysteresis_m=1000.5),
            "hysteresis_m 1000.5 m exceeds the limit of 1000 m (PATROLI_MAX_HYSTERESIS_M)",
        ),
    ],
)
def test_distance_over_its_limit_is_422(
    client: TestClient, kind: str, feature: dict[str, Any], message: str
) -> None:
    r = client.post(f"/api/v1/{kind}", json=feature)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == message
    assert _stored(client, kind) == []


def test_limits_follow_the_settings(limited: Callable[..., TestClient]) -> None:
    client = limited(max_geometry_vertices=5, max_corridor_m=50, max_radius_m=200, max_extent_km=2)
    r = client.post("/api/v1/patrol-routes", json=line_feature(zigzag_positions(6)))
    assert r.status_code == 413 and "at most 5 are allowed" in r.json()["detail"]
    r = client.post("/api/v1/patrol-routes", json=route_feature(corridor_m=60))
    assert r.status_code == 422 and "limit of 50 m" in r.json()["detail"]
    r = client.post("/api/v1/geofences", json=circle_feature(116.834, LAT, radius_m=250))
    assert r.status_code == 422 and "(PATROLI_MAX_RADIUS_M)" in r.json()["detail"]
    r = client.post("/api/v1/geofences", json=polygon_feature([box_ring(LON0, LAT, 0.03, 0.01)]))
    assert r.status_code == 422 and "at most 2 km is allowed" in r.json()["detail"]
    assert client.post("/api/v1/patrol-routes", json=route_feature()).status_code == 201


def test_route_patch_is_checked_against_the_limits(client: TestClient) -> None:
    created = client.post("/api/v1/patrol-routes", json=route_feature()).json()
    url = f"/api/v1/patrol-routes/{created['id']}"
    big = {"type": "LineString", "coordinates": zigzag_positions(20_001)}
    r = client.patch(url, json={"geometry": big})
    assert r.status_code == 413 and "(PATROLI_MAX_GEOMETRY_VERTICES)" in r.json()["detail"]
    legs = [[116.0 + k * 0.02, -1.0 if k % 2 else -1.5] for k in range(20)]
    r = client.patch(url, json={"geometry": {"type": "LineString", "coordinates": legs}})
    assert r.status_code == 422 and "(PATROLI_MAX_ROUTE_LENGTH_KM)" in r.json()["detail"]
    r = client.patch(url, json={"properties": {"corridor_m": 5000}})
    assert r.status_code == 422 and "(PATROLI_MAX_CORRIDOR_M)" in r.json()["detail"]
    mixed = {"type": "LineString", "coordinates": [[LON0, LAT], [LON1, LAT, 12.0]]}
    r = client.patch(url, json={"geometry": mixed})
    assert r.status_code == 422 and "mixes 2D and 3D positions" in r.json()["detail"]
    assert client.get(url).json() == created


def test_closing_a_route_by_patch_is_checked(limited: Callable[..., TestClient]) -> None:
    client = limited(max_route_length_km=1.5)
    out = [[LON0, LAT], [LON1, LAT], [LON1, LAT + 0.0027]]
    created = client.post("/api/v1/patrol-routes", json=line_feature(out)).json()
    url = f"/api/v1/patrol-routes/{created['id']}"
    r = client.patch(url, json={"properties": {"closed": True}})
    assert r.status_code == 422 and "(PATROLI_MAX_ROUTE_LENGTH_KM)" in r.json()["detail"]
    assert client.get(url).json() == created


def test_geofence_patch_is_checked_against_the_limits(client: TestClient) -> None:
    created = client.post("/api/v1/geofences", json=circle_feature(116.834, LAT)).json()
    url = f"/api/v1/geofences/{created['id']}"
    world = {"type": "Polygon", "coordinates": [box_ring(-180.0, -90.0, 360.0, 180.0)]}
    r = client.patch(url, json={"geometry": world})
    assert r.status_code == 422 and "(PATROLI_MAX_EXTENT_KM)" in r.json()["detail"]
    r = client.patch(url, json={"properties": {"radius_m": 60_000}})
    assert r.status_code == 422 and "(PATROLI_MAX_RADIUS_M)" in r.json()["detail"]
    r = client.patch(url, json={"properties": {"hysteresis_m": 2000}})
    assert r.status_code == 422 and "(PATROLI_MAX_HYSTERESIS_M)" in r.json()["detail"]
    assert client.get(url).json() == created


# ---- malformed geometry: a 4xx that says what is wrong, never a 5xx -----------------------

_ROUTE = '{"type":"Feature","geometry":%s,"properties":{"name":"x"}}'
_SQUARE = [[116.83, -1.27], [116.831, -1.27], [116.831, -1.269], [116.83, -1.269], [116.83, -1.27]]


def _polygon(*rings: list[list[float]]) -> str:
    return json.dumps({"type": "Polygon", "coordinates": list(rings)})


@pytest.mark.parametrize(
    ("kind", "body", "status", "message"),
    [
        ("patrol-routes", '{"type":"Feature","geometry":null,"properties":null}', 422,
         "body.geometry: Input should be a valid dictionary"),
        ("geofences", '{"type":"Feature","geometry":null,"properties":null}', 422,
         "body.geometry: Input should be a valid dictionary"),
        ("patrol-routes", '{"type":"Feature","geometry":null,"properties":{"name":"x"}}', 422,
         "body.geometry"),
        ("geofences", '{"type":"Feature","geometry":{"type":"Point","coordinates":[116.8,-1.2]},'
         '"properties":null}', 422, "body.properties"),
        ("patrol-routes", _ROUTE % '{"type":"LineString","coordinates":[[116.83,-1.268],'
         '[116.839,-1.268,5]]}', 422,
         "the patrol route mixes 2D and 3D positions: position 0 has 2 values, position 1 has 3"),
        ("geofences", _ROUTE % _polygon([*_SQUARE[:2], [116.831, -1.269, 3.0], *_SQUARE[3:]]),
         422, "the polygon ring mixes 2D and 3D positions"),
        ("geofences", _ROUTE % _polygon(
            _SQUARE, [[116.8302, -1.2698, 1], [116.8304, -1.2698], [116.8304, -1.2696],
                      [116.8302, -1.2698, 1]]), 422, "the hole 1 mixes 2D and 3D positions"),
        ("patrol-routes", _ROUTE % '{"type":"LineString","coordinates":[[NaN,1],[2,2]]}', 422,
         "coordinate (nan, 1.0) is not finite"),
        ("patrol-routes", _ROUTE % '{"type":"LineString","coordinates":[[2,2],[1,-Infinity]]}',
         422, "coordinate (1.0, -inf) is not finite"),
        ("patrol-routes", _ROUTE % '{"type":"LineString","coordinates":[[1e400,1],[2,2]]}', 422,
         "coordinate (inf, 1.0) is not finite"),
        ("geofences", '{"type":"Feature","geometry":{"type":"Point","coordinates":[1e308,1]},'
         '"properties":{"name":"x","radius_m":10}}', 422,
         "longitude 1e+308 out of range [-180, 180]"),
        ("patrol-routes", _ROUTE % ('{"type":"LineString","coordinates":[[' + "9" * 400
         + ',1],[2,2]]}'), 422, "Input should be a valid number"),
        ("patrol-routes", _ROUTE % '{"type":"LineString","coordinates":[]}', 422,
         "List should have at least 2 items"),
        ("geofences", _ROUTE % '{"type":"Polygon","coordinates":[]}', 422, "polygon is empty"),
        ("geofences", _ROUTE % '{"type":"Polygon","coordinates":[[]]}', 422,
         "List should have at least 4 items"),
        ("geofences", _ROUTE % '{"type":"Point","coordinates":[]}', 422, "body.geometry.Point"),
        ("geofences", _ROUTE % '{"type":"GeometryCollection","geometries":[]}', 422,
         "does not match any of the expected tags: 'Polygon', 'Point'"),
        ("patrol-routes", _ROUTE % '{"type":"GeometryCollection","geometries":[]}', 422,
         "body.geometry.type: Input should be 'LineString'"),
        ("patrol-routes", _ROUTE % ('{"type":"LineString","coordinates":' + "[" * 5000
         + "]" * 5000 + "}"), 400, "error parsing the body"),
        ("patrol-routes", _ROUTE % '{"type":"LineString","coordinates":[[[1,2]],[[3,4]]]}', 422,
         "body.geometry.coordinates.0"),
        ("patrol-routes", _ROUTE % '{"type":"LineString","coordinates":[[1,2],[1,2],[1,2]]}',
         422, "line needs at least 2 distinct points"),
        ("geofences", _ROUTE % _polygon([[1, 2], [1, 2], [1, 2], [1, 2]]), 422,
         "polygon has zero area"),
        ("geofences", _ROUTE % _polygon(
            _SQUARE, [[117.0, -1.0], [117.001, -1.0], [117.001, -0.999], [117.0, -1.0]]), 422,
         "polygon is invalid: Hole lies outside shell"),
        ("geofences", _ROUTE % _polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]), 422,
         "polygon is invalid: Self-intersection"),
    ],
)  # fmt: skip
def test_malformed_geometry_is_a_4xx_naming_the_problem(
    client: TestClient, kind: str, body: str, status: int, message: str
) -> None:
    r = client.post(f"/api/v1/{kind}", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert _stored(client, kind) == []


# ---- geometry work holds up no one -------------------------------------------------------


@pytest.fixture
def wait_inside(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], tuple[Any, Any]]]:
    """Make a Corridor step of a large route wait until the test says go.

    Returns (started, go) events for the named step: "build" (the corridor's construction) or
    "segments" (cutting it into map segments). Only routes of over 1,000 positions wait.
    """
    released: list[threading.Event] = []

    def hold(step: str) -> tuple[threading.Event, threading.Event]:
        started, go = threading.Event(), threading.Event()
        released.append(go)
        original = getattr(Corridor, "__init__" if step == "build" else "segment_lines")

        def waiting(self: Corridor, *args: Any, **kwargs: Any) -> Any:
            line = args[0] if step == "build" else self.line
            if len(line.coords) > 1_000 and not go.is_set():
                started.set()
                go.wait(60)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Corridor, "__init__" if step == "build" else "segment_lines", waiting)
        return started, go

    yield hold
    for go in released:
        go.set()


_ROUTES = itertools.count(1)


def _largest_route() -> dict[str, Any]:
    """The largest route the default limits allow, a little apart from any built before it.

    Built corridors are shared by their geometry within the process; a new geometry makes
    sure this one is built by the request under test.
    """
    return line_feature(zigzag_positions(20_000, lat=LAT + next(_ROUTES) * 1e-6))


def _in_background(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def test_pings_are_stored_while_the_largest_route_is_built(
    client: TestClient, wait_inside: Callable[[str], tuple[Any, Any]]
) -> None:
    assert client.post("/api/v1/units", json={"name": "U1", "device_id": "u1"}).status_code == 201
    started, go = wait_inside("build")
    creating, created = _in_background(
        lambda: client.post("/api/v1/patrol-routes", json=_largest_route())
    )
    assert started.wait(60), "the route's corridor was never built"
    # The build is in progress (and waits for this ping): the ping must not wait for it.
    r = client.post("/api/v1/pings", json=ping("u1", 100.0, 0.0))
    go.set()
    creating.join(60)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert created[0].status_code == 201, created[0].text
    # The route is evaluated from the corridor built before the transaction, not a new one.
    r = client.post("/api/v1/pings", json=ping("u1", 200.0, 10.0))
    assert r.json()["results"][0]["evaluation"]["patrol_routes"][0]["on_route"] is True


def test_pings_are_stored_while_the_coverage_map_is_drawn(
    client: TestClient, wait_inside: Callable[[str], tuple[Any, Any]]
) -> None:
    client.post("/api/v1/patrol-routes", json=_largest_route())
    assert client.post("/api/v1/units", json={"name": "U1", "device_id": "u1"}).status_code == 201
    started, go = wait_inside("segments")
    drawing, drawn = _in_background(lambda: client.get("/maps/coverage", params=window(24)))
    assert started.wait(60), "the map never cut the route into segments"
    r = client.post("/api/v1/pings", json=ping("u1", 100.0, 0.0))
    go.set()
    drawing.join(120)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert drawn[0].status_code == 200


def test_index_maps_and_api_share_one_built_corridor(client: TestClient) -> None:
    rid = client.post("/api/v1/patrol-routes", json=route_feature()).json()["id"]
    assert client.post("/api/v1/units", json={"name": "U1", "device_id": "u1"}).status_code == 201
    client.post("/api/v1/pings", json=ping("u1", 100.0, 0.0))
    app = client.app
    with app.state.store.read() as session:  # type: ignore[attr-defined]
        row = session.get(PatrolRoute, rid)
        index = app.state.geo.get(session)  # type: ignore[attr-defined]
        assert index.route_by_id[rid].corridor is corridor_from_row(row)
