"""The two hottest tracker doors served straight from ASGI: JSON ping POSTs and OsmAnd GETs.

A tracker posting one fix every few seconds pays for routing, dependency resolution, request
objects and every middleware layer on every request. This front door (in front of the whole
application) answers the common case of

- `POST /api/v1/pings` with a JSON body and a tracker or admin bearer key, and
- `GET /api/v1/osmand` / `GET /api/v1/osmand/<secret>` with the secret in the path or `key=`,

with the same functions the routes call (key lookup and cache, validation, group commit,
answer). Anything else — no key, an unknown or revoked key or one of another role, another
content type, a body that is not JSON, HTTP Basic credentials, unexpected query parameters, a
body without a length or over the limit — is passed on untouched to the application, which
gives it its usual answer. What the application's middlewares do for every answer
is done here with their own functions: security headers, the body's size and time limits, the
request timer, and a 500 for an unexpected error.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import State
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import Principal
from service.config import Settings
from service.errors import InvalidInput, PatroliError, describe_validation, error_response
from service.fixtime import FixTimes
from service.ingest.results import store_parsed
from service.ingest.writer import GroupCommitter
from service.limits import send_refusal, too_slow
from service.metrics import observe_request
from service.protocols.osmand import parse_osmand
from service.routes.deps import known_key
from service.routes.pings import store_pings
from service.routes.security import add_security_headers

log = logging.getLogger(__name__)

PINGS_PATH = "/api/v1/pings"
OSMAND_PATH = "/api/v1/osmand"
_OSMAND_PREFIX = OSMAND_PATH + "/"
_JSON = (b"content-type", b"application/json")


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> Message:
    """A response start message with the security headers every answer carries."""
    message: Message = {"type": "http.response.start", "status": status, "headers": headers}
    add_security_headers(message)
    return message


_EMPTY_OK = _start(200, [(b"content-length", b"0")])
# A JSON answer's headers but its length, worked out once (not per answer).
_JSON_HEADERS: list[tuple[bytes, bytes]] = _start(200, [_JSON])["headers"]


@dataclass(frozen=True)
class RouteTemplate:
    """The route a request was answered for, as the request timer labels it (`path`)."""

    path: str


_Door = Callable[[Scope, Receive, Send], Awaitable[int | None]]
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


async def _principal(state: State, key: str) -> Principal | None:
    """The principal of a tracker or admin key (looked up once, then cached), else None."""
    settings: Settings = state.settings
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return Principal(role="admin")
    try:
        principal = await known_key(state, key)
    except SQLAlchemyError:
        return None  # the app tries again and answers as it does when the database is down
    if principal is None or principal.role not in ("tracker", "admin"):
        return None  # the app answers 401 or 403
    return principal


def _secured(send: Send) -> Send:
    """`send` adding the security headers to a response start (for the rare error answers)."""

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            add_security_headers(message)
        await send(message)

    return secured


class FastIngest:
    """The front door: answers the common JSON ping and OsmAnd GET requests itself and passes
    everything else to `app`, the whole application (`state` is the application's state)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if method == "POST" and path == PINGS_PATH:
                await self._answer(self._pings, _PINGS_ROUTE, scope, receive, send)
                return
            if method == "GET" and (path == OSMAND_PATH or path.startswith(_OSMAND_PREFIX)):
                route = _OSMAND_ROUTE if path == OSMAND_PATH else _OSMAND_SECRET_ROUTE
                await self._answer(self._osmand, route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(
        self, door: _Door, route: RouteTemplate, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Run a door; time what it answered itself (what it passed on, the app times)."""
        began = time.perf_counter()
        try:
            status = await door(scope, receive, send)
        except Exception:
            log.exception("answering %s failed", route.path)
            status = 500
            await PlainTextResponse("Internal Server Error", 500)(scope, receive, _secured(send))
        if status is not None:
            observe_request(scope["method"], route.path, status, began)

    # -- POST /api/v1/pings ----------------------------------------------------------------

    async def _pings(self, scope: Scope, receive: Receive, send: Send) -> int | None:
        query = scope["query_string"]
        brief = False
        if query:
            if query not in (b"brief=true", b"brief=false"):
                await self.app(scope, receive, send)
                return None
            brief = query == b"brief=true"
        content_type = _header(scope, b"content-type")
        authorization = _header(scope, b"authorization")
        length = _header(scope, b"content-length")
        settings: Settings = self.state.settings
        if (
            content_type != b"application/json"
            or authorization is None
            or length is None
            or not length.isdigit()
            or int(length) > settings.max_body_bytes  # the app answers 413
        ):
            await self.app(scope, receive, send)
            return None
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        credentials = credentials.strip()
        principal = (
            await _principal(self.state, credentials)
            if scheme.lower() == "bearer" and credentials
            else None
        )
        if principal is None:
            await self.app(scope, receive, send)
            return None
        # Read the body; whatever was received is replayed if the app must answer instead.
        messages: list[Message] = []
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(settings.body_timeout_s):
                while True:
                    message = await receive()
                    messages.append(message)
                    if message["type"] != "http.request":
                        await self.app(scope, _replay(messages, receive), send)
                        return None
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await send_refusal(_secured(send), 408, too_slow(settings.body_timeout_s))
            return 408
        try:
            payload = json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict | list):  # not JSON, or JSON the route refuses
            await self.app(scope, _replay(messages, receive), send)
            return None
        try:
            body = await store_pings(payload, principal, settings, self.state.writer, brief=brief)
        except PatroliError as exc:
            response = error_response(exc)
            await response(scope, receive, _secured(send))
            return response.status_code
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return 200

    # -- GET /api/v1/osmand[/<secret>] -------------------------------------------------------

    async def _osmand(self, scope: Scope, receive: Receive, send: Send) -> int | None:
        path: str = scope["path"]
        secret = path[len(_OSMAND_PREFIX) :] if path != OSMAND_PATH else None
        if (secret is not None and (not secret or "/" in secret)) or any(
            name == b"authorization" for name, _ in scope["headers"]
        ):
            await self.app(scope, receive, send)  # not ours, or credentials to check there
            return None
        params: dict[str, list[str]] = {}
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), True):
            params.setdefault(name, []).append(value)
        keys = params.get("key")
        key = secret or (keys[-1] if keys else None)
        principal = await _principal(self.state, key) if key else None
        if principal is None:
            await self.app(scope, receive, send)
            return None
        settings: Settings = self.state.settings
        writer: GroupCommitter = self.state.writer
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
            response = error_response(exc)
            await response(scope, receive, _secured(send))
            return response.status_code
        await send(_EMPTY_OK)
        await send({"type": "http.response.body", "body": b""})
        return 200


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that first returns the messages already read, then reads on."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
