"""Roles: admin, viewer, tracker; 401 without a key, 403 for the wrong role."""

from __future__ import annotations

import re
from typing import Any

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
    fix = {"device_id": "a", "lat": -1.27, "lon": 116.83, "ts": "2024-11-27T00:00:00Z"}
    assert client.post("/api/v1/pings", json=[fix]).status_code == 200
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    text = client.get("/metrics").text
    sample = r'^patroli_pings_total\{door="json",status="accepted"\} (\S+)$'
    accepted = re.search(sample, text, re.M)
    assert accepted and float(accepted.group(1)) >= 1
    assert 'route="/api/v1/pings"' in text


def test_a_tracker_key_cannot_tell_other_units_from_missing_ones(client: TestClient) -> None:
    """Every tracker door answers the same for another unit's device and an unknown one."""
    own = client.post("/api/v1/units", json={"name": "A", "device_id": "polres/a"}).json()
    other = client.post("/api/v1/units", json={"name": "B", "device_id": "polres/b"}).json()
    secret = own["device_secret"]
    bearer = {"Authorization": f"Bearer {secret}"}
    fix = {"lat": -1.268, "lon": 116.83, "ts": "2024-11-27T00:00:00Z"}

    def same(answers: list[Any]) -> None:
        (first, second) = answers
        assert first.status_code == second.status_code == 403, (first.text, second.text)
        assert first.json() == second.json()
        assert "only post pings for unit" in first.json()["detail"]

    for field, existing, missing in (
        ("device_id", "polres/b", "polres/zzz"),
        ("unit_id", other["id"], other["id"] + 1000),
    ):
        same(
            [
                client.post("/api/v1/pings", json={**fix, field: v}, headers=bearer)
                for v in (existing, missing)
            ]
        )
        batch = [
            client.post("/api/v1/pings", json=[fix, {**fix, field: v}], headers=bearer).json()
            for v in (existing, missing)
        ]
        first, second = (b["results"][1] for b in batch)
        assert first == second and first["status"] == "rejected"
    for query in ("lat=-1.27&lon=116.83", "batt=50"):  # a fix, and a status report
        same(
            [
                client.get(f"/api/v1/osmand?id=polres%2F{d}&{query}", headers=bearer)
                for d in ("b", "zzz")
            ]
        )
    for message in (
        {"_type": "location", "lat": -1.27, "lon": 116.83, "tst": 1732665600},
        {"_type": "transition", "event": "enter", "desc": "KPU", "tst": 1732665600},
    ):
        same(
            [
                client.post(
                    "/api/v1/owntracks",
                    json=message,
                    headers={**bearer, "X-Limit-U": "polres", "X-Limit-D": d},
                )
                for d in ("b", "zzz")
            ]
        )
    gpx = b'<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"></gpx>'
    answers = [
        client.post(f"/api/v1/units/{u}/gpx", files={"file": ("t.gpx", gpx)}, headers=bearer)
        for u in (other["id"], other["id"] + 1000)
    ]
    assert answers[0].status_code == answers[1].status_code == 403
    # An admin is told the truth.
    assert client.post("/api/v1/pings", json={**fix, "device_id": "polres/zzz"}).status_code == 404
