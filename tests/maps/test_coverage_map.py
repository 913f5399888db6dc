"""Coverage map rendering: labels, display zone, offline assets, and the page in Chromium."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import folium
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from shapely.geometry import LineString, Point
from shapely.ops import substring

from service.geo.projection import LocalProjection
from service.maps.assets import mount_assets, offline_map, referenced_assets
from service.maps.coverage import (
    CoverageMapView,
    FenceLayer,
    PositionLayer,
    RouteLayer,
    SegmentLayer,
    TrackLayer,
    heat_grid,
    render_coverage_map,
    segment_age,
    thin_track,
    track_point_cap,
)
from service.maps.kit import presence_level
from service.maps.labels import format_time, labels, zone_label
from service.routes.security import map_page
from tests.helpers import browser_page

TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
ATTRIBUTION = "&copy; OpenStreetMap contributors"
WITA = ZoneInfo("Asia/Makassar")
VISIT_UTC = datetime(2024, 11, 27, 18, 10, tzinfo=UTC)  # 28-11-2024 02:10 WITA
DEG_PER_M = 1 / 111_320


def route_layer(
    id: int,
    name: str,
    centerline: LineString,
    segments: list[SegmentLayer],
    coverage_ratio: float,
    revisit_s: float | None = None,
) -> RouteLayer:
    """A route layer with a 30 m corridor round its centerline."""
    corridor = centerline.buffer(30 * DEG_PER_M)
    return RouteLayer(
        id, name, 30, corridor, centerline, segments, coverage_ratio, revisit_s=revisit_s
    )


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
    ratio = covered / segments[-1].end_m
    return route_layer(7, "Rute KPUD Balikpapan", centerline, segments, ratio)


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
                covered_ratio=0.95,
                longest_gap=(VISIT_UTC - timedelta(hours=1), VISIT_UTC - timedelta(minutes=20)),
            ),
            FenceLayer(
                2,
                "Sektor Klandasan",
                "sector",
                Point(116.8255, -1.2625).buffer(0.0018),
                covered_ratio=0.3,
                longest_gap=(VISIT_UTC, VISIT_UTC + timedelta(hours=5)),
            ),
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


@pytest.mark.parametrize(
    ("view_args", "texts", "other_title"),
    [
        (
            (),  # Bahasa Indonesia unless another language is asked for
            (
                "Peta Cakupan Patroli",
                "Rute patroli",
                "Koridor",
                "30 menit lalu",
                "batas kunjungan ulang",
                "Terlambat / belum dikunjungi",
                "Kehadiran",
                "Kepadatan posisi",
                "Area pengamanan",
                "Objek vital",
                "Jejak unit",
                "Posisi terakhir",
                "Terakhir dikunjungi",
                "Belum pernah",
                "Periode",
            ),
            "Patrol coverage map",
        ),
        (
            ("en",),  # lang='en' switches every label to English
            (
                "Patrol coverage map",
                "Patrol route",
                "30 min ago",
                "revisit interval ago",
                "Overdue / not visited",
                "Presence",
                "Position density",
                "Critical site",
                "Unit track",
                "Latest position",
                "Last visited",
                "Never",
                "Window",
            ),
            "Peta Cakupan Patroli",
        ),
    ],
    ids=["default", "en"],
)
def test_labels_in_the_language(
    view_args: tuple[str, ...], texts: tuple[str, ...], other_title: str
) -> None:
    """Every label is in the page's language, and no title of another."""
    page = render_coverage_map(make_view(*view_args))
    for text in texts:
        assert text in page, text
    assert other_title not in page


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
    assert "/static/patroli/patroli.css" in assets and "patroli-box" not in page  # styles: static
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
        "/static/patroli/patroli.css",
        "/static/patroli/coverage.js",
    ):
        assert client.get(path).status_code == 200, path


def _map_app(page_html: str) -> FastAPI:
    """A tiny app serving the offline assets and one map page."""
    app = FastAPI()
    mount_assets(app)

    @app.get("/map", response_class=HTMLResponse)
    def coverage_page() -> HTMLResponse:
        return map_page(page_html, TILE_URL)  # under the policy the service sends with it

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

    viewport = {"width": 1280, "height": 800}
    with (
        live_server(app) as base_url,
        browser_page(browser, external, viewport=viewport) as (page, errors),
    ):
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
        assert "Terlambat / belum dikunjungi" in legend.inner_text()
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

    assert errors == []
    assert external, "the tile layer requested no tiles"
    assert all(_is_tile(url) for url in external), external


