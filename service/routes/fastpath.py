"""The two hottest tracker doors served straight from ASGI: JSON ping POSTs and OsmAnd GETs.

A tracker posting one fix every few seconds pays for routing, dependency resolution and request
objects on every request. This middleware (inside the security-header, body-limit and timing
middlewares, so those apply unchanged) answers the common case of

- `POST /api/v1/pings` with a JSON body and a known bearer key, and
- `GET /api/v1/osmand` / `GET /api/v1/osmand/<secret>` with the secret in the path or `key=`,

with the same functions the routes call (validation, group commit, answer). Anything else — no
or an unknown key (not in this worker's key cache yet), another content type, a body that is
not JSON, HTTP Basic credentials, unexpected query parameters — is passed on untouched to the
FastAPI routes, which give it their usual answer (and cache the key for the next request).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import KeyCache, Principal
from service.config import Settings
from service.errors import InvalidInput, PatroliError, describe_validation, error_response
from service.fixtime import FixTimes
from service.ingest.results import store_parsed
from service.ingest.writer import GroupCommitter
from service.protocols.osmand import parse_osmand
from service.routes.pings import store_pings

PINGS_PATH = "/api/v1/pings"
OSMAND_PATH = "/api/v1/osmand"
_OSMAND_PREFIX = OSMAND_PATH + "/"
_JSON = (b"content-type", b"application/json")
_EMPTY_OK: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-length", b"0")],
}


@dataclass(frozen=True)
class RouteTemplate:
    """The route a request was answered for, as the request timer labels it (`path`)."""

    path: str


_PINGS_ROUTE = RouteTemplate(PINGS_PATH)
_OSMAND_ROUTE = RouteTemplate(OSMAND_PATH)
_OSMAND_SECRET_ROUTE = RouteTemplate(OSMAND_PATH + "/{secret}")


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The value of a header sent once (None when absent or repeated)."""
    found = None
    for key, value in scope["headers"]:
        if key == name:
            if found is not None:
                return None
            found = value
    return found


def _cached_principal(scope: Scope, key: str) -> Principal | None:
    """The principal of a tracker or admin key known to this worker, else None (pass on)."""
    state = scope["app"].state
    settings: Settings = state.settings
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return Principal(role="admin")
    cache: KeyCache = state.keys
    found, principal = cache.get(key)
    if not found or principal is None or principal.role not in ("tracker", "admin"):
        return None
    return principal


class FastIngest:
    """ASGI middleware answering the common JSON ping and OsmAnd GET requests directly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if method == "POST" and path == PINGS_PATH:
                await self._pings(scope, receive, send)
                return
            if method == "GET" and (path == OSMAND_PATH or path.startswith(_OSMAND_PREFIX)):
                await self._osmand(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # -- POST /api/v1/pings ----------------------------------------------------------------

    async def _pings(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope["query_string"]
        brief = False
        if query:
            if query not in (b"brief=true", b"brief=false"):
                await self.app(scope, receive, send)
                return
            brief = query == b"brief=true"
        content_type = _header(scope, b"content-type")
        authorization = _header(scope, b"authorization")
        if content_type != b"application/json" or authorization is None:
            await self.app(scope, receive, send)
            return
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        credentials = credentials.strip()
        principal = (
            _cached_principal(scope, credentials)
            if scheme.lower() == "bearer" and credentials
            else None
        )
        if principal is None:
            await self.app(scope, receive, send)
            return
        # Read the body; whatever was received is replayed if the routes must answer instead.
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                await self.app(scope, _replay(messages, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            payload = json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict | list):  # not JSON, or JSON the route refuses
            await self.app(scope, _replay(messages, receive), send)
            return
        state = scope["app"].state
        scope["route"] = _PINGS_ROUTE
        try:
            body = await store_pings(payload, principal, state.settings, state.writer, brief=brief)
        except PatroliError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_JSON, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- GET /api/v1/osmand[/<secret>] -------------------------------------------------------

    async def _osmand(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        secret = path[len(_OSMAND_PREFIX) :] if path != OSMAND_PATH else None
        if (secret is not None and (not secret or "/" in secret)) or any(
            name == b"authorization" for name, _ in scope["headers"]
        ):
            await self.app(scope, receive, send)  # not ours, or credentials to check there
            return
        params: dict[str, list[str]] = {}
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), True):
            params.setdefault(name, []).append(value)
        keys = params.get("key")
        key = secret or (keys[-1] if keys else None)
        principal = _cached_principal(scope, key) if key else None
        if principal is None:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        writer: GroupCommitter = state.writer
        scope["route"] = _OSMAND_ROUTE if secret is None else _OSMAND_SECRET_ROUTE
        try:
            try:
                parsed = parse_osmand(
                    params,
                    now=datetime.now(UTC),
                    speed_unit=settings.osmand_speed_unit,
                    times=FixTimes.of(settings),
                )
            except ValidationError as exc:
                raise InvalidInput(describe_validation(exc.errors())) from None
            await store_parsed(writer, principal, [parsed], "osmand")
        except PatroliError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await send(_EMPTY_OK)
        await send({"type": "http.response.body", "body": b""})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that first returns the messages already read, then reads on."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
