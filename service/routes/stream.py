"""HTTP route for the live stream of positions and events (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.exc import OperationalError

from service.auth import KeyCache, Principal, still_valid
from service.errors import COMMON_ERRORS, InvalidInput, NotFound, error_responses
from service.events.types import EVENT_TYPES, unknown_event_types
from service.fields import Id
from service.notify import stream as streaming
from service.notify.stream import (
    GAP_RECHECK_S,
    KEEPALIVE_S,
    MIN_POLL_S,
    RETRY_MS,
    SAFETY_POLL_S,
    Broker,
    Cursor,
    EventStream,
    Reader,
    current_cursor,
)
from service.routes.deps import KeysDep, MapViewerDep, SettingsDep, StoreDep
from service.store.db import Store
from service.store.models import Unit

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["stream"], responses=error_responses(*COMMON_ERRORS))

STREAM_DOC = """Server-Sent Events: `event: position` for each new analytics-eligible fix and
`event: <type>` for each new event (data: the event as `GET /api/v1/events` shows it).
Each message id is the stream position `<event_id>-<ping_id>` after it; reconnecting with
`Last-Event-ID` (EventSource does this itself) or `?last_event_id=` delivers exactly what was
missed. Without one, only data stored after connecting is sent. Browsers may authenticate with
`?key=` or the session cookie of a map page."""


# One Server-Sent Event (OpenAPI 3.1 has `schema` of an event stream describe each event).
STREAM_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "description": "`position` or an event type."},
        "data": {"type": "string", "description": "The position or event as JSON."},
        "id": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
        "retry": {"type": "integer"},
    },
}


def get_broker(request: Request) -> Broker:
    """The app's stream broker (a local one, woken by polling only, if none was set up)."""
    broker: Broker | None = getattr(request.app.state, "broker", None)
    if broker is None:
        log.warning("no stream broker configured; live streams fall back to polling")
        broker = Broker()
        broker.start(asyncio.get_running_loop())
        request.app.state.broker = broker
    return broker


def _start(store: Store, unit_id: int | None, requested: Cursor | None) -> tuple[Cursor, bool]:
    """Where a new stream begins (never past what is stored) and whether ids may show late."""
    with store.read() as session:
        if unit_id is not None and session.get(Unit, unit_id) is None:
            raise NotFound(f"unit {unit_id} not found")
        now = current_cursor(session)
    if requested is None:
        return now, not store.is_sqlite
    start = Cursor(min(requested.event_id, now.event_id), min(requested.ping_id, now.ping_id))
    return start, not store.is_sqlite


def _poll(store: Store, reader: Reader) -> tuple[list[str], bool]:
    with store.read() as session:
        return reader.poll(session)


def _valid(store: Store, principal: Principal) -> bool:
    with store.read() as session:
        return still_valid(session, principal)


class Access:
    """When an open stream must check again that the key it was opened with still stands.

    Every `period` seconds (the key-cache time, so a revocation in another worker ends the
    stream as soon as it would refuse a new request there), and at once after this worker's key
    cache was cleared by a revocation.
    """

    def __init__(self, principal: Principal, keys: KeyCache, period: float) -> None:
        self.principal = principal
        self.keys = keys
        self.period = max(period, streaming.MIN_KEY_CHECK_S)
        self.generation = keys.generation
        self.checked_at = time.monotonic()

    @property
    def revocable(self) -> bool:
        """Whether the stream rests on a stored key (the bootstrap admin key cannot be revoked)."""
        return self.principal.key_id is not None

    def due(self, now: float) -> bool:
        """Whether to look the key up again now."""
        return self.revocable and (
            self.keys.generation != self.generation or now - self.checked_at >= self.period
        )

    def wait_at_most(self, now: float) -> float:
        """Seconds until the next check is due."""
        if not self.revocable:
            return float("inf")
        return max(self.period - (now - self.checked_at), 0.0)

    async def check(self, store: Store, broker: Broker) -> bool:
        """Look the key up; False when it was revoked (or its unit deleted) since."""
        self.generation = self.keys.generation
        valid = await broker.run(partial(_valid, store, self.principal))
        self.checked_at = time.monotonic()
        return valid


async def _messages(
    request: Request,
    store: Store,
    broker: Broker,
    reader: Reader,
    keepalive: float,
    access: Access,
) -> AsyncIterator[str]:
    """The SSE body: the retry advice, then new messages as they are stored, and keep-alives.

    The stream ends when its key is revoked; the client's reconnection is then refused (401).
    """
    yield f"retry: {RETRY_MS}\nid: {reader.cursor}\n\n"
    idle_since = opened = time.monotonic()
    while not (broker.closed or await request.is_disconnected()):
        if time.monotonic() - opened > streaming.MAX_STREAM_S:
            return
        if access.due(time.monotonic()):
            try:
                valid = await access.check(store, broker)
            except OperationalError as exc:
                log.warning("live stream ended, database unavailable: %s", exc)
                return
            if not valid:
                yield ": the API key of this stream was revoked\n\n"
                return
        token = broker.token()
        started = time.monotonic()
        try:
            messages, more = await broker.run(partial(_poll, store, reader))
        except OperationalError as exc:
            # The client reconnects after RETRY_MS with its Last-Event-ID and loses nothing.
            log.warning("live stream ended, database unavailable: %s", exc)
            return
        if messages:
            yield "".join(messages)
            idle_since = time.monotonic()
        if more:
            continue
        now = time.monotonic()
        if now - idle_since >= keepalive:
            yield ": keep-alive\n\n"
            idle_since = now
        life = streaming.MAX_STREAM_S - (now - opened)
        timeout = min(keepalive - (now - idle_since), SAFETY_POLL_S, life, access.wait_at_most(now))
        if reader.waiting:
            timeout = min(timeout, GAP_RECHECK_S)
        await broker.wait(max(timeout, 0.0), token)
        pause = MIN_POLL_S - (time.monotonic() - started)
        if pause > 0:
            await asyncio.sleep(pause)


@router.get(
    "/stream",
    response_class=EventStream,
    description=STREAM_DOC,
    responses={
        200: {
            "description": "The event stream; each event as described (comments aside).",
            "content": {"text/event-stream": {"schema": STREAM_EVENT}},
        },
        **error_responses(404),
    },
)
async def open_stream(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    keys: KeysDep,
    principal: MapViewerDep,
    unit: Annotated[Id | None, Query(description="Only this unit's positions and events")] = None,
    types: Annotated[
        list[str] | None,
        Query(alias="type", description="Only these event types (repeat or comma-separate)"),
    ] = None,
    positions: Annotated[bool, Query(description="Send `position` messages")] = True,
    keepalive: Annotated[
        float, Query(gt=0, le=300, description="Seconds of silence before a keep-alive comment")
    ] = KEEPALIVE_S,
    last_event_id: Annotated[
        str | None, Query(description="Resume after this message id (`Last-Event-ID` wins)")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventStream:
    """Live positions and events as Server-Sent Events."""
    wanted = tuple(t.strip() for value in types or () for t in value.split(",") if t.strip())
    unknown = unknown_event_types(wanted)
    if unknown:
        raise InvalidInput(f"unknown event type(s) {unknown}; known: {list(EVENT_TYPES)}")
    resume = last_event_id_header or last_event_id
    requested = Cursor.parse(resume) if resume else None
    broker = get_broker(request)
    cursor, check_gaps = await broker.run(partial(_start, store, unit, requested))
    reader = Reader(cursor, unit, wanted, positions, check_gaps)
    access = Access(principal, keys, settings.key_cache_s)
    return EventStream(
        _messages(request, store, broker, reader, keepalive, access),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
