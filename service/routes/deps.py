"""Request dependencies: settings, store, caller identity, time windows."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import State

from service.areas.index import GeoCache
from service.auth import KeyCache, Principal, resolve_key
from service.config import Settings
from service.errors import Forbidden, Unauthenticated
from service.ingest.writer import GroupCommitter
from service.routes import sessions
from service.store.db import Store
from service.window import Window, window_between


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    """The app's database store."""
    store: Store = request.app.state.store
    return store


def _from_app(name: str) -> Any:
    """A dependency on the app's `name` (set up by its lifespan).

    FastAPI runs plain `def` dependencies in its thread pool; this one only reads app state,
    so it is async and stays on the event loop (a thread hop per dependency costs latency).
    """

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return Depends(dependency)


SettingsDep = Annotated[Settings, _from_app("settings")]
StoreDep = Annotated[Store, _from_app("store")]
GeoDep = Annotated[GeoCache, _from_app("geo")]
WriterDep = Annotated[GroupCommitter, _from_app("writer")]
KeysDep = Annotated[KeyCache, _from_app("keys")]

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def get_keys(request: Request) -> KeyCache:
    """The app's cache of resolved API keys."""
    keys: KeyCache = request.app.state.keys
    return keys


def _lookup(store: Store, key: str) -> Principal | None:
    with store.read() as session:
        return resolve_key(session, key)


async def known_key(state: State, key: str) -> Principal | None:
    """The principal of a stored key (None when unknown or revoked), from this worker's key
    cache or else the database (the answer is cached)."""
    cache: KeyCache = state.keys
    found, principal = cache.get(key)
    if not found:
        generation = cache.generation
        principal = await run_in_threadpool(_lookup, state.store, key)
        cache.put(key, principal, generation)
    return principal


async def authenticate(request: Request, key: str | None) -> Principal | None:
    """The principal for a presented key (None when no key); Unauthenticated when unknown."""
    if not key:
        return None
    settings = get_settings(request)
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return Principal(role="admin")
    principal = await known_key(request.app.state, key)
    if principal is None:
        raise Unauthenticated("invalid or revoked API key")
    return principal


def _key_by_id(store: Store, key_id: int, prefix: str) -> Principal | None:
    with store.read() as session:
        return sessions.key_by_id(session, key_id, prefix)


async def session_principal(request: Request) -> Principal | None:
    """The principal of the request's map session cookie (GET and HEAD only), if it is valid."""
    token = request.cookies.get(sessions.COOKIE)
    if not token or request.method not in sessions.SESSION_METHODS:
        return None
    signer: sessions.SessionSigner = request.app.state.sessions
    payload = signer.read(token)
    if payload is None:
        return None
    if "a" in payload:
        return Principal(role="admin") if signer.is_admin(payload) else None
    key_id, prefix = payload.get("k"), payload.get("p")
    if not isinstance(key_id, int) or not isinstance(prefix, str):
        return None
    cache: sessions.SessionKeys = request.app.state.session_keys
    found, principal = cache.get(key_id, prefix)
    if not found:
        generation = get_keys(request).generation
        principal = await run_in_threadpool(_key_by_id, get_store(request), key_id, prefix)
        cache.put(key_id, prefix, principal, generation)
    return principal


def _require(
    roles: tuple[str, ...],
    *,
    query_key: bool = False,
    session: bool = False,
    start_session: bool = False,
    open_read: bool = False,
) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting callers whose key has one of `roles`.

    `query_key` also takes the key as `?key=`; `session` also takes the map session cookie
    (on GET and HEAD only); `start_session` answers a good `?key=` with a redirect that
    moves the key into a session cookie (HTML pages).
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        key: Annotated[str | None, Query(include_in_schema=False)] = None,
    ) -> Principal:
        from_query = credentials is None and query_key and bool(key)
        presented = credentials.credentials if credentials else (key if query_key else None)
        principal = await authenticate(request, presented)
        if principal is None and session:
            principal = await session_principal(request)
        if principal is None:
            if open_read and get_settings(request).open_read:
                return Principal(role="viewer")
            if session and request.cookies.get(sessions.COOKIE):
                raise Unauthenticated(
                    "the map session has expired or its key was revoked: open the page "
                    "with ?key=<key> again"
                )
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        if principal.role not in roles:
            needed = " or ".join(roles)
            article = "an" if needed[0] in "aeiou" else "a"
            raise Forbidden(f"this needs {article} {needed} key; yours is {principal.role}")
        if start_session and from_query and request.method in sessions.SESSION_METHODS:
            signer: sessions.SessionSigner = request.app.state.sessions
            token = signer.issue(principal, str(key))
            raise sessions.StartSession(sessions.redirect_without_key(request, token, signer.ttl_s))
        return principal

    return dependency


# Operators read everything viewers read and acknowledge alerts; they change nothing else.
_VIEWERS = ("admin", "operator", "viewer")
_ACKNOWLEDGERS = ("admin", "operator")
ACK_ROLES = _ACKNOWLEDGERS
AdminDep = Annotated[Principal, Depends(_require(("admin",)))]
# Acknowledging an alert: an operator or admin key as a bearer key (never a map session).
AckDep = Annotated[Principal, Depends(_require(_ACKNOWLEDGERS))]
ViewerDep = Annotated[Principal, Depends(_require(_VIEWERS, open_read=True))]
# The event stream and the API description: a key (bearer or ?key=) or a map session.
MapViewerDep = Annotated[
    Principal, Depends(_require(_VIEWERS, query_key=True, session=True, open_read=True))
]
# HTML pages (maps, API docs): a ?key= is moved into a session cookie by a redirect.
PageViewerDep = Annotated[
    Principal,
    Depends(_require(_VIEWERS, query_key=True, session=True, start_session=True, open_read=True)),
]
TrackerDep = Annotated[Principal, Depends(_require(("admin", "tracker")))]


async def device_principal(request: Request, key: str | None) -> Principal:
    """Who a tracker protocol request speaks for: its device secret, or (if allowed) anyone.

    The secret comes in the URL path, as `key=` or an HTTP Basic password, or else a bearer key.
    """
    if not key:
        credentials = await _bearer(request)
        key = credentials.credentials if credentials else None
    principal = await authenticate(request, key)
    if principal is None:
        if get_settings(request).device_key_required:
            raise Unauthenticated(
                "device secret required: send it as the last segment of the URL path, as an "
                "'Authorization: Bearer' key, as the HTTP Basic password or as key="
            )
        return Principal(role="device")
    if principal.role not in ("tracker", "admin"):
        raise Forbidden(f"a tracker or admin key is needed; yours is {principal.role}")
    return principal


def get_writer(request: Request) -> GroupCommitter:
    """The app's group committer for pings."""
    writer: GroupCommitter = request.app.state.writer
    return writer


async def window_query(
    settings: SettingsDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from", description="Start (inclusive), ISO 8601 or Unix time. Default: to-24h"
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(description="End (exclusive), ISO 8601 or Unix time. Default and latest: now"),
    ] = None,
) -> Window:
    """The [from, to) window of a query (the last 24 hours by default; never beyond now)."""
    return window_between(from_, to, settings.max_window_days)


WindowDep = Annotated[Window, Depends(window_query)]
SegmentQuery = Annotated[
    float | None, Query(gt=0, le=1_000_000, description="Segment length (m). Default: setting")
]
MaxGapQuery = Annotated[
    float | None, Query(gt=0, le=86_400, description="Longest bridged gap (s). Default: setting")
]
