"""Map sessions: a ?key= on a page becomes a short-lived cookie; only GET pages and the stream
take it, revoking the key ends it, and an old or forged cookie is refused."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from service.app import create_app
from service.config import Settings
from service.routes.sessions import COOKIE, SALT
from tests.conftest import ADMIN_KEY
from tests.helpers import serve_app

SECRET = "test-session-secret-0123456789"
NO_BEARER = {"Authorization": ""}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()}


@contextmanager
def _client(settings: Settings, **kw: Any) -> Iterator[TestClient]:
    """A client without a key of its own; redirects are not followed."""
    with TestClient(create_app(settings), follow_redirects=False, **kw) as client:
        yield client


def _key(client: TestClient, role: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/api/v1/keys", json={"name": role, "role": role, **extra}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _open(client: TestClient, key: str, path: str = "/maps/live", **params: str) -> str:
    """Open `path` with ?key=; returns the session cookie it set."""
    r = client.get(path, params={**params, "key": key}, headers=NO_BEARER)
    assert r.status_code == 303, r.text
    token = client.cookies.get(COOKIE)
    assert token
    return str(token)


def test_a_key_in_the_url_becomes_a_session_cookie(make_settings: Callable[..., Settings]) -> None:
    with _client(make_settings()) as client:
        viewer = _key(client, "viewer")["key"]
        r = client.get("/maps/live", params={"lang": "en", "key": viewer}, headers=NO_BEARER)
        assert r.status_code == 303
        assert r.headers["location"] == "/maps/live?lang=en"  # the key left the URL
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for flag in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=43200"):
            assert flag.lower() in cookie.lower(), flag
        assert "secure" not in cookie.lower()  # plain http here
        assert viewer not in cookie

        # The cookie alone opens every map page.
        r = client.get("/maps/live", params={"lang": "en"}, headers=NO_BEARER)
        assert r.status_code == 200 and "Live patrol map" in r.text
        for path in ("/maps/coverage", "/maps/replay"):
            assert client.get(path, params=_window(), headers=NO_BEARER).status_code == 200
        # A window picked on the coverage map keeps its parameters through the redirect.
        r = client.get("/maps/coverage", params={**_window(), "key": viewer}, headers=NO_BEARER)
        assert r.status_code == 303 and "from=" in r.headers["location"]
        assert "key=" not in r.headers["location"]


def test_the_cookie_is_secure_over_https(make_settings: Callable[..., Settings]) -> None:
    with _client(make_settings(), base_url="https://patroli.example") as client:
        r = client.get("/maps/live", params={"key": ADMIN_KEY}, headers=NO_BEARER)
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()


def test_the_cookie_opens_the_stream(make_settings: Callable[..., Settings]) -> None:
    with (
        serve_app(create_app(make_settings())) as base,
        httpx.Client(base_url=base, timeout=5) as http,
    ):
        r = http.post("/api/v1/keys", json={"name": "cc", "role": "viewer"}, headers=ADMIN)
        viewer = r.json()["key"]
        assert http.get("/api/v1/stream").status_code == 401
        r = http.get("/maps/live", params={"key": viewer})
        assert r.status_code == 303 and http.cookies.get(COOKIE)
        with http.stream("GET", "/api/v1/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = next(stream.iter_lines())
            assert first.startswith("retry:")


def test_revoking_the_key_ends_its_sessions(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(session_secret=SECRET, key_cache_s=0)
    with _client(settings) as client, _client(settings) as other:
        viewer = _key(client, "viewer")
        _open(client, viewer["key"])
        # Another instance with the same secret takes the same cookie.
        other.cookies.set(COOKIE, client.cookies[COOKIE])
        assert client.get("/maps/live", headers=NO_BEARER).status_code == 200
        assert other.get("/maps/live", headers=NO_BEARER).status_code == 200
        r = client.delete(f"/api/v1/keys/{viewer['id']}", headers=ADMIN)
        assert r.status_code == 204
        for c in (client, other):
            r = c.get("/maps/live", headers=NO_BEARER)
            assert r.status_code == 401
            assert "session" in r.json()["detail"]


def test_revocation_reaches_a_cached_session_at_once_here(
    make_settings: Callable[..., Settings],
) -> None:
    with _client(make_settings(key_cache_s=600)) as client:
        viewer = _key(client, "viewer")
        _open(client, viewer["key"])
        assert client.get("/maps/live", headers=NO_BEARER).status_code == 200  # now cached
        assert client.delete(f"/api/v1/keys/{viewer['id']}", headers=ADMIN).status_code == 204
        assert client.get("/maps/live", headers=NO_BEARER).status_code == 401


class _OldSigner(TimestampSigner):
    """Signs as if it were 13 hours ago."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 13 * 3600


