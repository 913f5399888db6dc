"""API docs: /docs, /redoc and /openapi.json need a viewer key and load nothing from outside."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import ADMIN_KEY
from tests.helpers import block_remote, csp_violations

DOCS = ("/docs", "/redoc", "/openapi.json")
NO_BEARER = {"Authorization": ""}


def test_docs_need_a_viewer_key(client: TestClient) -> None:
    for path in DOCS:
        r = client.get(path, headers=NO_BEARER)
        assert r.status_code == 401, path
        assert client.get(path, params={"key": "wrong"}, headers=NO_BEARER).status_code == 401
        assert client.get(path).status_code == 200, path  # the admin key as bearer
    viewer = client.post("/api/v1/keys", json={"name": "dev", "role": "viewer"}).json()["key"]
    r = client.get("/openapi.json", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200 and r.json()["info"]["title"] == "Patroli"
    tracker = client.post("/api/v1/units", json={"name": "P", "device_id": "p"}).json()
    r = client.get("/openapi.json", headers={"Authorization": f"Bearer {tracker['device_secret']}"})
    assert r.status_code == 403


def test_docs_are_open_with_open_read(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(open_read=True))) as client:
        for path in DOCS:
            assert client.get(path).status_code == 200, path


def test_docs_pages_use_local_assets(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path).text
        assert "http://" not in page and "https://" not in page, path
        for url in ("/static/docs/favicon.png", *_scripts(page)):
            assert client.get(url).status_code == 200, url


def _scripts(page: str) -> list[str]:
    return re.findall(r'<script src="([^"]+)"', page)


def test_the_docs_key_moves_into_a_session(client: TestClient) -> None:
    r = client.get("/docs", params={"key": ADMIN_KEY}, headers=NO_BEARER, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/docs"
    # The page's request for the API description carries the cookie only.
    assert client.get("/openapi.json", headers=NO_BEARER).status_code == 200


@pytest.mark.browser
def test_docs_load_offline_in_chromium(settings: Settings, browser: Any, live_server: Any) -> None:
    with live_server(create_app(settings)) as base:
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        try:
            page = context.new_page()
            violations = csp_violations(page)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            blocked = block_remote(page)
            viewer_url = httpx.URL(f"{base}/docs", params={"key": ADMIN_KEY})
            page.goto(str(viewer_url), wait_until="load")
            assert "key" not in parse_qs(urlsplit(page.url).query)
            page.locator(".opblock").first.wait_for(timeout=30_000)
            assert page.locator(".opblock").count() > 20  # every operation listed
            assert "/api/v1/pings" in page.locator("#swagger-ui").inner_text()
            assert errors == [] and violations == []

            page.goto(f"{base}/redoc", wait_until="load")
            page.wait_for_function("() => typeof window.Redoc === 'object'")
            page.locator("redoc > *").first.wait_for(state="attached", timeout=30_000)
            # ReDoc's footer names a logo on its vendor's CDN: the policy keeps it from loading
            # (no request leaves), and that refusal is all the policy has to say.
            assert all("cdn.redoc.ly" in v for v in violations), violations
        finally:
            context.close()
        assert blocked == []
