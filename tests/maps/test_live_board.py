"""The live map's unit board, acknowledgements across screens and label layout, in Chromium."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from service.config import Settings
from tests.helpers import browser_page, route_feature
from tests.maps.test_live_map import live_map, live_ping, screenshot

DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@contextmanager
def open_map(
    browser: Any, base: str, key: str, viewport: dict[str, int] = DESKTOP
) -> Iterator[tuple[Any, list[str]]]:
    """The live map in a fresh browser context (a session opened with `key`), connected."""
    with browser_page(browser, viewport=viewport) as (page, errors):
        page.goto(str(httpx.URL(f"{base}/maps/live", params={"key": key})), wait_until="load")
        assert urlsplit(page.url).query == ""
        page.wait_for_function("() => window.patroliLive.connected === true", timeout=5000)
        yield page, errors


def board(page: Any) -> list[tuple[str, str]]:
    """(name, status) of the visible board rows, top to bottom."""
    return [
        (row.locator(".patroli-board-name").inner_text(), str(row.get_attribute("data-status")))
        for row in page.locator(".patroli-board-row:visible").all()
    ]


def row(page: Any, unit_id: int) -> Any:
    """The board row of a unit."""
    return page.locator(f'.patroli-board-row[data-unit-id="{unit_id}"]')


def wait_status(page: Any, unit_id: int, status: str, timeout_ms: float) -> None:
    """Wait (at most timeout_ms) until the unit's board row shows `status`."""
    page.wait_for_function(
        """([id, status]) => {
            const r = document.querySelector(`.patroli-board-row[data-unit-id="${id}"]`);
            return !!r && r.getAttribute("data-status") === status;
        }""",
        arg=[unit_id, status],
        timeout=timeout_ms,
    )