WINDOW_END = datetime(2024, 11, 28, 0, 0, tzinfo=UTC)  # 28-11-2024 08:00 WITA
AGES = (timedelta(minutes=10), timedelta(minutes=45), timedelta(hours=3), None)


def make_age_view(lang: str = "id", revisit_s: float | None = None) -> CoverageMapView:
    """Four 50 m segments last visited 10 min, 45 min and 3 h before the window end, and never;
    three critical sites with 95 %, 60 % and 20 % presence; one unit's track."""
    step = 50 * DEG_PER_M
    line = LineString([(116.8300, -1.2650), (116.8300 + 4 * step, -1.2650)])
    segments = [
        SegmentLayer(
            line=substring(line, i * step, (i + 1) * step),
            start_m=i * 50.0,
            end_m=(i + 1) * 50.0,
            visited=age is not None,
            last_visit=None if age is None else WINDOW_END - age,
        )
        for i, age in enumerate(AGES)
    ]
    route = route_layer(3, "Rute Uji", line, segments, 0.75, revisit_s)
    gap = (WINDOW_END - timedelta(hours=2), WINDOW_END - timedelta(minutes=30))
    fences = [
        FenceLayer(
            10 + i,
            f"Objek {i}",
            "critical_site",
            Point(116.8305 + 0.0015 * i, -1.2635).buffer(0.0004),
            covered_ratio=ratio,
            longest_gap=gap,
        )
        for i, ratio in enumerate((0.95, 0.6, 0.2))
    ]
    coords = [(116.8300 + k * step / 25, -1.2650 + 0.00005 * math.sin(k)) for k in range(100)]
    return CoverageMapView(
        routes=[route],
        fences=fences,
        tracks=[TrackLayer(1, "Patroli 1", coords)],
        positions=[PositionLayer(1, "Patroli 1", *coords[-1], WINDOW_END, None)],
        start=WINDOW_END - timedelta(hours=12),
        end=WINDOW_END,
        tz=WITA,
        lang=lang,
        tile_url=TILE_URL,
        tile_attribution=ATTRIBUTION,
    )


def test_segment_age_thresholds() -> None:
    """Green under 30 min, amber under the revisit interval (60 min default), then red."""
    end = WINDOW_END
    assert segment_age(end - timedelta(minutes=10), end, None) == "fresh"
    assert segment_age(end - timedelta(minutes=45), end, None) == "stale"
    assert segment_age(end - timedelta(hours=3), end, None) == "overdue"
    assert segment_age(None, end, None) == "overdue"
    assert segment_age(end - timedelta(minutes=90), end, 7200) == "stale"
    assert segment_age(end - timedelta(hours=3), end, 7200) == "overdue"
    assert segment_age(end - timedelta(minutes=25), end, 1200) == "overdue"  # revisit wins
    assert [presence_level(r) for r in (1.0, 0.9, 0.6, 0.5, 0.2, 0.0)] == [
        "good",
        "good",
        "fair",
        "fair",
        "poor",
        "poor",
    ]


def test_segments_coloured_by_age() -> None:
    """Segment classes and tooltips follow the time since the last visit."""
    page = render_coverage_map(make_age_view())
    for css in (
        "patroli-segment patroli-fresh patroli-visited",
        "patroli-segment patroli-stale patroli-visited",
        "patroli-segment patroli-overdue patroli-visited",
        "patroli-segment patroli-overdue patroli-unvisited",
    ):
        assert css in page, css
    for text in ("07:50 WITA (10 menit lalu)", "(45 menit lalu)", "(3 jam 0 menit lalu)"):
        assert text in page, text
    english = render_coverage_map(make_age_view("en"))
    for text in ("(10 min ago)", "(45 min ago)", "(3 h 0 min ago)", "Never"):
        assert text in english, text


def test_geofences_coloured_by_presence() -> None:
    """Geofences carry their presence level, covered share and longest gap."""
    page = render_coverage_map(make_age_view())
    for level in ("good", "fair", "poor"):
        assert f"patroli-geofence patroli-critical patroli-presence-{level}" in page, level
    for text in ("Kehadiran: 95,0%", "Kehadiran: 60,0%", "Kehadiran: 20,0%"):
        assert text in page, text
    assert "Kekosongan terlama: 28-11-2024 06:00" in page
    assert "07:30 WITA (90 menit)" in page
    english = render_coverage_map(make_age_view("en"))
    assert "Presence: 95.0%" in english and "Longest gap: 28-11-2024 06:00" in english


