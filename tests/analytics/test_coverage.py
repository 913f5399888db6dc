"""Route coverage over a window through the API."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from tests.helpers import T0, ping, route_feature, window


@pytest.fixture
def route_id(client: TestClient) -> int:
    client.post("/api/v1/units", json={"name": "U1", "device_id": "u1"})
    client.post("/api/v1/units", json={"name": "U2", "device_id": "u2"})
    return int(client.post("/api/v1/patrol-routes", json=route_feature()).json()["id"])


def test_coverage_interpolates_between_close_pings(client: TestClient, route_id: int) -> None:
    # 60 m -> 260 m in 30 s: segments 1..5 (50 m each) are visited.
    client.post("/api/v1/pings", json=[ping("u1", 60, 0), ping("u1", 260, 30)])
    r = client.get(f"/api/v1/coverage/patrol-routes/{route_id}", params=window())
    assert r.status_code == 200, r.text
    body = r.json()
    visited = [s["index"] for s in body["segments"] if s["visited"]]
    assert visited == [1, 2, 3, 4, 5]
    assert body["visited_m"] == pytest.approx(250)
    assert body["coverage_ratio"] == pytest.approx(250 / body["length_m"])
    assert len(body["segments"]) == 21  # 1001.5 m: 20 full segments and a short one
    seg3 = body["segments"][3]
    assert seg3["first_visit"] < seg3["last_visit"]
    assert body["from"] == "2024-11-26T23:00:00Z"


def test_gap_off_route_and_flags_do_not_count(client: TestClient, route_id: int) -> None:
    client.post(
        "/api/v1/pings",
        json=[
            ping("u1", 60, 0),
            ping("u1", 460, 120),  # 120 s later: beyond max_gap_s, no interpolation
            ping("u2", 700, 0, offset_m=80),  # off the 30 m corridor
            ping("u2", 900, 10, accuracy_m=500),  # inaccurate: excluded
        ],
    )
    body = client.get(f"/api/v1/coverage/patrol-routes/{route_id}", params=window()).json()
    assert [s["index"] for s in body["segments"] if s["visited"]] == [1, 9]
    wider = client.get(
        f"/api/v1/coverage/patrol-routes/{route_id}", params={**window(), "max_gap_s": 200}
    ).json()
    assert [s["index"] for s in wider["segments"] if s["visited"]] == list(range(1, 10))


def test_coverage_segment_length_and_window(client: TestClient, route_id: int) -> None:
    client.post("/api/v1/pings", json=[ping("u1", 10, 0), ping("u1", 950, 7200)])
    body = client.get(
        f"/api/v1/coverage/patrol-routes/{route_id}", params={**window(1), "segment_m": 100}
    ).json()
    assert len(body["segments"]) == 11
    assert [s["index"] for s in body["segments"] if s["visited"]] == [0]
    r = client.get(
        f"/api/v1/coverage/patrol-routes/{route_id}",
        params={"from": "2024-11-27T00:00:00Z", "to": "2024-11-26T00:00:00Z"},
    )
    assert r.status_code == 422
    r = client.get(f"/api/v1/coverage/patrol-routes/{route_id}", params={"from": "yesterday"})
    assert r.status_code == 422 and "ISO 8601" in r.json()["detail"]
    assert client.get("/api/v1/coverage/patrol-routes/999", params=window()).status_code == 404


def test_u_turn_visits_each_segment_on_both_passes(client: TestClient, route_id: int) -> None:
    # Out from 60 m to 260 m, then back to 110 m: segments 2-4 are passed twice.
    client.post("/api/v1/pings", json=[ping("u1", 60, 0), ping("u1", 260, 30), ping("u1", 110, 60)])
    body = client.get(f"/api/v1/coverage/patrol-routes/{route_id}", params=window()).json()
    visits = {s["index"]: s["visits"] for s in body["segments"] if s["visited"]}
    assert visits == {1: 1, 2: 2, 3: 2, 4: 2, 5: 1}


def test_closed_loop_takes_the_short_way_round(client: TestClient) -> None:
    from tests.helpers import GEOD, LAT, LON0

    corners = [(LON0, LAT)]
    for azimuth in (90, 0, 270):  # a 250 m square, closed back to its start
        lon, lat, _ = GEOD.fwd(*corners[-1], azimuth, 250)
        corners.append((lon, lat))
    loop = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [list(c) for c in corners]},
        "properties": {"name": "Keliling blok", "corridor_m": 20, "closed": True},
    }
    rid = client.post("/api/v1/patrol-routes", json=loop).json()["id"]
    client.post("/api/v1/units", json={"name": "L", "device_id": "loop"})
    north_of_start = GEOD.fwd(LON0, LAT, 0, 40)[:2]  # chainage 960 m on the closing side
    east_of_start = GEOD.fwd(LON0, LAT, 90, 40)[:2]  # chainage 40 m
    pings = [
        {"device_id": "loop", "lon": p[0], "lat": p[1], "ts": f"2024-11-26T23:00:{s:02d}Z"}
        for p, s in ((north_of_start, 0), (east_of_start, 20))
    ]
    client.post("/api/v1/pings", json=pings)
    body = client.get(f"/api/v1/coverage/patrol-routes/{rid}", params=window()).json()
    assert body["length_m"] == pytest.approx(1000, abs=1)
    assert [s["index"] for s in body["segments"] if s["visited"]] == [0, 19]


def test_coverage_of_one_unit(client: TestClient, route_id: int) -> None:
    client.post(
        "/api/v1/pings",
        json=[ping("u1", 60, 0), ping("u1", 160, 20), ping("u2", 560, 0), ping("u2", 660, 20)],
    )
    units = {u["device_id"]: u["id"] for u in client.get("/api/v1/units").json()}
    url = f"/api/v1/coverage/patrol-routes/{route_id}"
    both = client.get(url, params=window()).json()
    assert [s["index"] for s in both["segments"] if s["visited"]] == [1, 2, 3, 11, 12, 13]
    assert both["unit_id"] is None
    one = client.get(url, params={**window(), "unit": units["u2"]}).json()
    assert [s["index"] for s in one["segments"] if s["visited"]] == [11, 12, 13]
    assert one["unit_id"] == units["u2"]
    r = client.get(url, params={**window(), "unit": 999})
    assert r.status_code == 404 and "unit 999" in r.json()["detail"]


def test_fixes_exactly_max_gap_s_apart_are_linked(client: TestClient, route_id: int) -> None:
    # A tracker reporting every 60 s, 120 m on each time: every pair links (gap <= max_gap_s),
    # so every segment between them is visited too.
    client.post("/api/v1/pings", json=[ping("u1", 30 + 120 * k, 300 + 60 * k) for k in range(9)])
    body = client.get(f"/api/v1/coverage/patrol-routes/{route_id}", params=window()).json()
    assert [s["index"] for s in body["segments"] if s["visited"]] == list(range(0, 20))
    assert body["max_gap_s"] == 60


def test_two_units_overlapping_count_separately(client: TestClient, route_id: int) -> None:
    # Both units drive ~105 m -> ~295 m at the same time: segments 2-5 get a visit from each.
    client.post(
        "/api/v1/pings",
        json=[ping("u1", 105, 0), ping("u1", 295, 30), ping("u2", 110, 5), ping("u2", 290, 25)],
    )
    body = client.get(f"/api/v1/coverage/patrol-routes/{route_id}", params=window()).json()
    visits = {s["index"]: s["visits"] for s in body["segments"] if s["visited"]}
    assert visits == {2: 2, 3: 2, 4: 2, 5: 2}
    assert body["visited_m"] == pytest.approx(200)
    # Segment 3 (150-200 m): u1 over 7.1-15.0 s, u2 over 9.4-15.0 s after T0.
    seg3 = body["segments"][3]
    first = datetime.fromisoformat(seg3["first_visit"]) - T0
    last = datetime.fromisoformat(seg3["last_visit"]) - T0
    assert first.total_seconds() == pytest.approx(45 / 190 * 30, abs=0.05)
    assert last.total_seconds() == pytest.approx(15.0, abs=0.05)