@pytest.fixture
def board_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Stops after 20 s (so a test can make one), other settings as by default."""
    return make_settings(stop_after_s=20)


@pytest.mark.browser
def test_board_lists_units_by_urgency_and_follows_pings(
    board_settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_map(board_settings) as (app, base, http, viewer):
        app.state.scheduler.stop()  # offline is fired below, at a chosen time
        route = http.post("/api/v1/patrol-routes", json=route_feature(off_route_after_s=5)).json()
        units: dict[str, dict[str, Any]] = {}
        for name, device, kind in (
            ("Polwan A", "pa", "motorbike"),
            ("Polwan B", "pb", "car"),
            ("Polwan C", "pc", "motorbike"),
            ("Polwan D", "pd", "foot"),
            ("Polwan E", "pe", "motorbike"),
            ("Polwan F", "pf", "motorbike"),
        ):
            body = {"name": name, "device_id": device, "kind": kind}
            units[device] = http.post("/api/v1/units", json=body).json()
        ids = {device: int(u["id"]) for device, u in units.items()}
        for device in ("pb", "pc", "pd", "pe"):
            r = http.post(
                f"/api/v1/units/{ids[device]}/assignments", json={"patrol_route_id": route["id"]}
            )
            assert r.status_code in (200, 201), r.text
        r = http.post(
            f"/api/v1/units/{ids['pa']}/assignments",
            json={"patrol_route_id": route["id"], "shift_start": "07:00", "shift_end": "19:00"},
        )
        assert r.status_code in (200, 201), r.text
        now = datetime.now(UTC).replace(microsecond=0)

        def at(seconds_ago: float) -> datetime:
            return now - timedelta(seconds=seconds_ago)

        tracks = {
            # A: moving along the route, 8 m/s, battery 81 %.
            "pa": [
                {**live_ping("pa", 100 + 40 * i, at(20 - 5 * i)), "speed_mps": 8.0, "battery": 81}
                for i in range(4)
            ],
            # B: standing still for 30 s (stops after 20 s).
            "pb": [{**live_ping("pb", 300, at(40 - 10 * i)), "speed_mps": 0.0} for i in range(4)],
            # C: last heard 10 minutes ago (offline after 5).
            "pc": [
                {**live_ping("pc", 500, at(610)), "speed_mps": 8.0},
                {**live_ping("pc", 580, at(600)), "speed_mps": 8.0},
            ],
            # D: 100 m off the 30 m corridor for 15 s (off route after 5 s).
            "pd": [live_ping("pd", 690, at(25))]
            + [live_ping("pd", 700 + i, at(20 - 5 * i), offset_m=100) for i in range(4)],
            # E: pressed SOS.
            "pe": [live_ping("pe", 800, at(30)), {**live_ping("pe", 805, at(25)), "alarm": "sos"}],
        }
        for device, fixes in tracks.items():
            secret = {"Authorization": f"Bearer {units[device]['device_secret']}"}
            r = http.post("/api/v1/pings", json=fixes, headers=secret)
            assert r.status_code == 200, r.text
        fired = app.state.scheduler.run_once(datetime.now(UTC))
        assert {e.unit_id for e in fired if e.type == "offline"} == {ids["pc"]}

        with open_map(browser, base, viewer) as (page, errors):
            assert board(page) == [
                ("Polwan E", "alarm"),
                ("Polwan D", "off_route"),
                ("Polwan C", "offline"),
                ("Polwan F", "offline"),  # never reported
                ("Polwan B", "stopped"),
                ("Polwan A", "moving"),
            ]
            a = row(page, ids["pa"])
            text = a.inner_text()
            assert "Bergerak" in text and "motorbike" in text
            assert "29 km/jam" in text and "Baterai 81 %" in text
            assert "Jl. Sudirman (Sif 07:00\u201319:00)" in text
            assert "tanpa rute" in row(page, ids["pf"]).inner_text()
            assert "belum ada posisi" in row(page, ids["pf"]).inner_text()
            assert "Tanda bahaya" in row(page, ids["pe"]).inner_text()
            # Markers are coloured by status; headings point where the unit goes.
            marker = page.locator(f'.patroli-unit[data-unit-id="{ids["pd"]}"]')
            assert marker.get_attribute("data-status") == "off_route"
            assert marker.get_attribute("fill") == "#d7191c"
            stopped = page.locator(f'.patroli-unit[data-unit-id="{ids["pb"]}"]')
            assert stopped.get_attribute("fill") == "#f5a623"
            # The last-fix age ticks every second without any message (the wait allows for
            # a page whose timers run late on a loaded machine).
            age = a.locator(".patroli-age")
            before = age.inner_text()
            assert before.endswith("dtk lalu")
            page.wait_for_function(
                "([el, t]) => el.textContent !== t",
                arg=[age.element_handle(), before],
                timeout=5000,
            )
            # test-artifacts/live-board.png is the README's docs/img/live-board.png.
            screenshot(page, artifacts_dir / "live-board", backend)

            secrets = {
                d: {"Authorization": f"Bearer {u['device_secret']}"} for d, u in units.items()
            }

            def post(device: str, fix: dict[str, Any]) -> None:
                r = http.post("/api/v1/pings", json=[fix], headers=secrets[device])
                assert r.status_code == 200, r.text

            # A new fix updates the row within a second: speed, battery, heading.
            post(
                "pa",
                {**live_ping("pa", 300, at(0)), "speed_mps": 12.0, "battery": 55, "heading": 90},
            )
            page.wait_for_function(
                """(id) => {
                    const r = document.querySelector(`.patroli-board-row[data-unit-id="${id}"]`);
                    return r.textContent.includes("43 km/jam") && r.textContent.includes("55 %");
                }""",
                arg=ids["pa"],
                timeout=1000,
            )
            arrow = page.locator('.patroli-heading[data-heading="90"]')
            assert arrow.count() == 1
            # Status changes arrive with the pings that cause them, and reorder the board.
            post("pb", {**live_ping("pb", 300, at(0)), "alarm": "sos"})
            wait_status(page, ids["pb"], "alarm", 1000)
            post("pc", {**live_ping("pc", 660, at(0)), "speed_mps": 8.0})
            wait_status(page, ids["pc"], "moving", 1000)
            assert [s for _, s in board(page)] == [
                "alarm",
                "alarm",
                "off_route",
                "offline",
                "moving",
                "moving",
            ]
            assert board(page)[3] == ("Polwan F", "offline")

            # Filters: by text (name, kind, route) and by status.
            page.fill(".patroli-filter", "foot")
            assert board(page) == [("Polwan D", "off_route")]
            page.fill(".patroli-filter", "")
            page.select_option(".patroli-filter-status", "alarm")
            assert sorted(board(page)) == [("Polwan B", "alarm"), ("Polwan E", "alarm")]
            page.select_option(".patroli-filter-status", "")
            assert len(board(page)) == 6

            # A click focuses the unit and the map follows it as it moves.
            a.click()
            assert page.evaluate("window.patroliLive.follow") == str(ids["pa"])
            assert "Mengikuti: Polwan A" in page.locator(".patroli-follow").inner_text()
            far = live_ping("pa", 320, at(-2))
            post("pa", {**far, "speed_mps": 12.0})
            page.wait_for_function(
                """([lon, lat]) => {
                    const c = window.patroliLive.map.getCenter();
                    return Math.abs(c.lng - lon) < 1e-5 && Math.abs(c.lat - lat) < 1e-5;
                }""",
                arg=[far["lon"], far["lat"]],
                timeout=1000,
            )
            page.locator(".patroli-follow button").click()
            assert page.evaluate("window.patroliLive.follow") is None
        assert errors == []


@pytest.mark.browser
def test_acknowledgement_in_one_browser_unpins_the_alert_in_another(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_map(settings) as (_, base, http, viewer):
        unit = http.post("/api/v1/units", json={"name": "Polwan 07", "device_id": "p07"}).json()
        tracker = {"Authorization": f"Bearer {unit['device_secret']}"}
        operator = http.post("/api/v1/keys", json={"name": "Piket Sari", "role": "operator"})
        operator_key = operator.json()["key"]
        now = datetime.now(UTC).replace(microsecond=0)
        # The alarm arrives last, from a fix older than the battery warning (pressed while out
        # of coverage): stored after it, it happened before it.
        fixes = [
            {**live_ping("p07", 100, now - timedelta(seconds=90)), "battery": 60},
            {**live_ping("p07", 120, now - timedelta(seconds=45)), "battery": 10},
            {**live_ping("p07", 110, now - timedelta(seconds=60)), "alarm": "sos"},
        ]
        for fix in fixes:
            r = http.post("/api/v1/pings", json=[fix], headers=tracker)
            assert r.status_code == 200, r.text
        events = http.get("/api/v1/events").json()["events"]
        alarm = next(e for e in events if e["type"] == "alarm")

        with (
            open_map(browser, base, operator_key) as (desk, desk_errors),
            open_map(browser, base, viewer) as (wall, wall_errors),
        ):
            for page in (desk, wall):
                pinned = page.locator(".patroli-pinned-list li")
                assert [li.get_attribute("data-type") for li in pinned.all()] == [
                    "alarm",
                    "low_battery",
                ]
                assert page.title().startswith("(2) ")
            # Only a key that may acknowledge gets the buttons.
            assert desk.locator(".patroli-pinned-list button.patroli-ack").count() == 2
            assert wall.locator("button.patroli-ack").count() == 0

            item = desk.locator(f'.patroli-pinned-list li[data-event-id="{alarm["id"]}"]')
            item.locator("button.patroli-ack").click()
            note = '<img src=x onerror="window.pwned=1"> ditangani'
            item.locator(".patroli-ack-note").fill(note)
            item.locator(".patroli-ack-key").fill(operator_key)
            with desk.expect_response(lambda r: r.url.endswith(f"/{alarm['id']}/ack")) as done:
                item.locator(".patroli-ack-send").click()
            assert done.value.status == 200
            acked_at = time.monotonic()
            # The other screen unpins it within a second, through the stream.
            wall.wait_for_function(
                """(id) => !document.querySelector(
                    `.patroli-pinned-list li[data-event-id="${id}"]`)""",
                arg=alarm["id"],
                timeout=1500,
            )
            assert time.monotonic() - acked_at < 1.5
            for page in (desk, wall):
                page.wait_for_function("() => document.title.startsWith('(1) ')", timeout=1000)
                moved = page.locator(f'.patroli-alert-list li[data-event-id="{alarm["id"]}"]')
                acked = moved.locator(".patroli-alert-acked").inner_text()
                assert "Ditanggapi oleh Piket Sari" in acked and note in acked
                assert page.locator("#patroli-alerts img").count() == 0
                assert page.evaluate("window.pwned") is None
                # The unit is no longer in alarm on the board.
                assert (
                    page.locator(f'.patroli-board-row[data-unit-id="{unit["id"]}"]').get_attribute(
                        "data-status"
                    )
                    != "alarm"
                )
            screenshot(wall, artifacts_dir / "live-acknowledged", backend)

            # The key is asked once per tab; the second acknowledgement needs only a note.
            low = desk.locator(".patroli-pinned-list li").first
            low.locator("button.patroli-ack").click()
            assert low.locator(".patroli-ack-key").count() == 0
            low.locator(".patroli-ack-send").click()
            wall.wait_for_function(
                "() => !document.querySelector('.patroli-pinned-list li')", timeout=1500
            )
            assert wall.title() == desk.title() == "Peta Patroli Langsung"
            # Acknowledged, they are listed newest first by event time, not by arrival.
            listed = wall.locator(".patroli-alert-list li")
            assert [li.get_attribute("data-type") for li in listed.all()] == [
                "low_battery",
                "alarm",
            ]
        assert desk_errors == [] and wall_errors == []

        # A screen opened later does not pin them, and shows who acknowledged.
        with open_map(browser, base, viewer) as (page, errors):
            assert page.locator(".patroli-pinned-list li").count() == 0
            text = page.locator(f'li[data-event-id="{alarm["id"]}"]').inner_text()
            assert "Ditanggapi oleh Piket Sari" in text
        assert errors == []


def _boxes(page: Any, selector: str) -> list[dict[str, float]]:
    boxes = [loc.bounding_box() for loc in page.locator(selector).all()]
    assert all(b is not None for b in boxes)
    return [b for b in boxes if b is not None]


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_labels_of_close_units_do_not_overlap(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path, viewport: dict[str, int]
) -> None:
    with live_map(settings) as (_, base, http, viewer):
        now = datetime.now(UTC).replace(microsecond=0)
        # Five units within 50 m of each other.
        spots = [(100, 0), (110, 8), (118, -6), (126, 10), (134, 2)]
        for i, (chainage, offset) in enumerate(spots):
            unit = http.post(
                "/api/v1/units",
                json={"name": f"Polwan Samapta {i + 1:02d}", "device_id": f"ps{i}"},
            ).json()
            fix = {
                **live_ping(f"ps{i}", chainage, now - timedelta(seconds=10), offset),
                "heading": 45,
            }
            r = http.post(
                "/api/v1/pings",
                json=[fix],
                headers={"Authorization": f"Bearer {unit['device_secret']}"},
            )
            assert r.status_code == 200, r.text

        with open_map(browser, base, viewer, viewport) as (page, errors):
            for zoom in (19, 18, 16, 17):
                page.evaluate(f"window.patroliLive.map.setZoom({zoom}, {{animate: false}})")
                page.wait_for_timeout(150)
                labels = _boxes(page, ".patroli-unit-label")
                markers = _boxes(page, "path.patroli-unit")
                assert len(labels) == len(markers) == 5
                # The markers are close enough that labels right of each would collide...
                w, h = labels[0]["width"], labels[0]["height"]
                naive = [
                    {"x": m["x"] + m["width"], "y": m["y"] + m["height"] / 2 - h / 2,
                     "width": w, "height": h}
                    for m in markers
                ]  # fmt: skip
                assert any(_overlap(a, b) for i, a in enumerate(naive) for b in naive[i + 1 :]), (
                    zoom
                )
                # ...yet no two labels overlap.
                for i, a in enumerate(labels):
                    for b in labels[i + 1 :]:
                        assert not _overlap(a, b), (zoom, a, b)
            if viewport == PHONE:
                # On a phone the panels start folded, and open within the screen.
                assert page.locator("#patroli-board .patroli-panel-body").is_hidden()
                assert page.locator("#patroli-alerts .patroli-panel-body").is_hidden()
                title, alerts = _boxes(page, "#patroli-title, #patroli-alerts")
                assert not _overlap(title, alerts)
                assert alerts["x"] + alerts["width"] <= PHONE["width"]
                page.locator("#patroli-board .patroli-toggle").click()
                assert page.locator(".patroli-board-row:visible").count() == 5
                box = page.locator("#patroli-board").bounding_box()
                assert box is not None and box["x"] >= 0
                assert box["x"] + box["width"] <= PHONE["width"]
                screenshot(page, artifacts_dir / "live-board-phone", backend)
            else:
                assert page.locator(".patroli-leaders line").count() >= 1
                screenshot(page, artifacts_dir / "live-labels", backend)
        assert errors == []
