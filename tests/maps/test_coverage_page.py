"""End to end on each backend: a ping posted to a running server is stored, evaluated, counted
toward coverage, listed in latest positions, and drawn on /maps/coverage in Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.app import create_app
from service.config import Settings
from tests.helpers import (
    along,
    browser_page,
    circle_feature,
    live_app,
    ping,
    route_feature,
    window,
)


@pytest.mark.browser
def test_ping_reaches_coverage_map(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_app(create_app(settings)) as (base, http):
        route = http.post("/api/v1/patrol-routes", json=route_feature()).json()
        lon, lat = along(400)
        http.post("/api/v1/geofences", json=circle_feature(lon, lat, 100)).raise_for_status()
        unit = http.post("/api/v1/units", json={"name": "Polwan 01", "device_id": "p01"}).json()
        viewer = http.post("/api/v1/keys", json={"name": "cc", "role": "viewer"}).json()["key"]

        tracker = {"Authorization": f"Bearer {unit['device_secret']}"}
        r = http.post(
            "/api/v1/pings", json=[ping("p01", 380, 0), ping("p01", 430, 10)], headers=tracker
        )
        assert r.status_code == 200, r.text
        first = r.json()["results"][0]
        assert first["evaluation"]["patrol_routes"][0]["on_route"] is True
        assert first["evaluation"]["geofences"][0]["name"] == "Kantor KPU"

        latest = http.get("/api/v1/positions/latest").json()["features"]
        assert latest[0]["geometry"]["coordinates"] == pytest.approx(list(along(430)))

        cov = http.get(f"/api/v1/coverage/patrol-routes/{route['id']}", params=window()).json()
        assert [s["index"] for s in cov["segments"] if s["visited"]] == [7, 8]

        # A 15 min window: both visited segments were seen less than 30 min before its end.
        page_url = httpx.URL(f"{base}/maps/coverage", params={**window(0.25), "key": viewer})

        # Script errors and Content-Security-Policy violations both count.
        with browser_page(browser) as (page, errors):
            page.goto(str(page_url), wait_until="load")
            # The key went into a session cookie: the address bar no longer shows it.
            assert "key" not in parse_qs(urlsplit(page.url).query)
            page.wait_for_selector(".patroli-unit", state="attached")
            assert page.evaluate("typeof window.L") == "object"
            assert page.locator(".patroli-route").count() == 1
            assert page.locator(".patroli-geofence").count() == 1
            assert page.locator(".patroli-segment.patroli-visited").count() == 2
            assert page.locator(".patroli-segment.patroli-unvisited").count() == 19
            assert page.locator(".patroli-segment.patroli-fresh.patroli-visited").count() == 2
            assert page.locator(".patroli-segment.patroli-overdue").count() == 19
            # 10 s of presence in a 15 min window.
            assert page.locator(".patroli-geofence.patroli-presence-poor").count() == 1
            layers = page.locator(".leaflet-control-layers-overlays").inner_text()
            assert "Kepadatan posisi" in layers
            assert page.locator(f'.patroli-unit[data-unit-id="{unit["id"]}"]').count() == 1
            assert "Polwan 01" in page.locator("#patroli-legend").inner_text()
            page.screenshot(path=str(artifacts_dir / f"coverage-page-{backend}.png"))

            # The window picker reloads the page for 07:00-08:00 WITA, in the same session.
            form = page.locator("#patroli-window")
            form.locator("input[name=from]").fill("2024-11-27T07:00")
            form.locator("input[name=to]").fill("2024-11-27T08:00")
            with page.expect_navigation(wait_until="load"):
                form.locator("button[type=submit]").click()
            query = parse_qs(urlsplit(page.url).query)
            assert query == {"from": ["2024-11-26T23:00:00Z"], "to": ["2024-11-27T00:00:00Z"]}
            page.wait_for_selector(".patroli-unit", state="attached")
            assert page.locator(".patroli-segment.patroli-visited").count() == 2
            assert "08:00 WITA" in page.locator("#patroli-title").inner_text()
        assert errors == []


def test_map_needs_a_viewer_key(client: Any) -> None:
    r = client.get("/maps/coverage", params=window(), headers={"Authorization": ""})
    assert r.status_code == 401
    r = client.get(
        "/maps/coverage", params={**window(), "key": "wrong"}, headers={"Authorization": ""}
    )
    assert r.status_code == 401
    r = client.get("/maps/coverage", params={**window(), "lang": "en"})
    assert r.status_code == 200
    assert "Patrol coverage map" in r.text
