"""Live events through the API: exact sequences for scripted tracks, exactly once."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyproj import Geod
from sqlalchemy import select

from service.app import create_app
from service.config import Settings
from service.store.models import OverdueMark
from tests.conftest import ADMIN_KEY
from tests.helpers import T0, along, route_feature

GEOD = Geod(ellps="WGS84")
KPU = (116.8340, -1.2650)  # 150 m circle north of the test route


def _at(lon: float, lat: float, az: float, dist: float) -> tuple[float, float]:
    x, y, _ = GEOD.fwd(lon, lat, az, dist)
    return x, y


def _ping(lon: float, lat: float, seconds: float, **kw: Any) -> dict[str, Any]:
    ts = (T0 + timedelta(seconds=seconds)).isoformat()
    return {"device_id": "p1", "lon": lon, "lat": lat, "ts": ts, **kw}


def _events(client: TestClient, **params: Any) -> list[tuple[str, str]]:
    body = client.get("/api/v1/events", params={"limit": 1000, **params}).json()
    return [(e["type"], e["ts"][11:19]) for e in body["events"]]


def _site(revisit_s: float, name: str = "Pos") -> dict[str, Any]:
    """A 40 m critical site 50 m along the test route, with revisit_s."""
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": list(along(50))},
        "properties": {"name": name, "radius_m": 40, "revisit_s": revisit_s},
    }


def _overdue_places(client: TestClient, revisit_s: float) -> tuple[dict, dict]:
    """A short route and a site on it, both with revisit_s: (route, site) as created."""
    route = client.post(
        "/api/v1/patrol-routes",
        json=route_feature(name="Short", corridor_m=30, revisit_s=revisit_s),
    ).json()
    fence = client.post("/api/v1/geofences", json=_site(revisit_s)).json()
    return route, fence


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings allowing a webhook to the local discard port (loopback is refused by default)."""
    return make_settings(webhook_allow="127.0.0.1")


@pytest.fixture
def setup(client: TestClient) -> dict[str, int]:
    rid = client.post("/api/v1/patrol-routes", json=route_feature(corridor_m=30)).json()["id"]
    circle = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": list(KPU)},
        "properties": {"name": "Kantor KPU", "kind": "critical_site", "radius_m": 150},
    }
    fid = client.post("/api/v1/geofences", json=circle).json()["id"]
    uid = client.post(
        "/api/v1/units", json={"name": "P1", "device_id": "p1", "patrol_route_ids": [rid]}
    ).json()["id"]
    return {"route": rid, "fence": fid, "unit": uid}


def test_crossing_and_boundary_jitter(client: TestClient, setup: dict[str, int]) -> None:
    outside = _at(*KPU, 0, 400)
    inside = _at(*KPU, 0, 100)
    pings = [_ping(*outside, 0), _ping(*inside, 10)]
    # 10 minutes on the boundary, ±15 m every 5 s: inside the hysteresis band, no events.
    for i in range(120):
        d = 150 + (15 if i % 2 else -15)
        pings.append(_ping(*_at(*KPU, 0, d), 20 + 5 * i))
    pings.append(_ping(*outside, 700))
    assert client.post("/api/v1/pings", json=pings).json()["accepted"] == len(pings)
    events = _events(client, type=["geofence_enter", "geofence_exit"])
    assert events == [("geofence_enter", "23:00:10"), ("geofence_exit", "23:11:40")]
    detail = client.get("/api/v1/events", params={"type": "geofence_enter"}).json()["events"][0]
    assert detail["geofence_id"] == setup["fence"] and detail["unit_name"] == "P1"
    assert detail["position"]["type"] == "Point" and detail["ping_id"] is not None


