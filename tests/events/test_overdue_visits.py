"""The overdue check's visits, kept from pass to pass, against reading its look-back window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from service.analytics.coverage import compute_coverage
from service.analytics.positions import eligible_fixes
from service.analytics.running import RunningCoverage
from service.events.overdue import Visits, lookback_start, read_visits
from service.window import Window
from tests.helpers import along, route_feature

REVISIT_S = 120.0  # look-back: 2 x 120 s + max_gap_s (60 s) = 300 s


def _fix(device: str, ts: datetime, where: tuple[float, float]) -> dict[str, Any]:
    return {"device_id": device, "lon": where[0], "lat": where[1], "ts": ts.isoformat()}


def _read(client: TestClient, now: datetime, running: RunningCoverage) -> Visits:
    state = client.app.state  # type: ignore[attr-defined]
    with state.store.read() as session:
        visits = read_visits(
            session, state.geo.get(session, fresh=True), state.settings, now, running
        )
    assert visits is not None
    return visits


def _window_visits(client: TestClient, now: datetime) -> Visits:
    """The visits as read from the look-back window's fixes at each pass, in one go."""
    state = client.app.state  # type: ignore[attr-defined]
    settings = state.settings
    with state.store.read() as session:
        index = state.geo.get(session, fresh=True)
        start = lookback_start(index, settings, now)
        assert start is not None
        fixes = eligible_fixes(session, start, now)
    window = Window(start, now)
    routes = {
        r.id: compute_coverage(r.corridor, fixes, window, settings.segment_m, settings.max_gap_s)
        for r in index.routes
    }
    fences = {}
    for f in index.fences:
        inside = f.fence.contains_many(fixes.lon, fixes.lat)
        fences[f.id] = float(fixes.t[inside].max()) if inside.any() else None
    return Visits(routes, fences)


def _places(visits: Visits) -> dict[tuple[str, int, int], float | None]:
    """Each route segment's last visit and each geofence's last presence."""
    seen: dict[tuple[str, int, int], float | None] = {
        ("route", rid, seg.index): seg.last_visit
        for rid, cov in visits.routes.items()
        for seg in cov.segments
    }
    seen |= {("site", fid, 0): t for fid, t in visits.fences.items()}
    return seen


def test_kept_visits_agree_with_the_look_back_window(client: TestClient) -> None:
    """Passes every 30 s keep their visits (reading only what arrived) and give each place the
    last visit the look-back window gives it; older visits, which only the kept ones still hold,
    are overdue either way. Between passes: rides, a stop at the site, a late upload, a fix
    ahead of the pass's clock, a deleted unit."""
    client.app.state.scheduler.stop()  # type: ignore[attr-defined]
    route = client.post(
        "/api/v1/patrol-routes",
        json=route_feature(name="Short", corridor_m=30, revisit_s=REVISIT_S),
    ).json()
    site = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": list(along(300))},
        "properties": {"name": "Pos", "radius_m": 40, "revisit_s": REVISIT_S},
    }
    assert client.post("/api/v1/geofences", json=site).status_code == 201
    units = {}
    for name in ("u1", "u2", "u3", "u4"):
        body = {"name": name, "device_id": name, "patrol_route_ids": [route["id"]]}
        units[name] = client.post("/api/v1/units", json=body).json()["id"]

    rng = random.Random(7)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    running = RunningCoverage(chunk=5)  # units' fixes split across the pieces read
    starts = set()
    for k in range(1, 31):
        now = base + timedelta(seconds=30 * k)
        fixes = []
        for name in ("u1", "u2", "u3", "u4"):
            if name == "u4" and k > 12:
                continue
            for s in range(0, 30, 10):
                if rng.random() < 0.3:
                    continue  # gaps, some longer than max_gap_s
                t = now - timedelta(seconds=30 - s)
                where = rng.uniform(0, 1000) if name != "u2" or k % 8 < 4 else 300.0
                if 12 <= k <= 15 and 240 < where < 360:
                    where += 200  # u4 is the last at the site before it is deleted
                fixes.append(_fix(name, t, along(where, rng.choice([0, 5, 80]))))
        if k == 12:
            fixes.append(_fix("u4", now - timedelta(seconds=1), along(300)))
        if k % 7 == 3:  # u3's tracker uploads fixes from before its last one
            late = now - timedelta(seconds=75)
            fixes += [
                _fix("u3", late + timedelta(seconds=3 * j), along(290 + 5 * j)) for j in range(4)
            ]
        if k % 9 == 4:  # a fix ahead of this pass's clock, due at a later pass
            fixes.append(_fix("u1", now + timedelta(seconds=40), along(990)))
        if fixes:
            r = client.post("/api/v1/pings", json=fixes)
            assert r.status_code == 200, r.text
        if k == 13:
            assert client.delete(f"/api/v1/units/{units['u4']}").status_code == 204

        kept = _places(_read(client, now, running))
        whole = _places(_window_visits(client, now))
        starts.add(running.start)
        window = now - timedelta(seconds=2 * REVISIT_S + 60)  # lookback_start's
        edge = (window + timedelta(seconds=60)).timestamp()  # a track entering the window
        for place, seen in whole.items():
            if seen is not None and seen >= edge:
                assert kept[place] == seen, (k, place)
            else:  # no visit in the window's reach: overdue either way
                assert kept[place] is None or kept[place] < edge, (k, place)
    # The kept start moved with the window a few times, not at every pass.
    assert 3 <= len(starts) <= 12
