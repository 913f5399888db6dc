"""Map sessions: a short-lived signed cookie from a viewer key, so keys need not stay in URLs.

Opening a map page (or the API docs) with `?key=` checks the key, sets the session cookie and
redirects (303) to the same URL without the key (from a link on another site: see
`redirect_without_key`). The cookie holds a signed, timestamped token
naming the key (its id and prefix; for the bootstrap admin key, a keyed fingerprint of it), so
revoking or changing the key ends its sessions within the key-cache time. Only GET requests of
the map pages, their event stream and the API description accept the cookie: no request that
changes anything does, so the cookie opens no cross-site request forgery.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import math
import secrets
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from service.auth import KeyCache, Principal
from service.config import Settings
from service.store.models import ApiKey

COOKIE = "patroli_session"
SALT = "patroli.map-session"
SESSION_METHODS = ("GET", "HEAD")


class StartSession(Exception):
    """Raised by a page's key check: answer with this redirect, which sets the session cookie."""

    def __init__(self, response: Response) -> None:
        super().__init__("start a map session")
        self.response = response


class SessionKeys:
    """Recently resolved key ids of sessions, per worker, as KeyCache keeps keys.

    An entry is dropped as soon as the key cache is cleared (a key was revoked here).
    """

    def __init__(self, ttl_s: float, keys: KeyCache) -> None:
        self._ttl = ttl_s
        self._keys = keys
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], tuple[Principal | None, float, int]] = {}

    def get(self, key_id: int, prefix: str) -> tuple[bool, Principal | None]:
        """(found, principal) for a key id and prefix; found is False when it must be looked up."""
        with self._lock:
            entry = self._entries.get((key_id, prefix))
        if entry is None or entry[1] < time.monotonic() or entry[2] != self._keys.generation:
            return False, None
        return True, entry[0]

    def put(self, key_id: int, prefix: str, principal: Principal | None, generation: int) -> None:
        """Remember how a key id resolved, unless keys were revoked since the lookup began."""
        if self._ttl <= 0:
            return
        with self._lock:
            if generation != self._keys.generation:
                return
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[(key_id, prefix)] = (principal, time.monotonic() + self._ttl, generation)


class SessionSigner:
    """Issues and reads the signed session tokens of one app."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.session_secret
        self._secret = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
        self._serializer = URLSafeTimedSerializer(self._secret, salt=SALT)
        self.ttl_s = settings.session_ttl_s
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        self._admin = self._fingerprint(admin) if admin else None

    def _fingerprint(self, key: str) -> str:
        """A keyed fingerprint of a key: names it without revealing it."""
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, principal: Principal, key: str) -> str:
        """A token for the session of `key`, which resolved to `principal`."""
        payload: dict[str, Any]
        if principal.key_id is None:  # the bootstrap admin key of the settings
            payload = {"a": self._fingerprint(key)}
        else:
            payload = {"k": principal.key_id, "p": key[:12]}
        return self._serializer.dumps(payload)

    def read(self, token: str) -> dict[str, Any] | None:
        """The payload of a token that is genuine and younger than the session lifetime."""
        try:
            payload = self._serializer.loads(token, max_age=math.ceil(self.ttl_s))
        except BadSignature:  # also SignatureExpired
            return None
        return payload if isinstance(payload, dict) else None

    def is_admin(self, payload: dict[str, Any]) -> bool:
        """Whether a payload names the bootstrap admin key as it is configured now."""
        fingerprint = payload.get("a")
        return (
            isinstance(fingerprint, str)
            and self._admin is not None
            and hmac.compare_digest(fingerprint, self._admin)
        )


def install(app: FastAPI, settings: Settings) -> None:
    """Give `app` a session signer, a cache of session keys and the redirect handler."""
    app.state.sessions = SessionSigner(settings)
    app.state.session_keys = SessionKeys(settings.key_cache_s, app.state.keys)

    async def redirect(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StartSession)
        return exc.response

    app.add_exception_handler(StartSession, redirect)


def key_by_id(session: Session, key_id: int, prefix: str) -> Principal | None:
    """The principal of a stored key by id and prefix, or None when unknown or revoked."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None or row.prefix != prefix:
        return None
    return Principal(role=row.role, unit_id=row.unit_id, key_id=row.id, name=row.name)


def redirect_without_key(request: Request, token: str, ttl_s: float) -> Response:
    """The request's URL without `key=`, as a 303 redirect that sets the session cookie.

    A navigation that began on another site (a link in another web application) stays
    cross-site through redirects, and a SameSite=Strict cookie is not sent on it: such a
    request gets a page of this site that moves on by itself instead, which is same-site.
    """
    query = request.url.remove_query_params("key").query
    target = request.url.path + (f"?{query}" if query else "")
    response: Response
    if request.headers.get("sec-fetch-site") == "cross-site":
        url = html.escape(target, quote=True)
        response = HTMLResponse(
            f'<!DOCTYPE html><html><head><meta http-equiv="refresh" content="0;url={url}">'
            f'<title>Patroli</title></head><body><a href="{url}">{url}</a></body></html>'
        )
    else:
        response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(ttl_s),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response