def test_heat_grid_counts_fixes() -> None:
    """Fixes are counted on ~50 m squares; the busiest cells come first and the cap holds."""
    rng = np.random.default_rng(7)
    lons = np.r_[np.full(500, 116.83001), 116.83 + rng.uniform(0, 0.01, 300)]
    lats = np.r_[np.full(500, -1.26501), -1.265 + rng.uniform(0, 0.01, 300)]
    cells = heat_grid(lons, lats)
    assert sum(c.count for c in cells) == 800
    assert cells[0].count >= 500
    assert [c.count for c in cells] == sorted((c.count for c in cells), reverse=True)
    proj = LocalProjection.for_point(116.83, -1.265)
    x, y = proj.xy([p[0] for p in cells[0].ring], [p[1] for p in cells[0].ring])
    assert float(np.ptp(x)) == pytest.approx(50, abs=0.5)
    assert float(np.ptp(y)) == pytest.approx(50, abs=0.5)
    assert len(heat_grid(lons, lats, max_cells=3)) == 3
    assert heat_grid([], []) == []
    assert heat_grid([float("nan")], [1.0]) == []


@pytest.mark.browser
@pytest.mark.parametrize(
    ("lang", "texts"),
    [
        ("id", ("Terlambat / belum dikunjungi", "Kehadiran", "Kepadatan posisi", "Tampilkan")),
        ("en", ("Overdue / not visited", "Presence", "Position density", "Show")),
    ],
)
def test_age_presence_heat_and_window_in_browser(
    browser: Any, live_server: Any, artifacts_dir: Path, lang: str, texts: tuple[str, ...]
) -> None:
    """Segment ages, presence colours, the heat layer and the window picker work in Chromium."""
    app = _map_app(render_coverage_map(make_age_view(lang)))
    external: list[str] = []

    viewport = {"width": 1280, "height": 800}
    with live_server(app) as base_url:
        # The browser's own zone differs from the display zone on purpose.
        zone = "Europe/Amsterdam"
        with browser_page(browser, external, viewport=viewport, timezone_id=zone) as (page, errors):
            page.goto(f"{base_url}/map?key=k-123&lang={lang}&junk=1", wait_until="load")
            page.wait_for_selector(".patroli-segment", state="attached")

            colors = {"fresh": "#1a9641", "stale": "#f39c12", "overdue": "#d7191c"}
            for age, count in (("fresh", 1), ("stale", 1), ("overdue", 2)):
                seg = page.locator(f".patroli-segment.patroli-{age}")
                assert seg.count() == count, age
                assert seg.first.get_attribute("stroke") == colors[age]
            assert page.locator(".patroli-segment.patroli-visited").count() == 3
            assert page.locator(".patroli-segment.patroli-unvisited").count() == 1
            for level, color in (("good", "#1a9641"), ("fair", "#f39c12"), ("poor", "#d7191c")):
                site = page.locator(f".patroli-critical.patroli-presence-{level}")
                assert site.count() == 1, level
                assert site.get_attribute("stroke") == color

            legend = page.locator("#patroli-legend").inner_text()
            title = page.locator("#patroli-title").inner_text()
            for text in texts:
                assert text in legend + title, text

            # The heat layer is listed in the layer control but off until picked.
            assert page.locator(".patroli-heat").count() == 0
            page.hover(".leaflet-control-layers")
            heat = page.locator(".leaflet-control-layers-overlays label", has_text=texts[2])
            assert heat.count() == 1
            heat.locator("input").check()
            assert page.locator(".patroli-heat").count() > 0
            page.screenshot(path=str(artifacts_dir / f"coverage-map-ages-{lang}.png"))

            form = page.locator("#patroli-window")
            assert form.locator("input[name=from]").input_value() == "2024-11-27T20:00"
            assert form.locator("input[name=to]").input_value() == "2024-11-28T08:00"
            form.locator("input[name=from]").fill("2024-11-27T10:00")
            form.locator("input[name=to]").fill("2024-11-27T18:30")
            with page.expect_navigation(wait_until="load"):
                form.locator("button[type=submit]").click()
            url = urlsplit(page.url)
            assert url.path == "/map"
            assert parse_qs(url.query) == {
                "from": ["2024-11-27T02:00:00Z"],
                "to": ["2024-11-27T10:30:00Z"],
                "key": ["k-123"],
                "lang": [lang],
            }

    assert errors == []
    assert all(_is_tile(url) for url in external), external


ROUTE_M = 20_000.0
BIG_UNITS = 50
BIG_FIXES = 24 * 3600 // 5  # one fix every 5 s for 24 h


