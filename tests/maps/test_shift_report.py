"""The printable shift report: its numbers are the JSON endpoints' numbers, names are text, its
PDF is printed by headless Chromium (503 with the browser fallback where there is none)."""

from __future__ import annotations

import html
import io
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.maps.shift_report import alert_rows
from service.store.db import Store
from service.window import Window
from tests.conftest import ADMIN_KEY, CHROMIUM, IN_CI
from tests.helpers import T0, along, browser_page, circle_feature, live_app, ping, route_feature

WITA = ZoneInfo("Asia/Makassar")
DATE = "2024-11-27"  # T0 is 07:00 WITA on this date: the day shift starts at T0
DAY = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=12)).isoformat()}
SITE = along(500, 200)  # 200 m north of the route, off its 30 m corridor
OFF = 100.0  # metres north of the route: outside the corridor


def at(device: str, where: tuple[float, float], seconds: float) -> dict[str, Any]:
    """A ping at a position, `seconds` after T0."""
    ts = (T0 + timedelta(seconds=seconds)).isoformat()
    return {"device_id": device, "lon": where[0], "lat": where[1], "ts": ts}


def seed(client: TestClient, unit_name: str = "Samapta 1", place: str = "Kantor KPU") -> dict:
    """A route, a critical site and two units with fixes in the day shift of DATE."""
    route = client.post("/api/v1/patrol-routes", json=route_feature(name=place + " rute"))
    assert route.status_code == 201, route.text
    rid = route.json()["id"]
    fence = client.post("/api/v1/geofences", json=circle_feature(*SITE, radius_m=50, name=place))
    assert fence.status_code == 201, fence.text
    u1 = client.post(
        "/api/v1/units", json={"name": unit_name, "device_id": "u1", "patrol_route_ids": [rid]}
    )
    u2 = client.post("/api/v1/units", json={"name": "Samapta 2", "device_id": "u2"})
    assert u1.status_code == 201 and u2.status_code == 201, u1.text + u2.text
    # u1: 0 -> 900 m along the route, 100 m every 20 s; then 5 minutes 100 m off the route
    # (every 30 s) and back on it.
    drive = [ping("u1", 100.0 * k, 20.0 * k) for k in range(10)]
    off = [ping("u1", 900.0, 200.0 + 30.0 * k, offset_m=OFF) for k in range(1, 11)]
    back = [ping("u1", 900.0 - 50.0 * k, 500.0 + 20.0 * k) for k in range(1, 5)]
    # u2: at the site 07:00-07:06 and 08:30-09:00 (every 30 s, wobbling by 2 m).
    wobble = along(500, 202)
    first = [at("u2", SITE if k % 2 else wobble, 30.0 * k) for k in range(13)]
    second = [at("u2", SITE if k % 2 else wobble, 5400.0 + 30.0 * k) for k in range(61)]
    pings = [*drive, *off, *back, *first, *second]
    r = client.post("/api/v1/pings", json=pings)
    assert r.status_code == 200 and r.json()["accepted"] == len(pings), r.text
    return {"route": rid, "site": fence.json()["id"], "u1": u1.json()["id"]}


