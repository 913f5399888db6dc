"""Critical-site presence through the API: a night at the KPU office, visits and sambang."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import along, circle_feature

SITE = along(500)
AWAY = along(950)
NIGHT = datetime(2024, 11, 26, 16, 0, tzinfo=UTC)  # 00:00 WITA


def fix(device: str, at: datetime, where: tuple[float, float] = SITE, **kw: Any) -> dict:
    """A ping at an absolute time."""
    return {"device_id": device, "lon": where[0], "lat": where[1], "ts": at.isoformat(), **kw}


def every(device: str, start: datetime, end: datetime, step_s: int = 30) -> list[dict]:
    """Pings at the site from start to end inclusive."""
    n = int((end - start).total_seconds()) // step_s
    return [fix(device, start + timedelta(seconds=k * step_s)) for k in range(n + 1)]


def hm(hours: int, minutes: int = 0) -> datetime:
    """NIGHT + hours:minutes."""
    return NIGHT + timedelta(hours=hours, minutes=minutes)


@pytest.fixture
def site(client: TestClient) -> int:
    for n in (1, 2):
        client.post("/api/v1/units", json={"name": f"Samapta {n}", "device_id": f"u{n}"})
    r = client.post("/api/v1/geofences", json=circle_feature(*SITE, radius_m=100))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def post(client: TestClient, pings: list[dict]) -> None:
    r = client.post("/api/v1/pings", json=pings)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(pings), r.text


def test_night_at_kpu_office(client: TestClient, site: int) -> None:
    # u1 guards 00:00-02:10 WITA; u2 joins 01:00-02:00, leaves, and returns 02:40-04:00.
    post(client, [*every("u1", hm(0), hm(2, 10)), fix("u1", hm(2, 11), AWAY)])
    post(client, every("u2", hm(1), hm(2)) + every("u2", hm(2, 40), hm(4)))
    r = client.get(
        f"/api/v1/presence/geofences/{site}",
        params={"from": hm(0).isoformat(), "to": hm(4).isoformat()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["uncovered_intervals"] == [
        {"from": "2024-11-26T18:10:00Z", "to": "2024-11-26T18:40:00Z", "duration_s": 1800.0}
    ]
    assert body["covered_s"] == 4 * 3600 - 1800
    assert body["coverage_ratio"] == pytest.approx(0.875)
    assert body["window"] == {
        "from": "2024-11-26T16:00:00Z",
        "to": "2024-11-26T20:00:00Z",
        "timezone": "Asia/Makassar",
    }
    # u2's last fix at 20:00 lies at the window's end: its visit is clipped there.
    assert [(v["unit_name"], v["from"], v["to"], v["sambang"]) for v in body["visits"]] == [
        ("Samapta 1", "2024-11-26T16:00:00Z", "2024-11-26T18:10:00Z", True),
        ("Samapta 2", "2024-11-26T17:00:00Z", "2024-11-26T18:00:00Z", True),
        ("Samapta 2", "2024-11-26T18:40:00Z", "2024-11-26T20:00:00Z", True),
    ]
    per_unit = {u["unit_name"]: u for u in body["per_unit"]}
    assert per_unit["Samapta 1"]["present_s"] == 7800
    assert per_unit["Samapta 2"]["present_s"] == 3600 + 4800
    assert per_unit["Samapta 2"]["visits"] == 2 and per_unit["Samapta 2"]["sambang"] == 2
    hourly = {h["hour"]: h["covered_ratio"] for h in body["hourly"]}
    assert len(body["hourly"]) == 24
    assert [hourly[h] for h in range(4)] == [1.0, 1.0, 0.5, 1.0]
    assert all(hourly[h] is None for h in range(4, 24))


def test_gap_splits_visit_and_dwell_makes_sambang(client: TestClient, site: int) -> None:
    # u1: 0-120 s, a 90 s gap, 210-330 s. u2: 4 min, out, then 6 min.
    t0 = hm(0)
    u1 = every("u1", t0, t0 + timedelta(seconds=120)) + every(
        "u1", t0 + timedelta(seconds=210), t0 + timedelta(seconds=330)
    )
    u2 = [
        *every("u2", t0, t0 + timedelta(minutes=4)),
        fix("u2", t0 + timedelta(minutes=4, seconds=30), AWAY),
        *every("u2", t0 + timedelta(minutes=10), t0 + timedelta(minutes=16)),
    ]
    post(client, u1 + u2)
    params = {"from": t0.isoformat(), "to": hm(1).isoformat()}
    body = client.get(f"/api/v1/presence/geofences/{site}", params=params).json()
    got = [(v["unit_id"], v["duration_s"], v["sambang"]) for v in body["visits"]]
    assert sorted(got) == [
        (1, 120.0, False),
        (1, 120.0, False),
        (2, 240.0, False),
        (2, 360.0, True),
    ]
    wide = client.get(
        f"/api/v1/presence/geofences/{site}", params={**params, "max_gap_s": 90}
    ).json()
    assert sorted((v["unit_id"], v["duration_s"]) for v in wide["visits"]) == [
        (1, 330.0),
        (2, 240.0),
        (2, 360.0),
    ]
    client.patch(f"/api/v1/geofences/{site}", json={"properties": {"min_dwell_s": 200}})
    body = client.get(f"/api/v1/presence/geofences/{site}", params=params).json()
    assert sorted((v["duration_s"], v["sambang"]) for v in body["visits"] if v["unit_id"] == 2) == [
        (240.0, True),
        (360.0, True),
    ]


def test_excluded_fixes_and_errors(client: TestClient, site: int) -> None:
    t0 = hm(0)
    post(client, [fix("u1", t0), fix("u1", t0 + timedelta(seconds=30), accuracy_m=500)])
    params = {"from": t0.isoformat(), "to": hm(1).isoformat()}
    body = client.get(f"/api/v1/presence/geofences/{site}", params=params).json()
    # The inaccurate fix does not count: one instant, which covers nothing.
    assert [(v["duration_s"], v["sambang"]) for v in body["visits"]] == [(0.0, False)]
    assert body["covered_s"] == 0
    assert body["uncovered_intervals"][0]["duration_s"] == 3600.0
    assert client.get("/api/v1/presence/geofences/999", params=params).status_code == 404
    bad = client.get(f"/api/v1/presence/geofences/{site}", params={**params, "max_gap_s": 0})
    assert bad.status_code == 422