def test_expired_and_forged_cookies_are_refused(make_settings: Callable[..., Settings]) -> None:
    with _client(make_settings(session_secret=SECRET)) as client:
        viewer = _key(client, "viewer")
        payload = {"k": viewer["id"], "p": viewer["key"][:12]}
        fresh = URLSafeTimedSerializer(SECRET, salt=SALT).dumps(payload)
        old = URLSafeTimedSerializer(SECRET, salt=SALT, signer=_OldSigner).dumps(payload)
        forged = URLSafeTimedSerializer("another secret", salt=SALT).dumps(payload)
        other_key = URLSafeTimedSerializer(SECRET, salt=SALT).dumps(
            {"k": viewer["id"], "p": "ptl_notthis1"}
        )
        for token, code in ((fresh, 200), (old, 401), (forged, 401), (other_key, 401)):
            client.cookies.set(COOKIE, token)
            r = client.get("/maps/live", headers=NO_BEARER)
            assert r.status_code == code, (token, r.text[:200])


def test_a_shorter_lifetime_expires_sooner(make_settings: Callable[..., Settings]) -> None:
    with _client(make_settings(session_secret=SECRET, session_ttl_s=3600)) as client:
        viewer = _key(client, "viewer")
        payload = {"k": viewer["id"], "p": viewer["key"][:12]}
        old = URLSafeTimedSerializer(SECRET, salt=SALT, signer=_OldSigner).dumps(payload)
        client.cookies.set(COOKIE, old)
        assert client.get("/maps/live", headers=NO_BEARER).status_code == 401
        r = client.get("/maps/live", params={"key": viewer["key"]}, headers=NO_BEARER)
        assert "max-age=3600" in r.headers["set-cookie"].lower()


def test_the_cookie_changes_nothing(make_settings: Callable[..., Settings]) -> None:
    """An admin session cannot write: no cross-site request can use it."""
    with _client(make_settings()) as client:
        viewer = _key(client, "viewer")
        _open(client, ADMIN_KEY)
        assert client.get("/maps/live", headers=NO_BEARER).status_code == 200
        r = client.post("/api/v1/units", json={"name": "x", "device_id": "x"}, headers=NO_BEARER)
        assert r.status_code == 401
        r = client.delete(f"/api/v1/keys/{viewer['id']}", headers=NO_BEARER)
        assert r.status_code == 401
        # Nor does it open the JSON API: only the pages, their stream and the API description.
        assert client.get("/api/v1/units", headers=NO_BEARER).status_code == 401
        assert client.get("/openapi.json", headers=NO_BEARER).status_code == 200
        assert client.get("/api/v1/keys", headers=ADMIN).json()[0]["revoked_at"] is None


def test_an_admin_session_ends_when_the_admin_key_changes(
    make_settings: Callable[..., Settings],
) -> None:
    with _client(make_settings(session_secret=SECRET)) as client:
        token = _open(client, ADMIN_KEY)
    changed = make_settings(session_secret=SECRET, admin_key="another-admin-key-0123456789")
    with _client(changed) as client:
        client.cookies.set(COOKIE, token)
        assert client.get("/maps/live", headers=NO_BEARER).status_code == 401


def test_only_viewer_keys_start_sessions(make_settings: Callable[..., Settings]) -> None:
    with _client(make_settings()) as client:
        unit = client.post(
            "/api/v1/units", json={"name": "Polwan", "device_id": "p1"}, headers=ADMIN
        ).json()
        r = client.get("/maps/live", params={"key": unit["device_secret"]}, headers=NO_BEARER)
        assert r.status_code == 403
        assert COOKIE not in client.cookies
        r = client.get("/maps/live", params={"key": "wrong"}, headers=NO_BEARER)
        assert r.status_code == 401 and COOKIE not in client.cookies


def test_a_link_from_another_site_gets_a_page_that_moves_on(
    make_settings: Callable[..., Settings],
) -> None:
    """A Strict cookie is not sent after a cross-site redirect: a same-site page moves on."""
    with _client(make_settings()) as client:
        r = client.get(
            "/maps/live",
            params={"key": ADMIN_KEY, "lang": 'en"><script>alert(1)</script>'},
            headers={**NO_BEARER, "Sec-Fetch-Site": "cross-site"},
        )
        assert r.status_code == 200 and COOKIE in r.headers["set-cookie"]
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert '<meta http-equiv="refresh" content="0;url=/maps/live?lang=en%22' in r.text
        assert "<script>" not in r.text and ADMIN_KEY not in r.text
