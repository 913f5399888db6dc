"""Live map alarms in Chromium: pinned on top of the alerts, a banner until dismissed here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from tests.maps.test_live_map import live_map, live_page, live_ping, screenshot


@pytest.mark.browser
def test_live_map_raises_an_alarm_banner_until_dismissed(
    settings: Settings, backend: str, browser: Any, artifacts_dir: Path
) -> None:
    with live_map(settings) as (_, base, http, viewer):
        unit = http.post("/api/v1/units", json={"name": "Polwan 07", "device_id": "p07"}).json()
        uid = unit["id"]
        tracker = {"Authorization": f"Bearer {unit['device_secret']}"}
        now = datetime.now(UTC).replace(microsecond=0)

        def post(seconds: float, **extra: Any) -> None:
            fix = {
                **live_ping("p07", 100 + seconds, now - timedelta(seconds=60 - seconds)),
                **extra,
            }
            r = http.post("/api/v1/pings", json=[fix], headers=tracker)
            assert r.status_code == 200, r.text

        post(0, battery=60)
        with live_page(browser, base, viewer) as (page, errors):
            page.wait_for_function("() => window.patroliLive.connected === true", timeout=5000)
            banner = page.locator("#patroli-alarm-banner")
            assert banner.is_hidden()

            post(10, alarm="sos", battery=50)
            banner.wait_for(state="visible", timeout=3000)
            text = banner.inner_text()
            assert "TANDA BAHAYA" in text and "Polwan 07" in text and "sos" in text
            page.wait_for_selector(
                f'.patroli-unit.patroli-alarm[data-unit-id="{uid}"]', state="attached"
            )
            post(15, alarm="sos")  # the same press repeated: nothing new
            # A later, lower pinned alert goes below the alarm, which stays on top.
            post(20, battery=10)
            page.locator('#patroli-alerts li[data-type="low_battery"]').wait_for(timeout=3000)
            alarm = page.locator('.patroli-pinned-list li[data-type="alarm"]')
            low = page.locator('.patroli-pinned-list li[data-type="low_battery"]')
            alarm_box, low_box = alarm.bounding_box(), low.bounding_box()
            assert alarm_box is not None and low_box is not None
            assert alarm_box["y"] < low_box["y"]
            screenshot(page, artifacts_dir / "live-alarm", backend)

            # Dismissing clears the banner and the marker's highlight.
            assert page.locator(".patroli-alarm-line").count() == 1
            banner.locator("button").click()
            assert banner.is_hidden()
            assert page.locator(f'.patroli-unit.patroli-alarm[data-unit-id="{uid}"]').count() == 0
        assert errors == []

        # Another screen lists the stored alarm on top but raises no banner of its own.
        with live_page(browser, base, viewer) as (page, errors):
            page.locator('.patroli-pinned-list li[data-type="alarm"]').wait_for(timeout=3000)
            assert page.locator("#patroli-alarm-banner").is_hidden()
        assert errors == []
