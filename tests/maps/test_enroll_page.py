"""The enrolment page: admin only, rotates only on the form's POST, QR codes that work."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.maps.assets import referenced_assets
from tests.conftest import ADMIN_KEY
from tests.helpers import along, browser_page, live_app
from tests.qrcodes import decode_pixels, owntracks_config

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HOSTILE = '<img src=x onerror="alert(1)"></script>'


def osmand_ping(secret: str, device_id: str) -> dict[str, Any]:
    lon, lat = along(100)
    now = int(datetime.now(UTC).timestamp())
    return {"id": device_id, "lat": lat, "lon": lon, "timestamp": now, "key": secret}


def test_page_is_for_admins_and_shows_the_unit_as_text(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(public_url="https://patroli.example.org")
    with TestClient(create_app(settings)) as http:
        unit = http.post(
            "/api/v1/units", json={"name": HOSTILE, "device_id": "polres/hp1"}, headers=ADMIN
        ).json()
        viewer = http.post("/api/v1/keys", json={"name": "cc", "role": "viewer"}, headers=ADMIN)
        url = f"/maps/enroll/{unit['id']}"
        assert http.get(url).status_code == 401
        r = http.get(url, headers={"Authorization": f"Bearer {viewer.json()['key']}"})
        assert r.status_code == 403
        assert http.get("/maps/enroll/999", headers=ADMIN).status_code == 404

        r = http.get(url, params={"key": ADMIN_KEY, "lang": "en"})  # a session, then the page
        assert r.status_code == 200 and r.url.path == url and "key" not in r.url.query.decode()
        page = r.text
        assert HOSTILE not in page and html.escape(HOSTILE) in page
        assert 'id="enroll-form"' in page and "Enrol a phone" in page
        assert r.headers["cache-control"] == "no-store"
        csp = r.headers["content-security-policy"]
        script_src = next(d for d in csp.split("; ") if d.startswith("script-src"))
        assert "unsafe-inline" not in script_src and "'sha256-" not in script_src
        assert list(referenced_assets(page)) == ["/static/patroli/enroll.js"]
        assert http.get("/static/patroli/enroll.js").status_code == 200
        assert "ptl_" not in page  # opening the page issues no secret

        # The session opens the page only: issuing a secret needs the admin key itself.
        assert http.post(url).status_code == 401
        r = http.post(url, headers={"Authorization": f"Bearer {viewer.json()['key']}"})
        assert r.status_code == 403
        r = http.post(url, headers=ADMIN)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [link["app"] for link in body["links"]] == ["traccar", "owntracks"]
        assert all(link["qr"].startswith("data:image/svg+xml") for link in body["links"])
        assert body["name"] == HOSTILE and body["notes"] == []
        assert r.headers["cache-control"] == "no-store"
        # The unit's first secret was revoked; the one in the links works.
        old = http.get("/api/v1/osmand", params=osmand_ping(unit["device_secret"], "polres/hp1"))
        assert old.status_code == 401


def test_without_public_url_the_page_offers_nothing_and_nothing_is_revoked(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings)) as http:
        unit = http.post("/api/v1/units", json={"name": "A", "device_id": "a"}, headers=ADMIN)
        uid, secret = unit.json()["id"], unit.json()["device_secret"]
        r = http.get(f"/maps/enroll/{uid}", headers=ADMIN)
        assert r.status_code == 200
        assert "PATROLI_PUBLIC_URL" in r.text and 'id="enroll-form"' not in r.text
        r = http.post(f"/maps/enroll/{uid}", headers=ADMIN)
        assert r.status_code == 409 and "PATROLI_PUBLIC_URL" in r.json()["detail"]
        assert http.get("/api/v1/osmand", params=osmand_ping(secret, "a")).status_code == 200


# Draws an <img> onto a canvas and returns its pixels as gray levels (what a camera would see).
_PIXELS = """async (selector) => {
    const img = document.querySelector(selector);
    await img.decode();
    const scale = 3;
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth * scale;
    canvas.height = img.naturalHeight * scale;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const gray = [];
    for (let i = 0; i < rgba.length; i += 4) gray.push(rgba[i]);
    return [canvas.width, canvas.height, gray];
}"""


def scan(page: Any, app: str) -> str:
    """The text of the QR code the page shows for `app`."""
    width, height, gray = page.evaluate(_PIXELS, f'figure[data-app="{app}"] img')
    return decode_pixels(np.array(gray, dtype=np.uint8).reshape(height, width))


@pytest.mark.browser
def test_page_issues_qr_codes_that_phones_post_with(
    make_settings: Callable[..., Settings], backend: str, browser: Any, artifacts_dir: Path
) -> None:
    app = create_app(make_settings())
    with live_app(app) as (base, http):
        # The public URL is this server's, known once it listens.
        app.state.settings = app.state.settings.model_copy(update={"public_url": base})
        unit = http.post("/api/v1/units", json={"name": "Polwan 09", "device_id": "polres/p09"})
        uid, old = unit.json()["id"], unit.json()["device_secret"]

        blocked: list[str] = []
        with browser_page(browser, blocked) as (page, errors):
            url = httpx.URL(f"{base}/maps/enroll/{uid}", params={"key": ADMIN_KEY, "lang": "en"})
            page.goto(str(url), wait_until="load")
            assert "key" not in parse_qs(urlsplit(page.url).query)
            assert page.locator("#enroll-unit").inner_text() == "Polwan 09"
            page.fill("#enroll-key", ADMIN_KEY)
            page.click("#enroll-form button")
            page.locator('figure[data-app="owntracks"] img').wait_for(state="visible")
            assert page.input_value("#enroll-key") == ""  # the key is not kept in the page
            traccar, owntracks = scan(page, "traccar"), scan(page, "owntracks")
            hrefs = page.eval_on_selector_all("figure a", "els => els.map(a => a.href)")
            assert hrefs[0] == traccar and hrefs[1].startswith("owntracks:")
            name = "enroll-page.png" if backend == "sqlite" else f"enroll-page-{backend}.png"
            page.screenshot(path=str(artifacts_dir / name), full_page=True)
            assert errors == [] and blocked == []

        # A phone with only the scanned link posts; the unit's previous secret is refused.
        assert traccar.startswith(f"{base}/api/v1/osmand/ptl_")
        lon, lat = along(100)
        fix = {"lat": lat, "lon": lon, "timestamp": int(datetime.now(UTC).timestamp())}
        server = traccar.split("?")[0]
        r = httpx.get(server, params={"id": "polres/p09", **fix})
        assert r.status_code == 200, r.text
        r = httpx.get(f"{base}/api/v1/osmand/{old}", params={"id": "polres/p09", **fix})
        assert r.status_code == 401
        config = owntracks_config(owntracks)
        message = {"_type": "location", "lat": lat, "lon": lon, "tst": fix["timestamp"]}
        r = httpx.post(
            config["url"],
            json=message,
            headers={"X-Limit-U": config["username"], "X-Limit-D": config["deviceId"]},
        )
        assert r.status_code == 200, r.text