@pytest.mark.parametrize(("away_s", "expected"), [(20, []), (40, ["off_route", "on_route"])])
def test_leaving_the_corridor(
    client: TestClient, setup: dict[str, int], away_s: int, expected: list[str]
) -> None:
    pings = [_ping(*along(100), 0, speed_mps=8)]
    t = 0
    for step in range(0, away_s + 1, 10):
        pings.append(_ping(*along(100 + step * 8, 80), 10 + step, speed_mps=8))
        t = 10 + step
    pings.append(_ping(*along(100 + (away_s + 10) * 8), t + 10, speed_mps=8))
    client.post("/api/v1/pings", json=pings)
    events = client.get("/api/v1/events", params={"type": ["off_route", "on_route"]}).json()
    assert [e["type"] for e in events["events"]] == expected
    if expected:
        off = events["events"][0]
        assert off["patrol_route_id"] == setup["route"]
        assert off["ts"] == "2024-11-26T23:00:40Z"  # 30 s after the first fix outside
        assert off["details"]["distance_m"] == pytest.approx(80, abs=1)


def test_stop_silence_and_late_burst(client: TestClient, setup: dict[str, int]) -> None:
    lon, lat = along(500)
    pings = [_ping(lon, lat, 10 * i, speed_mps=0.1) for i in range(40)]  # 6.5 min still
    pings.append(_ping(*along(700), 420, speed_mps=9))
    client.post("/api/v1/pings", json=pings)
    assert _events(client, type=["stopped", "moving"]) == [
        ("stopped", "23:05:00"),
        ("moving", "23:07:00"),
    ]
    # Silence: the scheduler fires offline once, the next fix brings the unit online.
    scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
    later = T0 + timedelta(seconds=420 + 400)
    assert [e.type for e in scheduler.run_once(later)] == ["offline"]
    assert scheduler.run_once(later + timedelta(minutes=5)) == []
    client.post("/api/v1/pings", json=_ping(*along(710), 900, speed_mps=9))
    assert [t for t, _ in _events(client, type=["offline", "online"])] == ["offline", "online"]
    # A store-and-forward burst from the silent minutes fires nothing.
    before = len(_events(client))
    burst = [_ping(*along(100, 300), 430 + 10 * i, speed_mps=9) for i in range(30)]
    results = client.post("/api/v1/pings", json=burst).json()["results"]
    assert all(r["flags"] == ["late"] for r in results)
    assert len(_events(client)) == before


def test_overspeed(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(speed_limit_mps=20))) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        c.post("/api/v1/units", json={"name": "P1", "device_id": "p1"})
        fast = [_ping(*along(30 * i), i, speed_mps=30) for i in range(16)]  # 15 s at 30 m/s
        slow = [_ping(*along(480 + 5 * i), 16 + i, speed_mps=5) for i in range(5)]
        brief = [_ping(*along(510 + 30 * i), 30 + i, speed_mps=30) for i in range(6)]  # 5 s
        c.post("/api/v1/pings", json=fast + slow + brief)
        events = c.get("/api/v1/events", params={"type": "overspeed"}).json()["events"]
    assert [e["ts"][11:19] for e in events] == ["23:00:10"]
    assert events[0]["details"]["max_speed_mps"] == 30


