"""Roles: admin, viewer, tracker; 401 without a key, 403 for the wrong role."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.store.migrate import head_revision
from tests.helpers import route_feature


def _key(client: TestClient, role: str, **extra: object) -> str:
    r = client.post("/api/v1/keys", json={"name": role, "role": role, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def test_no_key_is_401(client: TestClient) -> None:
    r = client.get("/api/v1/units", headers={"Authorization": ""})
    assert r.status_code == 401
    assert "API key" in r.json()["detail"]
    r = client.get("/api/v1/units", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_health_is_open(client: TestClient) -> None:
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200
    r = client.get("/readyz", headers={"Authorization": ""})
    assert r.status_code == 200 and r.json()["schema"] == head_revision()


def test_viewer_reads_but_cannot_write(client: TestClient) -> None:
    viewer = {"Authorization": f"Bearer {_key(client, 'viewer')}"}
    assert client.get("/api/v1/units", headers=viewer).status_code == 200
    r = client.post("/api/v1/patrol-routes", json=route_feature(), headers=viewer)
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]
    r = client.post("/api/v1/pings", json={"lat": 0, "lon": 0, "ts": 0}, headers=viewer)
    assert r.status_code == 403


def test_tracker_posts_only_for_its_unit(client: TestClient) -> None:
    a = client.post("/api/v1/units", json={"name": "A", "device_id": "a"}).json()
    client.post("/api/v1/units", json={"name": "B", "device_id": "b"})
    tracker = {"Authorization": f"Bearer {a['device_secret']}"}
    ping = {"lat": -1.268, "lon": 116.83, "ts": "2024-11-27T00:00:00Z"}
    assert client.post("/api/v1/pings", json=ping, headers=tracker).status_code == 200
    r = client.post("/api/v1/pings", json={**ping, "device_id": "b"}, headers=tracker)
    assert r.status_code == 403
    assert "only post pings for unit" in r.json()["detail"]
    assert client.get("/api/v1/units", headers=tracker).status_code == 403


def test_revoked_key_stops_working(client: TestClient) -> None:
    r = client.post("/api/v1/keys", json={"name": "v", "role": "viewer"})
    key, key_id = r.json()["key"], r.json()["id"]
    assert client.delete(f"/api/v1/keys/{key_id}").status_code == 204
    r = client.get("/api/v1/units", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401
    listed = client.get("/api/v1/keys").json()
    assert listed[0]["revoked_at"] is not None and "key" not in listed[0]


def test_tracker_key_needs_unit(client: TestClient) -> None:
    r = client.post("/api/v1/keys", json={"name": "t", "role": "tracker"})
    assert r.status_code == 422
    assert "unit_id" in r.json()["detail"]


def test_metrics_count_pings_and_need_a_key(client: TestClient) -> None:
    client.post("/api/v1/units", json={"name": "A", "device_id": "a"})
    client.post("/api/v1/pings", json=[{"device_id": "a", "lat": -1.27, "lon": 116.83, "ts": 0}])
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    text = client.get("/metrics").text
    assert 'patroli_pings_total{status="accepted"}' in text
    assert 'route="/api/v1/pings"' in text