class Page(HTMLParser):
    """The tables (by class), chart bars and timeline gaps of a report page, as text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.bars: list[str] = []  # titles of the presence bars, in order
        self.gaps: list[str] = []  # titles of the timeline's uncovered intervals
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] = []
        self._title_for: str | None = None
        self._stack: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "rect":
            self._stack.append("gap" if a.get("class") == "gap" else "rect")
        elif tag == "g" and a.get("class") == "bar":
            self._stack.append("bar")
        elif tag == "title":
            self._title_for = self._stack[-1] if self._stack else None
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append(self._row)
        elif tag == "table":
            self._table = None
        elif tag == "title" and self._cell is not None:
            text = "".join(self._cell)
            if self._title_for == "rect" and "bar" in self._stack:
                self.bars.append(text)
            elif self._title_for == "gap":
                self.gaps.append(text)
            self._cell = None
            self._title_for = None
        elif self._stack and (tag == "rect" or (tag == "g" and self._stack[-1] == "bar")):
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)

    def rows(self, css: str) -> dict[str, list[str]]:
        """The body rows of a table by their first cell."""
        return {row[0]: row for row in self.tables[css][1:]}


def pct(ratio: float) -> str:
    """A ratio as the Indonesian report writes it: one decimal, decimal comma."""
    return f"{ratio * 100:.1f}".replace(".", ",") + "%"


def duration(text: str) -> float:
    """Seconds of an h:mm:ss cell."""
    h, m, s = (int(p) for p in text.split(":"))
    return h * 3600 + m * 60 + s


def local(iso: str) -> str:
    """An ISO UTC time as the report writes it in WITA."""
    ts = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(WITA)
    return ts.strftime("%d-%m-%Y %H:%M")


def report(client: TestClient, **params: str) -> Page:
    r = client.get("/reports/shift", params={"date": DATE, "shift": "day", **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self';" in r.headers["content-security-policy"]  # no inline script
    return Page(r.text)


def test_the_page_shows_the_json_reports_numbers(client: TestClient) -> None:
    ids = seed(client)
    page = report(client)
    units = client.get("/api/v1/reports/units", params=DAY).json()["units"]
    [day] = [
        s
        for s in client.get("/api/v1/reports/shifts", params={"date": DATE}).json()["shifts"]
        if s["shift"] == "day"
    ]
    assert day["units"] == units  # the same window as the day shift
    rows = page.rows("units")
    assert set(rows) == {u["unit_name"] for u in units}
    for u in units:
        _, km, on_route, _, stops, last = rows[u["unit_name"]]
        assert float(km.replace(",", ".")) == round(u["distance_m"] / 1000, 2)
        assert duration(on_route) == round(u["time_on_route_s"])
        assert int(stops) == u["stops"]
        assert last == local(u["last_fix"])
    # Samapta 1: 180 s on the route, 50 s leaving it, 270 s off it, 20 s coming back and 60 s
    # on it again: every step is linked (at most 60 s apart).
    assert duration(rows["Samapta 1"][2]) == 180 + 60
    assert duration(rows["Samapta 1"][3]) == 50 + 270 + 20
    assert rows["Samapta 2"][3] == "\u2014"  # no assigned route: no time off it

    coverage = client.get(f"/api/v1/coverage/patrol-routes/{ids['route']}", params=DAY).json()
    assert page.rows("routes")["Kantor KPU rute"][1] == pct(coverage["coverage_ratio"])
    presence = client.get(f"/api/v1/presence/geofences/{ids['site']}", params=DAY).json()
    site = page.rows("sites")["Kantor KPU"]
    assert site[1] == pct(presence["coverage_ratio"])
    uncovered = sum(i["duration_s"] for i in presence["uncovered_intervals"])
    assert duration(site[2]) == round(uncovered)
    assert 0 < presence["coverage_ratio"] < 0.1

    # One bar per local hour of the shift, each the presence endpoint's share of that hour.
    hourly = {h["hour"]: h["covered_ratio"] for h in presence["hourly"]}
    assert len(page.bars) == 12
    for hour, title in zip(range(7, 19), page.bars, strict=True):
        assert title.startswith(f"{hour:02d}:00"), title
        assert title.endswith(": " + pct(hourly[hour])), title
    assert pct(hourly[8]) == "50,0%"  # 08:30-09:00 of 08:00-09:00

    # The timeline: the route's gaps, then the site's (as the presence endpoint has them).
    site_gaps = page.gaps[-len(presence["uncovered_intervals"]) :]
    for gap, interval in zip(site_gaps, presence["uncovered_intervals"], strict=True):
        assert gap.startswith(local(interval["from"])[-5:])

    events = client.get("/api/v1/events", params={**DAY, "limit": 1000}).json()["events"]
    alerts = page.tables["alerts"][1:]
    assert len(alerts) == len(events) > 0
    newest_first = sorted(events, key=lambda e: (e["ts"], e["id"]), reverse=True)
    assert [row[0] for row in alerts] == [local(e["ts"]) for e in newest_first]
    assert [row[2] for row in alerts] == [e["unit_name"] or "" for e in newest_first]


def test_english_and_header(client: TestClient, make_settings: Callable[..., Settings]) -> None:
    seed(client)
    r = client.get("/reports/shift", params={"date": DATE, "shift": "07:00-19:00", "lang": "en"})
    assert r.status_code == 200, r.text
    text = r.text
    assert '<html lang="en">' in text
    assert "Patrol shift report" in text and "Unit activity" in text
    assert "Operasi Patroli" in text  # the default operation name
    assert "27-11-2024 07:00 \u2013 27-11-2024 19:00 WITA" in text
    page = Page(text)
    assert page.tables["units"][0][:2] == ["Unit", "Distance (km)"]
    indonesian = client.get("/reports/shift", params={"date": DATE}).text
    assert '<html lang="id">' in indonesian and "Laporan Shift Patroli" in indonesian
    with TestClient(create_app(make_settings(operation_name="Operasi Mantap Praja"))) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        assert "Operasi Mantap Praja" in c.get("/reports/shift", params={"date": DATE}).text


def test_an_empty_shift(client: TestClient) -> None:
    page = report(client)
    assert page.tables == {}
    text = "".join(page.text)
    for empty in ("Tidak ada data pada periode ini", "Tidak ada rute patroli", "Tidak ada unit"):
        assert empty in text
    assert "Tidak ada peringatan pada periode ini" in text


HOSTILE = "</td><script>alert(1)</script><img src=x onerror=alert(1)> S {{7*7}} E"


def test_names_are_escaped(client: TestClient) -> None:
    seed(client, unit_name=HOSTILE, place=HOSTILE)
    r = client.get("/reports/shift", params={"date": DATE})
    assert r.status_code == 200, r.text
    assert HOSTILE not in r.text
    assert "<script>" not in r.text and "<img" not in r.text
    assert "S 49 E" not in r.text
    assert html.escape(HOSTILE, quote=False) in r.text or html.escape(HOSTILE) in r.text
    page = Page(r.text)
    assert HOSTILE in page.rows("units")  # shown as the text it is
    assert HOSTILE in page.rows("sites")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"date": "2024-13-01"}, "date='2024-13-01' is not a date"),
        ({"date": "27-11-2024"}, "is not a date YYYY-MM-DD"),
        ({"date": DATE, "shift": "evening"}, "shift='evening' is neither"),
        ({"date": DATE, "shift": "25:00-26:00"}, "is not a time of day"),
        ({"date": DATE, "day_start": "20:00"}, "day_start must be earlier than night_start"),
        ({"date": "2190-01-01"}, "has not started yet"),
        ({"date": "1900-01-01"}, "outside the years"),
        ({}, "date"),
    ],
)
def test_bad_input_is_422(client: TestClient, params: dict[str, str], message: str) -> None:
    for path in ("/reports/shift", "/reports/shift.pdf"):
        r = client.get(path, params=params)
        assert r.status_code == 422, r.text
        assert message in r.json()["detail"]


def test_windows_are_bounded(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_window_days=0.25))) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        r = c.get("/reports/shift", params={"date": DATE, "shift": "07:00-07:00"})
        assert r.status_code == 422
        assert "PATROLI_MAX_WINDOW_DAYS" in r.json()["detail"]


def test_a_running_shift_is_reported_up_to_now(client: TestClient) -> None:
    today = datetime.now(UTC).astimezone(WITA)
    start = (today - timedelta(hours=1)).strftime("%H:%M")
    if today.hour == 0:  # an hour ago was yesterday: use yesterday's date with a wrap
        day = (today - timedelta(days=1)).date().isoformat()
    else:
        day = today.date().isoformat()
    r = client.get("/reports/shift", params={"date": day, "shift": f"{start}-{start}"})
    assert r.status_code == 200, r.text
    assert "shift masih berjalan" in r.text


def test_same_auth_as_the_maps(client: TestClient) -> None:
    r = client.get("/reports/shift", params={"date": DATE}, headers={"Authorization": ""})
    assert r.status_code == 401
    viewer = client.post("/api/v1/keys", json={"name": "cc", "role": "viewer"}).json()["key"]
    unit = client.post("/api/v1/units", json={"name": "Samapta 9", "device_id": "u9"}).json()
    tracker = client.post(
        "/api/v1/keys", json={"name": "t", "role": "tracker", "unit_id": unit["id"]}
    )
    assert tracker.status_code == 201, tracker.text
    for path in ("/reports/shift", "/reports/shift.pdf"):
        r = client.get(
            path,
            params={"date": DATE},
            headers={"Authorization": f"Bearer {tracker.json()['key']}"},
        )
        assert r.status_code == 403, r.text
    # A ?key= link moves the key into the map session cookie, which then opens the report.
    client.headers.pop("Authorization")
    r = client.get("/reports/shift", params={"date": DATE, "key": viewer}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert "key=" not in r.headers["location"]
    assert r.cookies.get("patroli_session") or client.cookies.get("patroli_session")
    r = client.get(r.headers["location"])
    assert r.status_code == 200 and "Laporan Shift Patroli" in r.text


def test_the_alerts_table_is_bounded(client: TestClient, settings: Settings) -> None:
    seed(client)
    events = client.get("/api/v1/events", params={**DAY, "limit": 1000}).json()["events"]
    assert len(events) > 2
    store = Store.from_url(settings.database_url)
    try:
        with store.read() as session:
            window = Window(T0, T0 + timedelta(hours=12))
            table = alert_rows(session, window, "en", WITA, limit=2)
    finally:
        store.dispose()
    assert table.columns == ["Time", "Type", "Unit", "Place", "Details", "Acknowledged"]
    assert len(table.rows) == 2 and table.more == len(events) - 2
    newest = max(events, key=lambda e: (e["ts"], e["id"]))
    assert table.rows[0][0] == local(newest["ts"])


def test_acknowledgements_show_with_their_alerts(client: TestClient) -> None:
    """Who handled an alert, when and their note; the acknowledgement is no alert itself."""
    seed(client)
    events = client.get("/api/v1/events", params={**DAY, "limit": 1000}).json()["events"]
    r = client.post("/api/v1/keys", json={"name": "Piket Bripka Sari", "role": "operator"})
    operator = {"Authorization": f"Bearer {r.json()['key']}"}
    handled = events[0]
    r = client.post(
        f"/api/v1/events/{handled['id']}/ack", json={"note": "ditelepon, aman"}, headers=operator
    )
    assert r.status_code == 200, r.text
    page = report(client, lang="en")
    header, *body = page.tables["alerts"]
    assert header[-1] == "Acknowledged"
    handled_rows = [row for row in body if row[-1]]
    assert len(handled_rows) == 1, handled_rows
    assert handled_rows[0][-1].endswith("by Piket Bripka Sari: ditelepon, aman")
    assert len(body) == len(events)  # the acknowledgement itself is not listed


def test_without_chromium_the_pdf_is_503(make_settings: Callable[..., Settings]) -> None:
    missing = "/nonexistent/chromium"
    with TestClient(create_app(make_settings(chromium_path=missing))) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        r = c.get("/reports/shift.pdf", params={"date": DATE})
        assert r.status_code == 503, r.text
        detail = r.json()["detail"]
        assert missing in detail and "print it from a browser" in detail
        assert c.get("/reports/shift", params={"date": DATE}).status_code == 200


def _need_chromium() -> None:
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"Chromium not found at {CHROMIUM}")
        pytest.skip(f"Chromium not found at {CHROMIUM}")


@pytest.mark.browser
def test_the_pdf(make_settings: Callable[..., Settings], backend: str, artifacts_dir: Path) -> None:
    _need_chromium()
    from pypdf import PdfReader

    settings = make_settings(chromium_path=str(CHROMIUM))
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        ids = seed(c)
        r = c.get("/reports/shift.pdf", params={"date": DATE, "shift": "day"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        assert 'filename="shift-report-2024-11-27-day.pdf"' in r.headers["content-disposition"]
        assert r.content.startswith(b"%PDF-")
        (artifacts_dir / f"shift-report-{backend}.pdf").write_bytes(r.content)
        units = {
            u["unit_name"]: u for u in c.get("/api/v1/reports/units", params=DAY).json()["units"]
        }
        presence = c.get(f"/api/v1/presence/geofences/{ids['site']}", params=DAY).json()
        coverage = c.get(f"/api/v1/coverage/patrol-routes/{ids['route']}", params=DAY).json()
    reader = PdfReader(io.BytesIO(r.content))
    # Page 1: header, summary and map; page 2: presence per hour and the timeline;
    # page 3: units and alerts.
    assert len(reader.pages) == 3
    for page in reader.pages:
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert (round(width), round(height)) == (595, 842)  # A4 in points
    texts = [page.extract_text() for page in reader.pages]
    assert "Operasi Patroli" in texts[0] and "Laporan Shift Patroli" in texts[0]
    assert "27-11-2024 07:00 \u2013 27-11-2024 19:00 WITA" in texts[0]
    assert pct(coverage["coverage_ratio"]) in texts[0]
    assert pct(presence["coverage_ratio"]) in texts[0]
    assert "Kehadiran per jam" in texts[1]
    flat = re.sub(r"\s+", " ", texts[2])
    km = f"{units['Samapta 1']['distance_m'] / 1000:.2f}".replace(".", ",")
    assert f"Samapta 1 {km} 0:04:00 0:05:40" in flat, flat
    assert local(units["Samapta 2"]["last_fix"]) in flat


@pytest.mark.browser
def test_the_page_at_a4_in_chromium(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_app(create_app(settings)) as (base, http):
        ids = seed_http(http)
        assert ids
        for lang in ("id", "en"):
            # A4 at 96 dpi: 210 x 297 mm.
            with browser_page(browser, viewport={"width": 794, "height": 1123}) as (page, errors):
                page.emulate_media(media="print")
                url = f"{base}/reports/shift?date={DATE}&shift=day&lang={lang}&key={ADMIN_KEY}"
                response = page.goto(url)
                assert response is not None and response.status == 200
                assert "key=" not in page.url  # moved into the session cookie
                assert page.locator("svg.map path").count() >= 4
                assert page.locator("g.bar").count() == 12
                assert page.locator("table.units tbody tr").count() == 2
                box = page.locator("svg.map").bounding_box()
                assert box is not None and box["width"] > 600  # the map spans the page
                page.screenshot(
                    path=str(artifacts_dir / f"shift-report-{backend}-{lang}.png"), full_page=True
                )
                assert errors == []


def seed_http(http: Any) -> dict:
    """`seed` through an httpx client of a running server."""
    return seed(http)


def test_a_print_that_hangs_is_killed(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # A printer that never finishes (and starts a helper, as Chromium does): the request gets
    # 503 after PATROLI_PDF_TIMEOUT_S and no process of it is left running.
    pids = tmp_path / "pids"
    hang = tmp_path / "chromium"
    hang.write_text(f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\nwait\n")
    hang.chmod(0o755)
    settings = make_settings(chromium_path=str(hang), pdf_timeout_s=1.5)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        r = c.get("/reports/shift.pdf", params={"date": DATE})
    assert r.status_code == 503, r.text
    assert "took longer than" in r.json()["detail"]
    assert "PATROLI_PDF_TIMEOUT_S" in r.json()["detail"]
    for pid in map(int, pids.read_text().split()):
        assert not _running(pid)


def _running(pid: int) -> bool:
    """Whether a process is alive (a zombie, killed but not yet reaped, is not)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True
