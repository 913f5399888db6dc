"""Coverage map rendering: labels, display zone, offline assets, and the page in Chromium."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import folium
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from shapely.geometry import LineString, Point
from shapely.ops import substring

from service.maps.assets import mount_assets, offline_map, referenced_assets
from service.maps.coverage import (
    CoverageMapView,
    FenceLayer,
    PositionLayer,
    RouteLayer,
    SegmentLayer,
    TrackLayer,
    render_coverage_map,
    thin_track,
    track_point_cap,
)
from service.maps.labels import format_time, labels, zone_label

TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
ATTRIBUTION = "&copy; OpenStreetMap contributors"
WITA = ZoneInfo("Asia/Makassar")
VISIT_UTC = datetime(2024, 11, 27, 18, 10, tzinfo=UTC)  # 28-11-2024 02:10 WITA
DEG_PER_M = 1 / 111_320
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _route() -> RouteLayer:
    """A bent route near the KPUD Balikpapan office, every third 50 m segment unvisited."""
    centerline = LineString(
        [(116.8270, -1.2690), (116.8312, -1.2654), (116.8370, -1.2640), (116.8420, -1.2600)]
    )
    step = 50 * DEG_PER_M
    segments = []
    i = 0
    pos = 0.0
    while pos < centerline.length:
        end = min(pos + step, centerline.length)
        visited = i % 3 != 0
        segments.append(
            SegmentLayer(
                line=substring(centerline, pos, end),
                start_m=pos / DEG_PER_M,
                end_m=end / DEG_PER_M,
                visited=visited,
                last_visit=VISIT_UTC if visited else None,
            )
        )
        pos = end
        i += 1
    covered = sum(s.end_m - s.start_m for s in segments if s.visited)
    return RouteLayer(
        id=7,
        name="Rute KPUD Balikpapan",
        corridor_m=30,
        corridor=centerline.buffer(30 * DEG_PER_M),
        centerline=centerline,
        segments=segments,
        coverage_ratio=covered / segments[-1].end_m,
    )


def _loop(unit: int, n: int) -> list[tuple[float, float]]:
    """A wobbly loop of `n` (lon, lat) points around the route."""
    coords = []
    for k in range(n):
        a = 2 * math.pi * k / n
        coords.append(
            (
                116.8330
                + (0.0045 + 0.0007 * (unit % 3)) * math.cos(a + unit)
                + 0.0002 * math.sin(41 * a),
                -1.2645 + 0.003 * math.sin(a + unit),
            )
        )
    return coords


def make_view(
    lang: str = "id",
    *,
    units: int = 2,
    points: int = 400,
    unit_name: str = "Patroli {n}",
    empty: bool = False,
) -> CoverageMapView:
    """A coverage view: one route, a circle-ish critical site, a sector, tracks and positions."""
    start = datetime(2024, 11, 27, 0, 0, tzinfo=UTC)
    if empty:
        routes: list[RouteLayer] = []
        fences: list[FenceLayer] = []
        units = 0
    else:
        routes = [_route()]
        fences = [
            FenceLayer(
                1,
                "Kantor KPUD Balikpapan",
                "critical_site",
                Point(116.8335, -1.2622).buffer(0.0011),
            ),
            FenceLayer(2, "Sektor Klandasan", "sector", Point(116.8255, -1.2625).buffer(0.0018)),
        ]
    tracks = []
    positions = []
    for n in range(1, units + 1):
        coords = _loop(n, points)
        name = unit_name.format(n=n)
        tracks.append(TrackLayer(n, name, coords))
        positions.append(
            PositionLayer(
                n, name, coords[-1][0], coords[-1][1], VISIT_UTC - timedelta(minutes=n), 8.5
            )
        )
    return CoverageMapView(
        routes=routes,
        fences=fences,
        tracks=tracks,
        positions=positions,
        start=start,
        end=start + timedelta(days=1),
        tz=WITA,
        lang=lang,
        tile_url=TILE_URL,
        tile_attribution=ATTRIBUTION,
    )


def test_indonesian_labels_by_default() -> None:
    """Labels are in Bahasa Indonesia unless another language is asked for."""
    page = render_coverage_map(make_view())
    for text in (
        "Peta Cakupan Patroli",
        "Rute patroli",
        "Koridor",
        "Segmen dikunjungi",
        "Segmen belum dikunjungi",
        "Area pengamanan",
        "Objek vital",
        "Jejak unit",
        "Posisi terakhir",
        "Terakhir dikunjungi",
        "Belum pernah",
        "Periode",
    ):
        assert text in page, text
    assert "Patrol coverage map" not in page


def test_english_labels() -> None:
    """lang='en' switches every label to English."""
    page = render_coverage_map(make_view("en"))
    for text in (
        "Patrol coverage map",
        "Patrol route",
        "Visited segment",
        "Segment not visited",
        "Critical site",
        "Unit track",
        "Latest position",
        "Last visited",
        "Never",
        "Window",
    ):
        assert text in page, text
    assert "Peta Cakupan Patroli" not in page


def test_times_shown_in_wita() -> None:
    """Times and the window are shown in the display zone (WITA)."""
    page = render_coverage_map(make_view())
    assert "28-11-2024 02:10 WITA" in page  # 18:10 UTC the day before
    title = re.search(r"<title>(.*?)</title>", page)
    assert title is not None
    assert "27-11-2024 08:00 \u2013 28-11-2024 08:00 WITA" in title.group(1)
    assert format_time(VISIT_UTC, ZoneInfo("Asia/Jakarta")) == "28-11-2024 01:10 WIB"


def test_zone_and_label_lookup() -> None:
    """Zone abbreviations and language fallback."""
    assert zone_label(WITA) == "WITA"
    assert zone_label(ZoneInfo("Asia/Jakarta")) == "WIB"
    assert zone_label(ZoneInfo("Asia/Jayapura")) == "WIT"
    assert zone_label(ZoneInfo("Europe/Amsterdam")) == "Europe/Amsterdam"
    assert labels("en")["never"] == "Never"
    assert labels("en-GB")["title"] == "Patrol coverage map"
    assert labels("xx")["title"] == "Peta Cakupan Patroli"


def test_no_cdn_links() -> None:
    """Only local scripts/stylesheets; the tile template is the only external URL."""
    class_js = list(folium.Map.default_js)
    page = render_coverage_map(make_view())
    assets = list(referenced_assets(page))
    assert assets, "page loads no scripts at all"
    assert all(url.startswith("/static/") for url in assets), assets
    assert set(re.findall(r"https?://[^\s\"'<>\\]+", page)) == {TILE_URL}
    assert folium.Map.default_js == class_js  # the class-level CDN list is untouched
    assert "bootstrap" not in page and "font-awesome" not in page.lower()


def test_offline_map_static_prefix() -> None:
    """offline_map honours the static prefix and leaves other maps alone."""
    fmap = offline_map((-1.2654, 116.8312), 12, "/tiles/{z}/{x}/{y}.png", "local", "/assets/")
    page = fmap.get_root().render()
    assert sorted(referenced_assets(page)) == [
        "/assets/jquery/jquery.min.js",
        "/assets/leaflet/leaflet.css",
        "/assets/leaflet/leaflet.js",
    ]
    assert "http" not in page.replace("http-equiv", "")
    assert folium.Map().default_js[0][1].startswith("https://")  # other maps unaffected


def test_user_text_is_escaped() -> None:
    """Names from the database cannot inject markup."""
    page = render_coverage_map(make_view(unit_name="<img src=x onerror=alert({n})>"))
    assert "<img src=x" not in page
    assert "onerror=alert(1)" in page  # present, but only as escaped text


def test_empty_view_uses_default_centre() -> None:
    """Without data the map centres on Balikpapan and says so."""
    page = render_coverage_map(make_view(empty=True))
    assert "-1.2654" in page and "116.8312" in page
    assert "Tidak ada data" in page
    assert "map.fitBounds" not in page


def test_thin_track_caps_points() -> None:
    """Track simplification keeps the ends and respects the point cap."""
    coords = _loop(1, 17_280)
    thinned = thin_track(coords, tolerance_m=5, max_points=800)
    assert 2 <= len(thinned) <= 800
    assert thinned[0] == coords[0] and thinned[-1] == coords[-1]
    assert thin_track([(116.8, -1.2)]) == [(116.8, -1.2)]
    assert len(thin_track([(116.8, -1.2)] * 50)) == 2
    assert track_point_cap(50) * 50 <= 40_000


def test_big_view_stays_light() -> None:
    """24 h of 5 s pings for 50 units renders to at most 2 MB."""
    view = make_view(units=50, points=17_280)
    started = time.perf_counter()
    page = render_coverage_map(view)
    elapsed = time.perf_counter() - started
    assert len(page.encode()) <= 2_000_000, len(page)
    assert elapsed < 20, elapsed


def test_mount_assets_serves_leaflet_and_jquery() -> None:
    """Leaflet (with its images) and jQuery are served locally."""
    app = FastAPI()
    mount_assets(app)
    client = TestClient(app)
    for path in (
        "/static/leaflet/leaflet.js",
        "/static/leaflet/leaflet.css",
        "/static/leaflet/images/marker-icon.png",
        "/static/leaflet/images/layers.png",
        "/static/jquery/jquery.min.js",
    ):
        assert client.get(path).status_code == 200, path


def _map_app(page_html: str) -> FastAPI:
    """A tiny app serving the offline assets and one map page."""
    app = FastAPI()
    mount_assets(app)

    @app.get("/map", response_class=HTMLResponse)
    def coverage_page() -> str:
        return page_html

    return app


def _is_tile(url: str) -> bool:
    """Whether `url` is a request for a tile of TILE_URL."""
    parts = urlsplit(url)
    return parts.hostname == "tile.openstreetmap.org" and bool(
        re.fullmatch(r"/\d+/\d+/\d+\.png", parts.path)
    )


@pytest.mark.browser
def test_coverage_map_in_browser(browser: Any, live_server: Any, artifacts_dir: Path) -> None:
    """The page works in Chromium with every non-local request blocked."""
    view = make_view()
    app = _map_app(render_coverage_map(view))
    external: list[str] = []
    errors: list[str] = []

    def route_request(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    with live_server(app) as base_url:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("**/*", route_request)
            page.goto(f"{base_url}/map", wait_until="load")
            page.wait_for_selector(".patroli-segment", state="attached")

            assert page.evaluate("typeof window.L") == "object"
            assert page.evaluate("L.version") == "1.9.3"
            assert page.locator(".folium-map.leaflet-container").count() == 1
            assert page.locator(".patroli-segment.patroli-visited").count() > 0
            assert page.locator(".patroli-segment.patroli-unvisited").count() > 0
            assert page.locator(".patroli-route").count() == 1
            assert page.locator(".patroli-corridor").count() == 1
            assert page.locator(".patroli-geofence").count() == 2
            assert page.locator(".patroli-geofence.patroli-critical").count() == 1
            assert page.locator(".patroli-track").count() == 2
            assert page.locator(".patroli-unit").count() == 2
            assert page.locator('.patroli-unit[data-unit-id="1"]').count() == 1
            assert page.locator('.patroli-segment[data-route-id="7"]').count() == len(
                view.routes[0].segments
            )

            legend = page.locator("#patroli-legend")
            assert legend.is_visible()
            assert "Segmen belum dikunjungi" in legend.inner_text()
            title = page.locator("#patroli-title")
            assert title.is_visible()
            assert "28-11-2024 08:00 WITA" in title.inner_text()
            labels_text = page.locator(".leaflet-tooltip.patroli-label").all_inner_texts()
            assert any("Patroli 1" in text and "02:09" in text for text in labels_text)

            # Hovering a visited segment shows its last visit in WITA.
            page.eval_on_selector(
                ".patroli-visited",
                """el => { const r = el.getBoundingClientRect();
                el.dispatchEvent(new MouseEvent("mouseover", {bubbles: true,
                    clientX: r.x + r.width / 2, clientY: r.y + r.height / 2})); }""",
            )
            tip = page.locator(".leaflet-tooltip.patroli-tip")
            tip.wait_for(state="visible", timeout=2000)
            assert "Terakhir dikunjungi: 28-11-2024 02:10 WITA" in tip.inner_text()

            page.mouse.move(5, 400)
            page.wait_for_timeout(300)
            page.screenshot(path=str(artifacts_dir / "coverage-map.png"))
        finally:
            context.close()

    assert errors == []
    assert external, "the tile layer requested no tiles"
    assert all(_is_tile(url) for url in external), external
