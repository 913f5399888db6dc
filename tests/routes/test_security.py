"""Security headers on every response, and the Content-Security-Policy of the pages."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.routes.security import DEFAULT_CSP, inline_hashes, page_csp, tile_source
from tests.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _common(headers: Any) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def _directives(csp: str) -> dict[str, list[str]]:
    out = {}
    for part in csp.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_every_response_has_the_headers(client: TestClient) -> None:
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()}
    for method, path, params, headers, code in (
        ("GET", "/api/v1/units", {}, ADMIN, 200),
        ("GET", "/api/v1/units", {}, {"Authorization": ""}, 401),
        ("GET", "/api/v1/units/999999", {}, ADMIN, 404),
        ("GET", "/api/v1/reports/units", {**window, "format": "csv"}, ADMIN, 200),
        ("POST", "/api/v1/pings", {}, ADMIN, 422),
        ("GET", "/healthz", {}, {}, 200),
        ("GET", "/maps/live", {}, ADMIN, 200),
        ("GET", "/openapi.json", {}, ADMIN, 200),
        ("GET", "/docs", {}, ADMIN, 200),
    ):
        r = client.request(method, path, params=params, headers=headers)
        assert r.status_code == code, (path, r.text[:200])
        _common(r.headers)
        assert r.headers["cache-control"] == "no-store", path
        if not r.headers["content-type"].startswith("text/html"):
            assert r.headers["content-security-policy"] == DEFAULT_CSP, path


def test_static_assets_stay_cacheable(client: TestClient) -> None:
    for path in ("/static/leaflet/leaflet.js", "/static/patroli/common.js"):
        r = client.get(path)
        assert r.status_code == 200
        _common(r.headers)
        assert "cache-control" not in r.headers, path


def test_map_pages_admit_only_their_own_scripts(client: TestClient) -> None:
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()}
    for path, params in (("/maps/live", {}), ("/maps/coverage", window), ("/maps/replay", window)):
        r = client.get(path, params=params)
        assert r.status_code == 200, path
        csp = _directives(r.headers["content-security-policy"])
        assert csp["default-src"] == ["'none'"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert csp["connect-src"] == ["'self'"]
        # The default tile server, and nothing else from outside.
        assert csp["img-src"] == ["'self'", "data:", "https://tile.openstreetmap.org"]
        scripts, styles = inline_hashes(r.text)
        assert scripts, "a map page has inline scripts"
        assert csp["script-src"] == ["'self'", *scripts]
        assert csp["style-src"] == ["'self'", *styles]
        for values in csp.values():
            assert "'unsafe-inline'" not in values and "'unsafe-eval'" not in values, path


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
        ("https://{s}.tile.example.org/{z}/{x}/{y}.png", "https://*.tile.example.org"),
        ("http://tiles.local:8080/osm/{z}/{x}/{y}.png", "http://tiles.local:8080"),
        ("https://tiles-{s}.example.org/{z}/{x}/{y}.png", "https:"),
        ("/tiles/{z}/{x}/{y}.png", None),
    ],
)
def test_tile_source(url: str, source: str | None) -> None:
    assert tile_source(url) == source


def test_the_tile_server_setting_is_in_the_policy(make_settings: Any) -> None:
    settings: Settings = make_settings(tile_url="http://10.1.2.3:8080/{z}/{x}/{y}.png")
    with TestClient(create_app(settings)) as client:
        r = client.get("/maps/live", headers=ADMIN)
        csp = _directives(r.headers["content-security-policy"])
        assert csp["img-src"] == ["'self'", "data:", "http://10.1.2.3:8080"]


def test_hashes_are_those_of_the_inline_code() -> None:
    page = (
        "<html><head><style>b { color: red }</style>"
        '<script src="/static/x.js"></script>'
        '<script type="application/json" id="d">{"a": 1}</script></head>'
        "<body><script>\r\nrun();\n</script></body></html>"
    )

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert inline_hashes(page) == ([sha("\nrun();\n")], [sha("b { color: red }")])
    csp = page_csp(page, style_inline=True)
    assert "style-src 'self' 'unsafe-inline'" in csp
    assert re.search(r"script-src 'self' 'sha256-[^']+'; ", csp)
