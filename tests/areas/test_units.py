"""Units API: registration, device secrets, edits, deletion."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers import route_feature


def test_create_unit_returns_secret_once(client: TestClient) -> None:
    r = client.post("/api/v1/units", json={"name": "Polwan 01", "device_id": "kaltim-01"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["device_secret"].startswith("ptl_")
    assert body["kind"] == "motorbike"
    listed = client.get("/api/v1/units").json()
    assert [u["device_id"] for u in listed] == ["kaltim-01"]
    assert "device_secret" not in listed[0]
    assert "device_secret" not in client.get(f"/api/v1/units/{body['id']}").json()


def test_duplicate_device_id_is_conflict(client: TestClient) -> None:
    client.post("/api/v1/units", json={"name": "A", "device_id": "dup"})
    r = client.post("/api/v1/units", json={"name": "B", "device_id": "dup"})
    assert r.status_code == 409
    assert "dup" in r.json()["detail"]


def test_unknown_field_and_missing_name_are_422(client: TestClient) -> None:
    r = client.post("/api/v1/units", json={"device_id": "x"})
    assert r.status_code == 422
    assert "name" in r.json()["detail"]
    r = client.post("/api/v1/units", json={"name": "a", "device_id": "x", "colour": "red"})
    assert r.status_code == 422


def test_patch_assign_and_delete(client: TestClient) -> None:
    route = client.post("/api/v1/patrol-routes", json=route_feature()).json()
    unit = client.post("/api/v1/units", json={"name": "A", "device_id": "a"}).json()
    r = client.patch(
        f"/api/v1/units/{unit['id']}", json={"name": "A2", "patrol_route_ids": [route["id"]]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "A2"
    assert r.json()["patrol_route_ids"] == [route["id"]]
    r = client.patch(f"/api/v1/units/{unit['id']}", json={"patrol_route_ids": [999]})
    assert r.status_code == 404
    assert client.delete(f"/api/v1/units/{unit['id']}").status_code == 204
    assert client.get(f"/api/v1/units/{unit['id']}").status_code == 404
    assert client.delete(f"/api/v1/units/{unit['id']}").status_code == 404


def test_rotated_secret_replaces_old_one(client: TestClient) -> None:
    unit = client.post("/api/v1/units", json={"name": "A", "device_id": "a"}).json()
    old = unit["device_secret"]
    new = client.post(f"/api/v1/units/{unit['id']}/secret").json()["device_secret"]
    ping = {"lat": -1.268, "lon": 116.83, "ts": "2024-11-27T00:00:00Z"}
    r = client.post("/api/v1/pings", json=ping, headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401
    r = client.post("/api/v1/pings", json=ping, headers={"Authorization": f"Bearer {new}"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["unit_id"] == unit["id"]