def make_big_view() -> CoverageMapView:
    """24 h of 5 s fixes from 50 units patrolling a 20 km route (400 segments), 10 sites."""
    rng = np.random.default_rng(1)
    start = datetime(2024, 11, 27, 0, 0, tzinfo=UTC)
    end = start + timedelta(days=1)
    # A gently winding road heading east out of Balikpapan.
    s = np.linspace(0.0, ROUTE_M, 401)
    route_x = 116.78 + s * DEG_PER_M
    route_y = -1.265 + 0.01 * np.sin(s / 3000.0)
    centerline = LineString(np.column_stack((route_x, route_y)))
    segments = []
    for i in range(400):
        last = None if i % 7 == 0 else end - timedelta(minutes=(i * 13) % 240)
        segments.append(
            SegmentLayer(
                line=LineString([(route_x[i], route_y[i]), (route_x[i + 1], route_y[i + 1])]),
                start_m=float(s[i]),
                end_m=float(s[i + 1]),
                visited=last is not None,
                last_visit=last,
            )
        )
    route = route_layer(1, "Rute Balikpapan Timur", centerline, segments, 6 / 7, 5400)
    fences = [
        FenceLayer(
            k,
            f"Objek vital {k}",
            "critical_site" if k % 2 else "sector",
            Point(np.interp(k * 2000.0, s, route_x), np.interp(k * 2000.0, s, route_y)).buffer(
                0.0008
            ),
            covered_ratio=(k * 0.11) % 1.0,
            longest_gap=(start + timedelta(hours=k), start + timedelta(hours=k + 1)),
        )
        for k in range(10)
    ]
    tracks, positions = [], []
    t = np.arange(BIG_FIXES) * 5.0
    for unit in range(1, BIG_UNITS + 1):
        # Back and forth along the route at about 25 km/h, with a few metres of GPS noise.
        travel = (unit * 400.0 + t * 7.0) % (2 * ROUTE_M)
        along_m = np.where(travel > ROUTE_M, 2 * ROUTE_M - travel, travel)
        lon = np.interp(along_m, s, route_x) + rng.normal(0, 5 * DEG_PER_M, t.size)
        lat = np.interp(along_m, s, route_y) + rng.normal(0, 5 * DEG_PER_M, t.size)
        coords = list(zip(lon.tolist(), lat.tolist(), strict=True))
        name = f"Patroli {unit:02d}"
        tracks.append(TrackLayer(unit, name, coords))
        positions.append(
            PositionLayer(unit, name, coords[-1][0], coords[-1][1], end - timedelta(seconds=5), 7)
        )
    return CoverageMapView(
        routes=[route],
        fences=fences,
        tracks=tracks,
        positions=positions,
        start=start,
        end=end,
        tz=WITA,
        lang="id",
        tile_url=TILE_URL,
        tile_attribution=ATTRIBUTION,
    )


@pytest.fixture(scope="module")
def big_page() -> str:
    """The rendered big view (built once per module)."""
    view = make_big_view()
    started = time.perf_counter()
    page = render_coverage_map(view)
    elapsed = time.perf_counter() - started
    print(f"big coverage map: {len(page.encode()):,} bytes rendered in {elapsed:.2f} s")
    return page


def test_big_view_stays_light(big_page: str) -> None:
    """24 h of 5 s pings for 50 units on a 20 km route renders to at most 2 MB."""
    assert len(big_page.encode()) <= 2_000_000, len(big_page)
    assert big_page.count('"patroli-heat"') >= 1


@pytest.mark.browser
def test_big_view_loads_in_browser(
    browser: Any, live_server: Any, artifacts_dir: Path, big_page: str
) -> None:
    """The big page loads in Chromium without errors; load timings are printed, not asserted."""
    viewport = {"width": 1280, "height": 800}
    with (
        live_server(_map_app(big_page)) as base_url,
        browser_page(browser, viewport=viewport) as (page, errors),
    ):
        started = time.perf_counter()
        page.goto(f"{base_url}/map", wait_until="load")
        wall = time.perf_counter() - started
        timing = page.evaluate(
            "performance.timing.loadEventEnd - performance.timing.navigationStart"
        )
        print(f"big coverage map load: {wall:.2f} s wall clock, {timing} ms navigation timing")
        assert page.locator(".patroli-segment").count() == 400
        assert page.locator(".patroli-unit").count() == BIG_UNITS
        assert page.locator(".patroli-track").count() == BIG_UNITS
        assert wall < 60  # a sanity bound only: benchmarks live in bench/
        page.screenshot(path=str(artifacts_dir / "coverage-map-big.png"))
    assert errors == []