def test_concurrent_requests_fire_each_transition_once(
    client: TestClient, setup: dict[str, int]
) -> None:
    outside = _at(*KPU, 0, 400)
    inside = _at(*KPU, 0, 100)
    pings = [_ping(*(inside if (i // 6) % 2 else outside), 10 * i) for i in range(60)]

    def post(p: dict[str, Any]) -> int:
        return int(client.post("/api/v1/pings", json=p).status_code)

    # Sent in order by 8 threads at once: each request is processed in arrival order per unit.
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, pings)) == {200}
    types = [t for t, _ in _events(client, type=["geofence_enter", "geofence_exit"])]
    # Whatever the interleaving, enters and exits alternate and none repeats.
    assert types and all(a != b for a, b in itertools.pairwise(types))
    assert types[0] == "geofence_enter"


def test_restart_resumes_from_stored_state(
    make_settings: Callable[..., Settings], setup: dict[str, int]
) -> None:
    settings = make_settings()
    away = [_ping(*along(100), 0)] + [
        _ping(*along(100 + 10 * i, 80), 10 + 10 * i) for i in range(2)
    ]
    rest = [_ping(*along(130 + 10 * i, 80), 30 + 10 * i) for i in range(3)]
    back = [_ping(*along(200), 70)]
    for batch in (away, rest + back):  # a new app (a restart) for each half of the episode
        with TestClient(create_app(settings)) as c:
            c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
            assert c.post("/api/v1/pings", json=batch).status_code == 200
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        events = c.get("/api/v1/events", params={"type": ["off_route", "on_route"]}).json()
    assert [(e["type"], e["ts"][11:19]) for e in events["events"]] == [
        ("off_route", "23:00:40"),
        ("on_route", "23:01:10"),
    ]


def test_geofence_edit_fires_nothing(client: TestClient, setup: dict[str, int]) -> None:
    spot = _at(*KPU, 0, 300)
    client.post("/api/v1/pings", json=[_ping(*spot, 0), _ping(*spot, 10)])
    assert _events(client, type="geofence_enter") == []
    r = client.patch(f"/api/v1/geofences/{setup['fence']}", json={"properties": {"radius_m": 500}})
    assert r.status_code == 200
    client.post("/api/v1/pings", json=_ping(*spot, 20))
    assert _events(client, type=["geofence_enter", "geofence_exit"]) == []


def test_events_api_filters_and_pages(client: TestClient, setup: dict[str, int]) -> None:
    outside, inside = _at(*KPU, 0, 400), _at(*KPU, 0, 100)
    client.post(
        "/api/v1/pings", json=[_ping(*(inside if i % 2 else outside), 60 * i) for i in range(8)]
    )
    first = client.get("/api/v1/events", params={"limit": 3}).json()
    assert len(first["events"]) == 3 and first["next"] == first["events"][-1]["id"]
    rest = client.get("/api/v1/events", params={"after": first["next"], "limit": 100}).json()
    assert rest["next"] is None
    ids = [e["id"] for e in first["events"] + rest["events"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    window = {
        "from": (T0 + timedelta(minutes=2)).isoformat(),
        "to": (T0 + timedelta(minutes=4)).isoformat(),
    }
    assert _events(client, **window) == [
        ("geofence_exit", "23:02:00"),
        ("geofence_enter", "23:03:00"),
    ]
    assert _events(client, unit=999) == []
    assert client.get("/api/v1/events", params={"type": "nonsense"}).status_code == 422
    assert _events(client, geofence=setup["fence"])[0][0] == "geofence_enter"


def test_revisit_overdue_fires_once_per_lapse(client: TestClient, setup: dict[str, int]) -> None:
    scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
    route, fence = _overdue_places(client, revisit_s=600)
    edited = datetime.fromisoformat(route["properties"]["updated_at"])
    # Visit segments 0..3 (0-200 m) now; the rest of the route is never visited.
    t0 = (edited - T0).total_seconds()
    client.post(
        "/api/v1/pings", json=[_ping(*along(10 + 60 * i), t0 + 10 + 5 * i) for i in range(4)]
    )

    def fired(at: datetime) -> list[tuple[str, int, int]]:
        events = [e for e in scheduler.run_once(at) if e.type == "revisit_overdue"]
        return sorted(
            ("route", e.patrol_route_id, e.details["segment"])
            if e.patrol_route_id
            else ("site", e.geofence_id, 0)
            for e in events
        )

    assert fired(edited + timedelta(seconds=300)) == []  # nothing is overdue yet
    first = fired(edited + timedelta(seconds=605))
    # Unvisited segments lapse 600 s after the route was drawn; visited ones 600 s after the visit.
    assert {seg for kind, rid, seg in first if kind == "route"} == set(range(4, 21))
    assert ("site", fence["id"], 0) not in first  # visited at t0 + 10 s: due 600 s later
    later = fired(edited + timedelta(seconds=700))
    assert {seg for kind, _, seg in later if kind == "route"} == set(range(0, 4))
    assert ("site", fence["id"], 0) in later
    assert fired(edited + timedelta(seconds=760)) == []  # each lapse fires once
    # A new visit (device time 280 s after the edit) clears the marks; the next lapse fires again.
    client.post("/api/v1/pings", json=_ping(*along(25), t0 + 280))
    assert fired(edited + timedelta(seconds=850)) == []
    again = fired(edited + timedelta(seconds=900))
    assert again == [("route", route["id"], 0), ("site", fence["id"], 0)]


def test_per_geofence_hysteresis_and_per_route_delay(
    client: TestClient, setup: dict[str, int]
) -> None:
    r = client.patch(
        f"/api/v1/geofences/{setup['fence']}", json={"properties": {"hysteresis_m": 0}}
    )
    assert r.json()["properties"]["hysteresis_m"] == 0
    client.patch(
        f"/api/v1/patrol-routes/{setup['route']}", json={"properties": {"off_route_after_s": 10}}
    )
    jitter = [_ping(*_at(*KPU, 0, 150 + (15 if i % 2 else -15)), 10 * i) for i in range(6)]
    client.post("/api/v1/pings", json=jitter)
    # Without a band every crossing counts: in, out, in, out, in, out.
    assert [t for t, _ in _events(client, type=["geofence_enter", "geofence_exit"])] == [
        "geofence_enter",
        "geofence_exit",
    ] * 3
    # The circle lies off the corridor: the route's own 10 s delay applies (not the default 30 s).
    assert _events(client, type="off_route") == [("off_route", "23:00:10")]


def test_edit_through_another_worker_fires_nothing(
    make_settings: Callable[..., Settings], setup: dict[str, int]
) -> None:
    spot = _at(*KPU, 180, 400)  # far from the KPU circle, off the route's corridor too
    settings = make_settings()
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        for c in (a, b):
            c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        b.post("/api/v1/pings", json=[_ping(*spot, 0), _ping(*spot, 10)])  # b's cache is warm
        circle = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": list(spot)},
            "properties": {"name": "Pos baru", "radius_m": 100},
        }
        assert a.post("/api/v1/geofences", json=circle).status_code == 201  # edit via worker a
        b.post("/api/v1/pings", json=_ping(*spot, 20))  # at once, through worker b
        time.sleep(1.1)  # past b's cache check interval
        b.post("/api/v1/pings", json=_ping(*spot, 30))
        events = b.get("/api/v1/events", params={"type": "geofence_enter"}).json()["events"]
    assert events == []


def _when(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_revisited_fires_once_when_an_overdue_place_is_visited(
    client: TestClient, setup: dict[str, int]
) -> None:
    scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
    # The passes below run on their own clock; the background thread's passes could take the
    # overdue lock from them, so it is stopped (run_once is the same pass it makes).
    scheduler.stop()
    hook = client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["revisited"]}
    ).json()
    route, fence = _overdue_places(client, revisit_s=120)
    edited = datetime.fromisoformat(route["properties"]["updated_at"])
    fence_edited = datetime.fromisoformat(fence["properties"]["updated_at"])
    t0 = (edited - T0).total_seconds()

    def run(after_s: float) -> list[Any]:
        return list(scheduler.run_once(edited + timedelta(seconds=after_s)))

    def kinds(events: list[Any], kind: str) -> list[tuple[str, int, int | None]]:
        return sorted(
            ("route", e.patrol_route_id, e.details["segment"])
            if e.patrol_route_id
            else ("site", e.geofence_id, None)
            for e in events
            if e.type == kind
        )

    # Never visited: every segment and the site lapse 120 s after they were drawn.
    first = run(125)
    segments = [k for k in kinds(first, "revisit_overdue") if k[0] == "route"]
    assert len(segments) == 21 and ("site", fence["id"], None) in kinds(first, "revisit_overdue")
    assert kinds(first, "revisited") == []
    # A unit drives 60 -> 95 m: segment 1 (50-100 m) only; inside the site at 60 and 75 m.
    pings = [_ping(*along(c), t0 + s) for c, s in ((60, 150), (75, 155), (95, 160))]
    assert client.post("/api/v1/pings", json=pings).json()["accepted"] == 3
    second = run(170)
    assert kinds(second, "revisited") == [("route", route["id"], 1), ("site", fence["id"], None)]
    assert kinds(second, "revisit_overdue") == []
    assert kinds(run(210), "revisited") == []  # each lapse ends once

    stored = client.get("/api/v1/events", params={"type": "revisited"}).json()["events"]
    assert len(stored) == 2
    seg, site = sorted(stored, key=lambda e: e["geofence_id"] is not None)
    ms = timedelta(milliseconds=1)
    assert seg["patrol_route_id"] == route["id"] and seg["geofence_id"] is None
    d = seg["details"]
    assert (d["segment"], d["start_m"], d["end_m"], d["revisit_s"]) == (1, 50.0, 100.0, 120)
    # ts is the visit that ended the lapse (the last exit from the segment).
    assert abs(_when(seg["ts"]) - (edited + timedelta(seconds=160))) < ms
    assert d["last_visit"] == seg["ts"]
    assert abs(_when(d["overdue_since"]) - (edited + timedelta(seconds=120))) < ms
    assert seg["position"]["coordinates"] == pytest.approx(list(along(75)), abs=1e-5)
    assert site["geofence_id"] == fence["id"] and site["patrol_route_id"] is None
    assert abs(_when(site["ts"]) - (edited + timedelta(seconds=155))) < ms
    assert site["details"]["last_presence"] == site["ts"]
    assert (
        abs(_when(site["details"]["overdue_since"]) - (fence_edited + timedelta(seconds=120))) < ms
    )
    # Queued for the webhook that wants them, like every event.
    deliveries = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert sorted(x["event_id"] for x in deliveries) == sorted(e["id"] for e in stored)


def test_edits_clear_overdue_marks_without_revisited(
    client: TestClient, setup: dict[str, int]
) -> None:
    scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
    scheduler.stop()  # as above: only the passes of this test
    route, fence = _overdue_places(client, revisit_s=120)
    other = client.post("/api/v1/geofences", json=_site(120, "Pos 2")).json()
    edited = datetime.fromisoformat(route["properties"]["updated_at"])
    t0 = (edited - T0).total_seconds()
    first = scheduler.run_once(edited + timedelta(seconds=125))
    assert {e.geofence_id for e in first if e.type == "revisit_overdue"} >= {
        fence["id"],
        other["id"],
    }
    # A longer interval on the route and the site makes them fresh again; one site is deleted.
    for path, rid in (("patrol-routes", route["id"]), ("geofences", fence["id"])):
        r = client.patch(f"/api/v1/{path}/{rid}", json={"properties": {"revisit_s": 3600}})
        assert r.status_code == 200, r.text
    assert client.delete(f"/api/v1/geofences/{other['id']}").status_code == 204
    # A visit after the edits does not end a lapse either: the edits already did.
    client.post("/api/v1/pings", json=[_ping(*along(c), t0 + s) for c, s in ((60, 150), (75, 155))])
    later = scheduler.run_once(edited + timedelta(seconds=170))
    assert [e.type for e in later if e.type in ("revisited", "revisit_overdue")] == []
    assert client.get("/api/v1/events", params={"type": "revisited"}).json()["events"] == []
    with client.app.state.store.read() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(OverdueMark)).all() == []  # the marks are gone all the same
