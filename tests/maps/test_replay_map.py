"""Replay map: compact track data within the page budget, and the slider moving markers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from service.config import Settings
from service.maps.replay import ReplayMapView, ReplayTrack, render_replay_map, simplify_track
from tests.conftest import ADMIN_KEY
from tests.helpers import (
    T0,
    along,
    browser_page,
    circle_feature,
    live_app,
    page_data,
    ping,
    route_feature,
    window,
)
from tests.maps.test_live_map import build_app

PAGE_LIMIT = 2 * 1024 * 1024


def synthetic_tracks(units: int = 50, hours: float = 24, step_s: float = 5) -> list[ReplayTrack]:
    """Units wandering round Balikpapan at patrol speeds, with stops, one fix every `step_s`."""
    rng = np.random.default_rng(7)
    t = T0.timestamp() + np.arange(0, hours * 3600, step_s)
    tracks = []
    for uid in range(1, units + 1):
        heading = np.cumsum(rng.normal(0, 0.15, t.size)) + rng.uniform(0, 2 * np.pi)
        speed = np.where(rng.random(t.size) < 0.2, 0.0, rng.uniform(3, 12, t.size))
        speed = np.convolve(speed, np.ones(60) / 60, mode="same")  # stops and starts
        dist = speed * step_s
        x = np.cumsum(dist * np.cos(heading))
        y = np.cumsum(dist * np.sin(heading))
        lon = 116.83 + rng.normal(0, 0.02) + x / 111_320 + rng.normal(0, 2e-5, t.size)
        lat = -1.26 + rng.normal(0, 0.02) + y / 111_320 + rng.normal(0, 2e-5, t.size)
        tracks.append(ReplayTrack(uid, f"Unit {uid:02d}", t.copy(), lon, lat))
    return tracks


def test_replay_page_for_a_full_day_stays_under_2_mb() -> None:
    tracks = synthetic_tracks()
    assert sum(tr.t.size for tr in tracks) == 50 * 17_280
    view = ReplayMapView(
        routes=[],
        fences=[],
        tracks=tracks,
        start=T0,
        end=T0 + timedelta(hours=24),
        tz=ZoneInfo("Asia/Makassar"),
        lang="id",
        tile_url="/tiles/{z}/{x}/{y}.png",
        tile_attribution="OSM",
    )
    page = render_replay_map(view)
    assert len(page.encode()) <= PAGE_LIMIT
    config = page_data(page)["config"]
    assert len(config["units"]) == 50
    assert config["duration"] == 24 * 3600
    first = config["units"][0]["track"]
    assert len(first) >= 200
    # [t, lon, lat], t in whole seconds after t0, in time order, within the window.
    assert all(len(p) == 3 and isinstance(p[0], int) for p in first)
    times = [p[0] for p in first]
    assert times == sorted(times)
    assert times[0] >= 0 and times[-1] < 24 * 3600


def test_simplify_keeps_ends_stops_and_the_cap() -> None:
    t = np.arange(0.0, 1000.0, 5.0)
    lon = np.concatenate((np.linspace(116.83, 116.84, 100), np.full(100, 116.84)))
    lat = np.full(200, -1.26)
    keep = simplify_track(t, lon, lat, max_points=50)
    assert keep[0] == 0 and keep[-1] == 199
    assert len(keep) <= 50
    # Standing still from index 99 on: the start of the stop is kept, so timing stays right.
    assert 99 in keep or 100 in keep
    many = simplify_track(np.arange(10_000.0), np.sin(np.arange(10_000)), np.zeros(10_000), 300)
    assert len(many) <= 300


@pytest.mark.browser
def test_replay_slider_moves_markers(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_app(build_app(settings)) as (base, http):
        http.post("/api/v1/patrol-routes", json=route_feature()).raise_for_status()
        http.post("/api/v1/geofences", json=circle_feature(*along(500), 80)).raise_for_status()
        secrets = {}
        for name, device in (("Polwan 01", "p01"), ("Patko 02", "p02")):
            unit = http.post("/api/v1/units", json={"name": name, "device_id": device}).json()
            secrets[device] = (unit["id"], unit["device_secret"])
        for device, direction in (("p01", 1), ("p02", -1)):
            pings = [
                ping(device, 500 + direction * 8 * s, s, offset_m=10 * direction)
                for s in range(0, 600, 10)
            ]
            headers = {"Authorization": f"Bearer {secrets[device][1]}"}
            r = http.post("/api/v1/pings", json=pings, headers=headers)
            assert r.status_code == 200, r.text
        viewer = http.post("/api/v1/keys", json={"name": "cc", "role": "viewer"}).json()["key"]
        page_url = httpx.URL(f"{base}/maps/replay", params={**window(), "key": viewer})

        # Script errors and Content-Security-Policy violations: the page works under its policy.
        with browser_page(browser) as (page, errors):
            page.goto(str(page_url), wait_until="load")
            slider = page.locator("input[type=range]#patroli-slider")
            slider.wait_for(state="attached")
            assert page.locator("#patroli-play").count() == 1
            assert page.locator("#patroli-speed option").count() >= 3
            assert page.locator(".patroli-unit").count() == 2
            assert page.locator(".patroli-track").count() == 2
            uid = secrets["p01"][0]
            marker = page.locator(f'.patroli-unit[data-unit-id="{uid}"]')
            before = marker.bounding_box()
            start = page.evaluate(f"window.patroliReplay.positions[{uid}]")
            assert [start["lon"], start["lat"]] == pytest.approx(list(along(500, 10)), abs=2e-5)
            assert "07:00:00 WITA" in page.locator("#patroli-time").inner_text()

            slider.fill("300")  # T0 + 5 min: 2400 m along at 8 m/s, between two fixes
            pos = page.evaluate(f"window.patroliReplay.positions[{uid}]")
            assert [pos["lon"], pos["lat"]] == pytest.approx(list(along(2900, 10)), abs=2e-4)
            after = marker.bounding_box()
            assert before is not None and after is not None
            assert after["x"] > before["x"] + 20
            assert "07:05:00 WITA" in page.locator("#patroli-time").inner_text()
            page.screenshot(path=str(artifacts_dir / f"replay-map-{backend}.png"))

            page.select_option("#patroli-speed", "600")
            page.click("#patroli-play")
            page.wait_for_function("() => window.patroliReplay.t > 320", timeout=3000)
            page.click("#patroli-play")
            assert page.evaluate("window.patroliReplay.playing") is False
        assert errors == []


def test_replay_needs_a_viewer_key_and_a_known_unit(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    with TestClient(build_app(settings)) as client:
        assert client.get("/maps/replay", params=window()).status_code == 401
        params = {**window(), "key": ADMIN_KEY}
        r = client.get("/maps/replay", params={**params, "lang": "en"})
        assert r.status_code == 200
        assert "Patrol replay" in r.text
        assert client.get("/maps/replay", params={**params, "unit": 999}).status_code == 404
        now = datetime.now(UTC)
        bad = {"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}
        assert client.get("/maps/replay", params={**bad, "key": ADMIN_KEY}).status_code == 422
