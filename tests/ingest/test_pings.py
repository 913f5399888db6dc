"""Posting pings: evaluation against routes and geofences, flags, batches, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.helpers import T0, along, circle_feature, ping, route_feature, window


@pytest.fixture
def area(client: TestClient) -> dict[str, int]:
    """A route, the KPU circle at chainage 400 m, and unit 'u1' assigned to the route."""
    rid = client.post("/api/v1/patrol-routes", json=route_feature(corridor_m=30)).json()["id"]
    lon, lat = along(400)
    fid = client.post("/api/v1/geofences", json=circle_feature(lon, lat, 100)).json()["id"]
    uid = client.post(
        "/api/v1/units", json={"name": "U1", "device_id": "u1", "patrol_route_ids": [rid]}
    ).json()["id"]
    return {"route": rid, "fence": fid, "unit": uid}


def test_single_ping_is_evaluated(client: TestClient, area: dict[str, int]) -> None:
    r = client.post("/api/v1/pings", json=ping("u1", 420, 0, offset_m=12))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 0)
    result = body["results"][0]
    assert result["status"] == "accepted" and result["flags"] == []
    [check] = result["evaluation"]["patrol_routes"]
    assert check["patrol_route_id"] == area["route"]
    assert check["on_route"] is True
    assert check["distance_m"] == pytest.approx(12, abs=0.1)
    assert check["chainage_m"] == pytest.approx(420, abs=0.5)
    assert [g["geofence_id"] for g in result["evaluation"]["geofences"]] == [area["fence"]]


def test_assigned_route_reported_even_when_far(client: TestClient, area: dict[str, int]) -> None:
    r = client.post("/api/v1/pings", json=ping("u1", 100, 0, offset_m=-200))
    [check] = r.json()["results"][0]["evaluation"]["patrol_routes"]
    assert check["on_route"] is False
    assert check["distance_m"] == pytest.approx(200, abs=0.5)
    assert r.json()["results"][0]["evaluation"]["geofences"] == []


def test_epoch_seconds_and_iso_times(client: TestClient, area: dict[str, int]) -> None:
    lon, lat = along(10)
    r = client.post(
        "/api/v1/pings",
        json=[
            {"device_id": "u1", "lat": lat, "lon": lon, "ts": T0.timestamp()},
            {"device_id": "u1", "lat": lat, "lon": lon, "ts": "2024-11-27T07:00:05+08:00"},
        ],
    )
    times = [x["ts"] for x in r.json()["results"]]
    assert times == ["2024-11-26T23:00:00Z", "2024-11-26T23:00:05Z"]


def test_batch_stores_valid_and_reports_invalid_by_index(
    client: TestClient, area: dict[str, int]
) -> None:
    batch = [
        ping("u1", 0, 0),
        {**ping("u1", 10, 5), "lat": 95},
        {**ping("u1", 20, 10), "lon": "NaN"},
        ping("nobody", 30, 15),
        ping("u1", 40, 20),
    ]
    r = client.post("/api/v1/pings", json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    statuses = [x["status"] for x in body["results"]]
    assert statuses == ["accepted", "rejected", "rejected", "rejected", "accepted"]
    assert "lat" in body["results"][1]["reason"]
    assert "finite" in body["results"][2]["reason"]
    assert "unknown device_id 'nobody'" in body["results"][3]["reason"]
    track = client.get(f"/api/v1/units/{area['unit']}/track", params=_win()).json()
    assert len(track["features"]) == 1 + 2


def test_invalid_single_ping_is_422_unknown_device_404(client: TestClient, area: dict) -> None:
    r = client.post("/api/v1/pings", json={**ping("u1", 0, 0), "lat": -91})
    assert r.status_code == 422
    assert "lat" in r.json()["detail"]
    r = client.post("/api/v1/pings", json=ping("ghost", 0, 0))
    assert r.status_code == 404
    r = client.post("/api/v1/pings", json=[])
    assert r.status_code == 422


def test_batch_over_limit_is_413(make_settings, area: dict) -> None:  # type: ignore[no-untyped-def]
    from service.app import create_app
    from tests.conftest import ADMIN_KEY

    with TestClient(create_app(make_settings(max_batch=3))) as small:
        r = small.post(
            "/api/v1/pings",
            json=[ping("u1", i, i) for i in range(4)],
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
    assert r.status_code == 413
    assert "limit of 3" in r.json()["detail"]


def test_retry_is_duplicate_not_stored_twice(client: TestClient, area: dict[str, int]) -> None:
    batch = [ping("u1", 0, 0), ping("u1", 10, 5, ping_id="p-2")]
    assert client.post("/api/v1/pings", json=batch).json()["accepted"] == 2
    again = client.post("/api/v1/pings", json=[*batch, ping("u1", 99, 6, ping_id="p-2")]).json()
    assert [x["status"] for x in again["results"]] == ["duplicate"] * 3
    assert again["results"][0]["flags"] == ["duplicate"]
    track = client.get(f"/api/v1/units/{area['unit']}/track", params=_win()).json()
    assert len(track["features"]) == 1 + 2


def test_quality_flags(client: TestClient, area: dict[str, int]) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    batch = [
        ping("u1", 0, 0),
        ping("u1", 20, 10, accuracy_m=250),
        ping("u1", 900, 20),  # 900 m in 20 s: 45 m/s, under the 60 m/s limit
        ping("u1", 100, 21),  # 800 m back in 1 s: a teleport
        {"device_id": "u1", "lat": 0, "lon": 0, "ts": (T0 + timedelta(seconds=30)).isoformat()},
        {**ping("u1", 50, 0), "ts": future},
    ]
    results = client.post("/api/v1/pings", json=batch).json()["results"]
    assert [r["flags"] for r in results] == [
        [],
        ["inaccurate"],
        [],
        ["teleport"],
        ["zero"],
        ["future"],
    ]
    late = client.post("/api/v1/pings", json=ping("u1", 5, 2)).json()["results"][0]
    assert late["status"] == "accepted" and late["flags"] == ["late"]


def test_latest_positions_and_track(client: TestClient, area: dict[str, int]) -> None:
    client.post("/api/v1/units", json={"name": "Idle", "device_id": "idle"})
    client.post("/api/v1/pings", json=[ping("u1", 0, 0), ping("u1", 50, 10, speed_mps=5)])
    client.post("/api/v1/pings", json=ping("u1", 25, 5))  # late: must not move the position
    fc = client.get("/api/v1/positions/latest").json()
    by_name = {f["properties"]["name"]: f for f in fc["features"]}
    assert by_name["Idle"]["geometry"] is None
    u1 = by_name["U1"]
    assert u1["geometry"]["coordinates"] == pytest.approx(list(along(50)))
    assert u1["properties"]["ts"] == "2024-11-26T23:00:10+00:00"
    assert u1["properties"]["speed_mps"] == 5
    track = client.get(f"/api/v1/units/{area['unit']}/track", params=_win()).json()
    line, *points = track["features"]
    assert line["geometry"]["type"] == "LineString"
    assert len(line["geometry"]["coordinates"]) == 3
    assert [p["properties"]["ts"][-9:-6] for p in points] == [":00", ":05", ":10"]


def _win() -> dict[str, str]:
    return {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}


def test_late_burst_is_stored_flagged_and_counts(client: TestClient, area: dict[str, int]) -> None:
    # The tracker was offline: the newest fix arrives first, then the buffered backlog.
    client.post("/api/v1/pings", json=ping("u1", 525, 300))
    backlog = [ping("u1", 50 * i + 25, 10 * i) for i in range(1, 9)]
    body = client.post("/api/v1/pings", json=backlog).json()
    assert body["accepted"] == 8
    assert all(r["flags"] == ["late"] for r in body["results"])
    latest = client.get("/api/v1/positions/latest").json()["features"][0]
    assert latest["properties"]["ts"] == "2024-11-26T23:05:00+00:00"  # unchanged by the burst
    cov = client.get(f"/api/v1/coverage/patrol-routes/{area['route']}", params=_win()).json()
    assert [s["index"] for s in cov["segments"] if s["visited"]] == [*range(1, 9), 10]


def test_concurrent_requests_share_transactions_and_lose_nothing(
    client: TestClient, area: dict[str, int]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(i: int) -> int:
        r = client.post("/api/v1/pings", json=ping("u1", i % 1000, i))
        assert r.status_code == 200, r.text
        return int(r.json()["accepted"])

    with ThreadPoolExecutor(16) as pool:
        acknowledged = sum(pool.map(post, range(200)))
    track = client.get(f"/api/v1/units/{area['unit']}/track", params=_win()).json()
    assert acknowledged == 200
    assert len(track["features"]) - 1 == 200


def test_future_fix_does_not_freeze_the_live_position(
    client: TestClient, area: dict[str, int]
) -> None:
    future = (datetime.now(UTC) + timedelta(hours=12)).isoformat()  # flagged, not refused
    r = client.post("/api/v1/pings", json={**ping("u1", 0, 0), "ts": future}).json()
    assert r["results"][0]["flags"] == ["future"]
    r = client.post("/api/v1/pings", json=ping("u1", 100, 10)).json()
    assert r["results"][0]["flags"] == []  # not "late" behind the bogus future time
    latest = client.get("/api/v1/positions/latest").json()["features"][0]
    assert latest["properties"]["ts"] == "2024-11-26T23:00:10+00:00"


def test_very_old_and_odd_values_are_refused_cleanly(
    client: TestClient, area: dict[str, int]
) -> None:
    old = {**ping("u1", 0, 0), "ts": "0999-06-01T00:00:00Z"}
    r = client.post("/api/v1/pings", json=old)
    assert r.status_code == 422 and "PATROLI_MIN_FIX_TIME" in r.json()["detail"], r.text
    assert client.post("/api/v1/pings", json=ping("u1", 10, 5)).status_code == 200
    [latest] = client.get("/api/v1/positions/latest").json()["features"]
    assert latest["properties"]["ts"] == "2024-11-26T23:00:05+00:00"
    r = client.post(
        "/api/v1/pings",
        content=b'{"device_id": "u1", "lat": -1.268, "lon": 116.83, "ts": 5, '
        b'"attributes": {"x": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text  # never a 503 that a tracker would retry forever


def test_cancelled_request_does_not_stop_the_writer(client: TestClient, area: dict) -> None:
    from service.auth import Principal
    from service.schemas import PingIn

    writer = client.app.state.writer  # type: ignore[attr-defined]
    futures = [
        writer.submit(Principal(role="admin"), [(0, PingIn.model_validate(ping("u1", i, i)))])
        for i in range(50)
    ]
    for f in futures[::2]:
        f.cancel()
    for f in futures[1::2]:
        assert f.result(timeout=30).pings[0].status == "accepted"
    assert client.post("/api/v1/pings", json=ping("u1", 500, 500)).status_code == 200


def test_attributes_are_capped(client: TestClient, area: dict[str, int]) -> None:
    limit = 8192  # PATROLI_MAX_ATTRIBUTES_BYTES by default
    fits = {"note": "x" * (limit - len('{"note":""}'))}  # exactly the limit as compact JSON
    r = client.post("/api/v1/pings", json=ping("u1", 10, 0, attributes=fits))
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    over = {"note": "é" * 4100}  # 4,100 characters, 8,200 bytes in UTF-8
    r = client.post("/api/v1/pings", json=ping("u1", 20, 5, attributes=over))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "8211 bytes" in detail and "8192" in detail, detail
    assert "PATROLI_MAX_ATTRIBUTES_BYTES" in detail
    # In a batch only the oversized ping is refused; one of 1 MB costs no more than that.
    r = client.post(
        "/api/v1/pings",
        json=[ping("u1", 30, 10), ping("u1", 40, 15, attributes={"blob": "x" * 1_000_000})],
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert "PATROLI_MAX_ATTRIBUTES_BYTES" in body["results"][1]["reason"]
    track = client.get(f"/api/v1/units/{area['unit']}/track", params=window()).json()
    fixes = [f for f in track["features"] if f["properties"]["kind"] == "fix"]
    assert [f["properties"]["ts"][11:19] for f in fixes] == ["23:00:00", "23:00:10"]


def test_attributes_limit_is_a_setting(make_settings, area: dict) -> None:  # type: ignore[no-untyped-def]
    from service.app import create_app
    from tests.conftest import ADMIN_KEY

    with TestClient(create_app(make_settings(max_attributes_bytes=100))) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        c.post("/api/v1/units", json={"name": "U2", "device_id": "u2"})
        r = c.post("/api/v1/pings", json=ping("u2", 10, 0, attributes={"n": "x" * 100}))
    assert r.status_code == 422 and "at most 100" in r.json()["detail"]
