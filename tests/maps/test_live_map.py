"""Live map end to end on each backend: markers follow the event stream, off-route alerts show."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.app import create_app
from service.config import Settings
from service.maps.assets import referenced_assets
from service.maps.live import ALERTS_MAX, TRAIL_LENGTH, live_map_view
from service.routes import maps as map_routes
from service.store.db import Store
from service.store.models import Event
from tests.conftest import ADMIN_KEY
from tests.helpers import add_unit, along, browser_page, circle_feature, live_app, route_feature


def build_app(settings: Settings) -> FastAPI:
    """The app with the live/replay map routes (included here if the app does not yet)."""
    app = create_app(settings)
    if "/maps/live" not in {getattr(r, "path", None) for r in app.routes}:
        app.include_router(map_routes.router)
    return app


def live_ping(device_id: str, chainage_m: float, ts: datetime, offset_m: float = 0.0) -> dict:
    """A JSON ping at a chainage of the test route at time `ts`."""
    lon, lat = along(chainage_m, offset_m)
    return {"device_id": device_id, "lat": lat, "lon": lon, "ts": ts.isoformat()}


def screenshot(page: Any, stem: Path, backend: str) -> None:
    """A screenshot at `stem`.png, or `stem`-<backend>.png on a backend other than SQLite."""
    name = f"{stem.name}.png" if backend == "sqlite" else f"{stem.name}-{backend}.png"
    page.screenshot(path=str(stem.with_name(name)))


def alert_text(page: Any, event_type: str) -> str:
    """The text of the first alert of a type, once it shows."""
    alert = page.locator(f'#patroli-alerts li[data-type="{event_type}"]')
    alert.wait_for(state="visible", timeout=5000)
    return str(alert.first.inner_text())


@contextmanager
def live_map(settings: Settings) -> Iterator[tuple[FastAPI, str, httpx.Client, str]]:
    """The app with the live map served: the app, its base URL, an admin client, a viewer key."""
    app = build_app(settings)
    with live_app(app) as (base, http):
        viewer = http.post("/api/v1/keys", json={"name": "cc", "role": "viewer"}).json()["key"]
        yield app, base, http, viewer


@contextmanager
def live_page(
    browser: Any, base: str, viewer: str, on_response: Callable[[Any], None] | None = None
) -> Iterator[tuple[Any, list[str]]]:
    """The live map loaded in a fresh browser context, with the page's script errors.

    Content-Security-Policy violations count as errors: the page must work under its policy.
    """
    with browser_page(browser) as (page, errors):
        if on_response is not None:
            page.on("response", on_response)
        page.goto(str(httpx.URL(f"{base}/maps/live", params={"key": viewer})), wait_until="load")
        # The key went into a session cookie (the page and its stream use it), out of the URL.
        assert urlsplit(page.url).path == "/maps/live" and "key" not in parse_qs(
            urlsplit(page.url).query
        )
        yield page, errors


@pytest.mark.browser
def test_live_map_follows_the_stream(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_map(settings) as (_, base, http, viewer):
        route = http.post("/api/v1/patrol-routes", json=route_feature()).json()
        lon, lat = along(700)
        http.post("/api/v1/geofences", json=circle_feature(lon, lat, 80)).raise_for_status()
        http.post(
            "/api/v1/geofences",
            json=circle_feature(*along(200, 120), 60, name="Pasar", kind="market"),
        ).raise_for_status()
        unit = http.post(
            "/api/v1/units",
            json={"name": "Polwan 01", "device_id": "p01", "patrol_route_ids": [route["id"]]},
        ).json()
        uid = unit["id"]
        tracker = {"Authorization": f"Bearer {unit['device_secret']}"}

        now = datetime.now(UTC).replace(microsecond=0)
        r = http.post(
            "/api/v1/pings",
            json=[
                live_ping("p01", 80, now - timedelta(seconds=130)),
                live_ping("p01", 100, now - timedelta(seconds=120)),
            ],
            headers=tracker,
        )
        assert r.status_code == 200, r.text

        with live_page(browser, base, viewer) as (page, errors):
            assert page.evaluate("typeof window.L") == "object"
            marker = page.locator(f'.patroli-unit[data-unit-id="{uid}"]')
            marker.wait_for(state="attached")
            assert page.locator(".patroli-route").count() == 1
            assert page.locator(".patroli-corridor").count() == 1
            assert page.locator(".patroli-geofence.patroli-critical").count() == 1
            assert page.locator(".patroli-geofence").count() == 2
            start = page.evaluate(f"window.patroliLive.positions['{uid}']")
            assert [start["lon"], start["lat"]] == pytest.approx(list(along(100)), abs=1e-6)
            assert "Polwan 01" in page.locator(".patroli-label").first.inner_text()
            page.wait_for_function("() => window.patroliLive.connected === true", timeout=5000)

            # A new fix moves the marker within a second of being stored.
            moved = live_ping("p01", 300, now - timedelta(seconds=100))
            r = http.post("/api/v1/pings", json=[moved], headers=tracker)
            assert r.status_code == 200, r.text
            page.wait_for_function(
                """([id, lon, lat]) => {
                    const p = window.patroliLive.positions[id];
                    return !!p && Math.abs(p.lon - lon) < 1e-7 && Math.abs(p.lat - lat) < 1e-7;
                }""",
                arg=[str(uid), moved["lon"], moved["lat"]],
                timeout=1000,
            )

            # 40 s outside the corridor (100 m north of the route): off_route after 30 s.
            t0 = now - timedelta(seconds=60)
            track = [
                live_ping("p01", 350 + 2.5 * s, t0 + timedelta(seconds=s), offset_m=100)
                for s in range(0, 41, 5)
            ]
            r = http.post("/api/v1/pings", json=track, headers=tracker)
            assert r.status_code == 200, r.text
            text = alert_text(page, "off_route")
            assert "Keluar rute" in text
            assert "Polwan 01" in text
            assert "WITA" in text
            page.wait_for_selector(
                f'.patroli-unit.patroli-offroute[data-unit-id="{uid}"]',
                state="attached",
                timeout=2000,
            )
            last = track[-1]
            page.wait_for_function(
                "([id, lon]) => Math.abs(window.patroliLive.positions[id].lon - lon) < 1e-7",
                arg=[str(uid), last["lon"]],
                timeout=2000,
            )
            state = page.evaluate("window.patroliLive")
            assert state["events"][0]["type"] == "off_route"
            assert page.locator(".patroli-trail").count() == 1
            # revisit_overdue on a route: its stretch start_m..end_m is drawn in red.
            page.evaluate(
                """(routeId) => window.patroliLive.handle({
                    id: 1e9, type: "revisit_overdue", unit_id: null, unit_name: null,
                    ts: new Date().toISOString(), position: null, patrol_route_id: routeId,
                    geofence_id: null, details: {segment: 12, start_m: 600, end_m: 650}
                })""",
                route["id"],
            )
            overdue = page.locator(f'.patroli-overdue[data-route-id="{route["id"]}"]')
            assert overdue.count() == 1
            assert overdue.get_attribute("data-start-m") == "600"
            box = overdue.bounding_box()
            px_per_m = page.evaluate(
                """() => {
                    const m = window.patroliLive.map;
                    const a = m.containerPointToLatLng([0, 300]);
                    const b = m.containerPointToLatLng([100, 300]);
                    return 100 / m.distance(a, b);
                }"""
            )
            # 50 m long (the line's round caps add its width of 7 px).
            assert box is not None and 50 * px_per_m < box["width"] < 50 * px_per_m + 10
            assert page.locator('#patroli-alerts li[data-type="revisit_overdue"]').count() == 1
            screenshot(page, artifacts_dir / "live-map", backend)
        assert errors == []


@pytest.mark.browser
def test_live_map_clears_a_revisited_segment(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_map(settings) as (app, base, http, viewer):
        scheduler = app.state.scheduler
        # The passes below run on their own clock; the background thread's passes could take
        # the overdue lock from them, so it is stopped (run_once is the same pass it makes).
        scheduler.stop()
        route = http.post("/api/v1/patrol-routes", json=route_feature(revisit_s=60)).json()
        rid = route["id"]
        unit = http.post("/api/v1/units", json={"name": "Polwan 02", "device_id": "p02"}).json()
        tracker = {"Authorization": f"Bearer {unit['device_secret']}"}
        edited = datetime.fromisoformat(route["properties"]["updated_at"])

        # Never visited: every segment lapses 60 s after the route was drawn.
        first = scheduler.run_once(edited + timedelta(seconds=65))
        overdue = sorted(e.details["segment"] for e in first if e.type == "revisit_overdue")
        assert 3 in overdue and len(overdue) > 1

        with live_page(browser, base, viewer) as (page, errors):
            page.wait_for_function("() => window.patroliLive.connected === true", timeout=5000)
            red = page.locator(f'.patroli-overdue[data-route-id="{rid}"]')
            segment3 = page.locator(f'.patroli-overdue[data-route-id="{rid}"][data-segment="3"]')
            assert red.count() == len(overdue)  # painted from the open marks at page load
            assert segment3.count() == 1

            # A unit drives through segment 3 (150-200 m); the next pass ends its lapse.
            track = [
                live_ping("p02", c, edited + timedelta(seconds=s))
                for c, s in ((160, 80), (175, 85), (190, 90))
            ]
            r = http.post("/api/v1/pings", json=track, headers=tracker)
            assert r.status_code == 200, r.text
            second = scheduler.run_once(edited + timedelta(seconds=100))
            revisited = [e for e in second if e.type == "revisited"]
            assert [(e.patrol_route_id, e.details["segment"]) for e in revisited] == [(rid, 3)]

            text = alert_text(page, "revisited")
            assert "Dikunjungi kembali" in text
            assert "Segmen 150\u2013200 m" in text
            assert "Jl. Sudirman" in text
            segment3.wait_for(state="detached", timeout=2000)
            assert red.count() == len(overdue) - 1  # only the visited segment is cleared
            keys = page.evaluate("Object.keys(window.patroliLive.overdue)")
            assert f"{rid}:3" not in keys and len(keys) == len(overdue) - 1
            screenshot(page, artifacts_dir / "live-map-revisited", backend)
        assert errors == []


@pytest.mark.browser
def test_live_map_opens_from_a_link_on_another_site(
    settings: Settings, browser: Any, live_server: Any
) -> None:
    """The session cookie is SameSite=Strict, yet a link from another web application works."""
    with live_server(build_app(settings)) as base:
        portal = FastAPI()
        target = str(httpx.URL(f"{base}/maps/live", params={"key": ADMIN_KEY, "lang": "en"}))

        @portal.get("/", response_class=HTMLResponse)
        def index() -> str:
            return f'<a id="map" href="{html.escape(target)}">Live map</a>'

        with live_server(portal) as other, browser_page(browser) as (page, errors):
            # localhost and 127.0.0.1 are different sites.
            page.goto(other.replace("127.0.0.1", "localhost") + "/", wait_until="load")
            page.click("#map")
            page.wait_for_url(f"{base}/maps/live?lang=en", timeout=5000)
            page.wait_for_function("() => window.patroliLive && window.patroliLive.connected")
            assert "Live patrol map" in page.locator("#patroli-title").inner_text()
            [cookie] = page.context.cookies(base)
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert errors == []


def test_live_page_is_offline_and_needs_a_viewer_key(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    with TestClient(build_app(settings)) as client:
        r = client.get("/maps/live")
        assert r.status_code == 401
        r = client.get("/maps/live", params={"key": "wrong"})
        assert r.status_code == 401
        r = client.get("/maps/live", params={"key": ADMIN_KEY, "lang": "en"})
        assert r.status_code == 200
        assert "Live patrol map" in r.text
        assets = list(referenced_assets(r.text))
        assert "/static/patroli/live.js" in assets
        assert all(url.startswith("/static/") for url in assets), assets
        for url in assets:
            assert client.get(url).status_code == 200, url
        r = client.get("/maps/live", params={"key": ADMIN_KEY})
        assert "Peta Patroli Langsung" in r.text


def refused(response: Any) -> bool:
    """Whether a response is the stream refused with 503."""
    return "/api/v1/stream" in response.url and response.status == 503


@contextmanager
def database_down() -> Iterator[Session]:
    """Stands in for `Store.read` while the database is unreachable."""
    raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database is down"))
    yield  # pragma: no cover


def at_position(page: Any, uid: int, fix: dict, timeout: float) -> None:
    """Wait until the page shows unit `uid` at `fix`."""
    page.wait_for_function(
        """([id, lon, lat]) => {
            const p = window.patroliLive.positions[id];
            return !!p && Math.abs(p.lon - lon) < 1e-7 && Math.abs(p.lat - lat) < 1e-7;
        }""",
        arg=[str(uid), fix["lon"], fix["lat"]],
        timeout=timeout,
    )


@pytest.mark.browser
def test_live_map_reconnects_after_an_error_response(
    settings: Settings,
    browser: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with live_map(settings) as (app, base, http, viewer):
        app.state.scheduler.stop()  # its passes would fail too while reads are down
        store = app.state.store
        unit = http.post("/api/v1/units", json={"name": "Polwan 05", "device_id": "p05"}).json()
        uid = unit["id"]
        tracker = {"Authorization": f"Bearer {unit['device_secret']}"}
        now = datetime.now(UTC).replace(microsecond=0)
        r = http.post(
            "/api/v1/pings",
            json=[live_ping("p05", 100, now - timedelta(seconds=200))],
            headers=tracker,
        )
        assert r.status_code == 200, r.text

        streams: list[tuple[str, int]] = []

        def on_response(resp: Any) -> None:
            if "/api/v1/stream" in resp.url:
                streams.append((resp.url, resp.status))

        with live_page(browser, base, viewer, on_response) as (page, errors):
            page.wait_for_function("() => window.patroliLive.connected === true", timeout=5000)
            page.evaluate("window.patroliSamePage = true")
            initial = page.evaluate("window.patroliLive.cursor")
            seen = live_ping("p05", 200, now - timedelta(seconds=150))
            r = http.post("/api/v1/pings", json=[seen], headers=tracker)
            assert r.status_code == 200, r.text
            at_position(page, uid, seen, 1000)
            assert page.evaluate("window.patroliLive.messages") == 1
            cursor = page.evaluate("window.patroliLive.cursor")  # after that message

            # Reads fail from now on: the open stream ends at its next read (woken by this
            # fix, which is stored), and every new stream request is answered 503.
            with page.expect_response(refused, timeout=10000):
                monkeypatch.setattr(store, "read", database_down)
                missed = live_ping("p05", 300, now - timedelta(seconds=100))
                r = http.post("/api/v1/pings", json=[missed], headers=tracker)
                assert r.status_code == 200, r.text
            # That 503 closed the EventSource for good: the page opens the stream again itself.
            with page.expect_response(refused, timeout=10000):
                pass
            assert page.evaluate("window.patroliLive.connected") is False
            assert page.evaluate("window.patroliLive.retries") >= 1
            status = page.locator("#patroli-status")
            assert "patroli-reconnecting" in (status.get_attribute("class") or "")
            assert "menyambung ulang" in status.inner_text()

            monkeypatch.undo()  # the database is back
            page.wait_for_function("() => window.patroliLive.connected === true", timeout=15000)
            at_position(page, uid, missed, 2000)  # stored while down: delivered on resume
            after = live_ping("p05", 400, now - timedelta(seconds=50))
            r = http.post("/api/v1/pings", json=[after], headers=tracker)
            assert r.status_code == 200, r.text
            at_position(page, uid, after, 1000)
            # Resumed after the last message seen: nothing was sent twice, the page never reloaded.
            assert page.evaluate("window.patroliLive.messages") == 3
            assert page.evaluate("window.patroliSamePage") is True
            url, code = streams[-1]
            assert code == 200 and cursor != initial
            assert parse_qs(urlsplit(url).query)["last_event_id"] == [cursor]
            assert "patroli-connected" in (status.get_attribute("class") or "")
        assert errors == []


@pytest.mark.browser
def test_live_map_shows_off_route_and_offline_units_at_load(
    settings: Settings, browser: Any
) -> None:
    with live_map(settings) as (app, base, http, viewer):
        scheduler = app.state.scheduler
        scheduler.stop()
        route = http.post("/api/v1/patrol-routes", json=route_feature()).json()
        rid = route["id"]
        units = {}
        for name, device in (("Polwan 07", "p07"), ("Polwan 08", "p08")):
            body = {"name": name, "device_id": device, "patrol_route_ids": [rid]}
            units[device] = http.post("/api/v1/units", json=body).json()
        now = datetime.now(UTC).replace(microsecond=0)

        # p07 left the route 25 hours ago (off_route after 30 s) and was not heard from again.
        t0 = now - timedelta(hours=25)
        track = [live_ping("p07", 100, t0)] + [
            live_ping("p07", 100 + 2.5 * s, t0 + timedelta(seconds=s), offset_m=100)
            for s in range(5, 46, 5)
        ]
        # p08 left the route and came back, within the hour.
        t1 = now - timedelta(minutes=30)
        track8 = [
            live_ping(
                "p08", 100 + 2.5 * s, t1 + timedelta(seconds=s), offset_m=100 if 0 < s < 60 else 0
            )
            for s in range(0, 71, 5)
        ]
        for device, fixes in (("p07", track), ("p08", track8)):
            secret = {"Authorization": f"Bearer {units[device]['device_secret']}"}
            r = http.post("/api/v1/pings", json=fixes, headers=secret)
            assert r.status_code == 200, r.text
        fired = scheduler.run_once(now)
        assert {(e.type, e.unit_id) for e in fired if e.type == "offline"} == {
            ("offline", units["p07"]["id"]),
            ("offline", units["p08"]["id"]),
        }
        events = http.get("/api/v1/events", params={"type": ["off_route", "on_route"]}).json()
        assert [(e["unit_id"], e["type"]) for e in events["events"]] == [
            (units["p07"]["id"], "off_route"),
            (units["p08"]["id"], "off_route"),
            (units["p08"]["id"], "on_route"),
        ]

        with live_page(browser, base, viewer) as (page, errors):
            page.wait_for_function("() => window.patroliLive.connected === true", timeout=5000)
            gone, back = units["p07"]["id"], units["p08"]["id"]
            off = page.locator(f'.patroli-unit.patroli-offroute[data-unit-id="{gone}"]')
            assert off.count() == 1
            assert page.evaluate(f"Object.keys(window.patroliLive.offRoute['{gone}'])") == [
                str(rid)
            ]
            assert (
                page.locator(f'.patroli-unit.patroli-offline[data-unit-id="{gone}"]').count() == 1
            )
            assert (
                page.locator(f'.patroli-unit.patroli-offline[data-unit-id="{back}"]').count() == 1
            )
            assert (
                page.locator(f'.patroli-unit.patroli-offroute[data-unit-id="{back}"]').count() == 0
            )
            page.locator(f'.patroli-unit[data-unit-id="{gone}"]').click(force=True)
            popup = page.locator(".leaflet-popup-content")
            popup.wait_for(state="visible", timeout=2000)
            assert "Keluar rute" in popup.inner_text()
            assert "Tidak terhubung" in popup.inner_text()
        assert errors == []


@pytest.mark.browser
def test_live_map_trails_start_with_recent_fixes(settings: Settings, browser: Any) -> None:
    with live_map(settings) as (_, base, http, viewer):
        units = [
            http.post("/api/v1/units", json={"name": name, "device_id": device}).json()
            for name, device in (("Polwan 09", "p09"), ("Polwan 10", "p10"))
        ]
        now = datetime.now(UTC).replace(microsecond=0)
        # p09: one fix 20 minutes ago, then 25 fixes in the last 10 minutes, one of them
        # inaccurate (left out of analytics, so out of the trail too).
        old = live_ping("p09", 50, now - timedelta(minutes=20))
        recent = [
            live_ping("p09", 100 + 20 * i, now - timedelta(seconds=500 - 20 * i)) for i in range(25)
        ]
        bad = {
            **live_ping("p09", 330, now - timedelta(seconds=270), offset_m=200),
            "accuracy_m": 5000,
        }
        # p10: only fixes older than 10 minutes.
        stale = [live_ping("p10", 600 + 20 * i, now - timedelta(minutes=15 - i)) for i in range(3)]
        for unit, fixes in ((units[0], [old, *recent[:12], bad, *recent[12:]]), (units[1], stale)):
            tracker = {"Authorization": f"Bearer {unit['device_secret']}"}
            r = http.post("/api/v1/pings", json=fixes, headers=tracker)
            assert r.status_code == 200, r.text
            assert all(x["status"] == "accepted" for x in r.json()["results"]), r.text

        with live_page(browser, base, viewer) as (page, errors):
            page.wait_for_function("() => window.patroliLive.connected === true", timeout=5000)
            trail = page.evaluate(f"window.patroliLive.trail('{units[0]['id']}')")
            expected = [[f["lon"], f["lat"]] for f in recent[-TRAIL_LENGTH:]]
            assert len(trail) == TRAIL_LENGTH < len(recent)
            assert trail == [pytest.approx(xy, abs=1e-6) for xy in expected]
            # Without recent fixes a trail is just the marker.
            only = page.evaluate(f"window.patroliLive.trail('{units[1]['id']}')")
            assert only == [pytest.approx([stale[-1]["lon"], stale[-1]["lat"]], abs=1e-6)]
            assert page.locator(".patroli-trail").count() == 2
        assert errors == []


def test_live_map_reads_only_the_newest_alerts(settings: Settings) -> None:
    store = Store.from_url(settings.database_url)
    now = datetime.now(UTC)
    try:
        with store.write() as session:
            unit = add_unit(session, "Polwan 11", "p11")
            rows = [Event(type="stopped", unit_id=unit.id, ts=now - timedelta(hours=30))]
            rows += [
                Event(type="stopped", unit_id=unit.id, ts=now - timedelta(minutes=400 - i))
                for i in range(300)
            ]
            session.add_all(rows)
            session.flush()
            ids = [row.id for row in rows[1:]]
        loaded: list[int] = []

        def count(target: Event, _context: Any) -> None:
            loaded.append(target.id)

        sa_event.listen(Event, "load", count)
        try:
            with store.read() as session:
                view = live_map_view(session, settings, now=now)
        finally:
            sa_event.remove(Event, "load", count)
        assert [e["id"] for e in view.events] == ids[-ALERTS_MAX:]  # oldest first, as before
        assert view.events[-1]["unit_name"] == "Polwan 11"
        assert len(loaded) <= ALERTS_MAX  # not the whole day's events
    finally:
        store.dispose()


def test_live_map_markers_start_at_the_newest_good_fix(settings: Settings) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        client.post("/api/v1/units", json={"name": "Polwan 12", "device_id": "p12"})
        good, bad = along(100), along(400)
        r = client.post(
            "/api/v1/pings",
            json=[
                {"device_id": "p12", "lon": good[0], "lat": good[1],
                 "ts": (now - timedelta(seconds=60)).isoformat()},
                {"device_id": "p12", "lon": bad[0], "lat": bad[1], "accuracy_m": 900,
                 "ts": (now - timedelta(seconds=30)).isoformat()},
            ],
        )  # fmt: skip
        assert r.status_code == 200, r.text
    store = Store.from_url(settings.database_url)
    try:
        with store.read() as session:
            view = live_map_view(session, settings, now=now)
    finally:
        store.dispose()
    [unit] = view.units
    # The inaccurate fix is newer, but the stream never sends it: the marker starts at the good one.
    assert (unit.lon, unit.lat) == pytest.approx(good)
    assert unit.ts == now - timedelta(seconds=60)
