"""Names are data: template code, markup and script in any name reach a map page as text only.

Units (name, kind), patrol routes (name) and geofences (name, kind) carry each payload; every map
page must answer 200, show the text as it is, run nothing, and never contain what a template
engine would have made of it.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import ADMIN_KEY
from tests.helpers import (
    along,
    browser_page,
    circle_feature,
    live_app,
    page_data,
    route_feature,
    without_data,
)

PAYLOADS = [
    "S {{7*7}} E",
    "{{ cycler.__init__.__globals__.os.getpid() }}",
    "{{",
    "{%",
    "</script><script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
]
# What Folium's templates must never contain: any of the payloads' cores.
CORES = ("7*7", "cycler", "{{", "{%", "alert(1)", "onerror")


def _scene(http: Any, payload: str, n: int, now: datetime) -> dict[str, Any]:
    """A route, a geofence and a unit with `payload` as every name and kind, and its fixes."""
    route = http.post(
        "/api/v1/patrol-routes", json=route_feature(name=payload, corridor_m=30)
    ).json()
    fence = http.post(
        "/api/v1/geofences",
        json=circle_feature(*along(100 + 150 * n, 60), 40, name=payload, kind=payload),
    )
    assert fence.status_code == 201, fence.text
    unit = http.post(
        "/api/v1/units",
        json={
            "name": payload,
            "kind": payload,
            "device_id": f"dev{n}",
            "patrol_route_ids": [route["id"]],
        },
    )
    assert unit.status_code == 201, unit.text
    secret = {"Authorization": f"Bearer {unit.json()['device_secret']}"}
    fixes = []
    for i in range(6):  # along the route, then into the geofence: events name both
        lon, lat = along(100 + 150 * n + 10 * i, 60 if i >= 3 else 0)
        ts = (now - timedelta(seconds=300 - 20 * i)).isoformat()
        fixes.append({"device_id": f"dev{n}", "lon": lon, "lat": lat, "ts": ts})
    r = http.post("/api/v1/pings", json=fixes, headers=secret)
    assert r.status_code == 200, r.text
    return {"route": route["id"], "fence": fence.json()["id"], "unit": unit.json()["id"]}


def _pages(now: datetime) -> dict[str, dict[str, str]]:
    """The map pages and their query parameters."""
    window = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(minutes=1)).isoformat(),
    }
    return {"/maps/live": {}, "/maps/coverage": window, "/maps/replay": window}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_names_never_reach_a_template(client: TestClient, payload: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _scene(client, payload, 0, now)
    for path, params in _pages(now).items():
        r = client.get(path, params=params)
        assert r.status_code == 200, (path, r.text[:300])
        page = r.text
        assert "S 49 E" not in page, path
        # The name is in the page data as it is (and escaped in tooltip HTML)...
        data = page_data(page)
        names = [u["name"] for u in data.get("config", {}).get("units", [])]
        names += [p["unit_name"] for p in data.get("config", {}).get("positions", {}).values()]
        tips = [f.get("tip", "") for f in data["features"].values()]
        assert payload in names or any(html.escape(payload) in t for t in tips), path
        assert any(f"<b>{html.escape(payload)}</b>" in t for t in tips), path
        # ... and nowhere in what Folium's templates made.
        rest = without_data(page)
        for core in CORES:
            assert core not in rest, (path, core)
        # Nothing can close the data block early or open markup.
        assert "</script><script>alert" not in page and "<img src=x" not in page, path


@pytest.mark.browser
def test_names_show_as_text_in_the_browser(settings: Settings, backend: str, browser: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with live_app(create_app(settings)) as (base, http):
        for n, payload in enumerate(PAYLOADS):
            _scene(http, payload, n, now)
        viewer = http.post("/api/v1/keys", json={"name": "cc", "role": "viewer"}).json()["key"]
        dialogs: list[str] = []
        with browser_page(browser, viewport={"width": 1400, "height": 900}) as (page, errors):
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            for path, params in _pages(now).items():
                url = httpx.URL(f"{base}{path}", params={**params, "key": viewer})
                response = page.goto(str(url), wait_until="load")
                assert response is not None and response.status == 200, path
                assert urlsplit(page.url).path == path
                page.wait_for_selector(".patroli-unit", state="attached")
                # Every tooltip open: unit labels, route, corridor and geofence tips.
                page.evaluate(
                    """() => {
                        const name = Object.keys(window).find((k) => k.startsWith("map_"));
                        window[name].eachLayer((layer) => {
                            if (layer.getTooltip && layer.getTooltip()) { layer.openTooltip(); }
                        });
                    }"""
                )
                bold = set(page.locator(".leaflet-tooltip b").all_inner_texts())
                # Leaflet tooltips, or the live map's own de-cluttered unit labels.
                labels = page.locator(
                    ".leaflet-tooltip.patroli-label, .patroli-unit-label"
                ).all_inner_texts()
                for payload in PAYLOADS:
                    # Unit labels: the name (on the coverage map: "name · HH:MM").
                    assert any(t == payload or t.startswith(f"{payload} \u00b7") for t in labels), (
                        path,
                        payload,
                        labels,
                    )
                    # Route and geofence tips start with the name in bold.
                    assert payload in bold, (path, payload, bold)
                assert page.locator("img[src=x]").count() == 0, path
                assert "S 49 E" not in page.locator("body").inner_text(), path
            text = page.locator("body").inner_text()
            assert "S {{7*7}} E" in text
        assert dialogs == []
        assert errors == []


def test_tile_settings_are_data_too(make_settings: Any) -> None:
    # The tile URL and attribution are operator settings; they still never become template code.
    attribution = "\u00a9 Polda {{7*7}} {% raw %} </script><script>alert(1)</script>"
    settings = make_settings(
        tile_url="https://tiles.polda.example/{z}/{x}/{y}.png?v={{7*7}}",
        tile_attribution=attribution,
    )
    now = datetime.now(UTC).replace(microsecond=0)
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        for path, params in _pages(now).items():
            r = http.get(path, params=params)
            assert r.status_code == 200, (path, r.text[:300])
            assert "49" not in r.text.split("tiles.polda.example")[1][:40], path
            assert "alert(1)</script>" not in r.text, path
            assert '"attribution":"\u00a9 Polda {{7*7}} {% raw %} \\u003c/script\\u003e' in r.text
