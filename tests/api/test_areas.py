"""Patrol routes and geofences: GeoJSON in and out, invalid geometry refused with a reason."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import LAT, LON0, LON1, circle_feature, route_feature


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
