"""The live stream: Server-Sent Events read from the durable event and ping logs.

Every message comes from the database, so a slow or stalled client never holds up ingest and
costs no memory beyond one page of rows. The writer wakes the streams of its own process after
each commit (`Broker.wake`); on PostgreSQL it also sends `NOTIFY patroli_stream` inside the
transaction, and every process's `Broker` listens for it so that pings stored by other workers
reach its clients too. A stream position is the pair of the newest event id and ping id a client
has seen; it is the SSE message id, so `Last-Event-ID` resumes exactly where a client left off.

On PostgreSQL, ids are allocated before commit, so a row with a lower id can become visible after
one with a higher id. A reader therefore stops at the first missing id until no transaction that
could hold it is left open (or GAP_MAX_WAIT_S has passed): a resumed client sees no gaps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from starlette.responses import StreamingResponse
from starlette.types import Message, Send

from service.analytics.positions import ELIGIBLE
from service.auth import KEYS_CHANNEL
from service.errors import InvalidInput
from service.events.log import EventFilter, query_events
from service.metrics import STREAM_CLIENTS
from service.quality import flag_names
from service.store.models import Event, Ping, Unit

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "patroli_stream"
RETRY_MS = 2000  # reconnection delay advised to EventSource clients
KEEPALIVE_S = 15.0  # idle time after which a comment line is sent
SAFETY_POLL_S = 5.0  # re-read even without a wake-up (a lost notification costs at most this)
MIN_POLL_S = 0.1  # least time between two reads of one client
EVENT_LIMIT = 500  # events read per poll
PING_LIMIT = 2000  # pings read per poll
SEND_TIMEOUT_S = 30.0  # a client whose socket does not drain for this long is dropped
GAP_RECHECK_S = 0.25  # how soon to look again while waiting for a missing id
GAP_MAX_WAIT_S = 30.0  # a missing id is given up on after this long, whatever else holds
READ_THREADS = 8  # concurrent database reads of all streams of one process
# A stream ends after this long and the client reconnects (after RETRY_MS, with Last-Event-ID,
# losing nothing): this bounds how long open streams can hold up a server's graceful shutdown.
MAX_STREAM_S = 300.0
# An open stream checks that its key still stands every PATROLI_KEY_CACHE_S, but never more
# often than this (a key cache of 0 would otherwise mean a lookup per poll).
MIN_KEY_CHECK_S = 1.0

T = TypeVar("T")


def notify(session: Session) -> None:
    """Wake the streams of every worker when this transaction commits (PostgreSQL only)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")


def _libpq_url(database_url: str) -> str | None:
    """The database URL as psycopg accepts it, or None when it is not PostgreSQL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Broker:
    """Wakes the waiting streams of one process when new data may have been committed."""

    def __init__(self, on_revocation: Callable[[], None] | None = None) -> None:
        # Called (from the listener thread) when another process revoked keys, and whenever
        # the listener (re)connects: a revocation may have been missed meanwhile.
        self._on_revocation = on_revocation
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._generation = 0
        self._scheduled = False
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def start(self, loop: asyncio.AbstractEventLoop, database_url: str | None = None) -> None:
        """Bind to the app's event loop; on PostgreSQL also listen for other workers' commits
        and key revocations."""
        self._loop = loop
        self._event = asyncio.Event()
        self._limiter = anyio.CapacityLimiter(READ_THREADS)
        self._stopping.clear()
        url = _libpq_url(database_url) if database_url else None
        if url is not None:
            self._listener = threading.Thread(
                target=self._listen, args=(url,), name="patroli-stream-listen", daemon=True
            )
            self._listener.start()

    @property
    def closed(self) -> bool:
        """Whether the broker was stopped: streams should end."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop listening and end the streams."""
        self._stopping.set()
        self.wake()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(5.0)

    def wake(self) -> None:
        """Tell waiting streams that new data was committed (safe from any thread)."""
        loop = self._loop
        if loop is None or self._scheduled:
            return
        self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._fire)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self._scheduled = False

    def _fire(self) -> None:
        self._scheduled = False
        self._generation += 1
        event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()

    def token(self) -> int:
        """The wake-up count: pass it to `wait` to also catch wake-ups since it was taken."""
        return self._generation

    async def wait(self, timeout: float, token: int | None = None) -> bool:
        """Wait for a wake-up (after `token`) or the timeout; True when woken."""
        if self.closed:
            return True
        if token is not None and token != self._generation:
            return True
        event = self._event
        if event is None:
            await asyncio.sleep(timeout)
            return False
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self, fn: Callable[[], T]) -> T:
        """Run a blocking read in a worker thread, at most READ_THREADS at a time."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(READ_THREADS)
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    def _listen(self, url: str) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    conn.execute(f"LISTEN {KEYS_CHANNEL}")
                    backoff = 0.5
                    self._revoked()  # revocations made while not listening
                    self.wake()  # commits made while not listening
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.2):
                            if note.channel == KEYS_CHANNEL:
                                self._revoked()
                            else:
                                self.wake()
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("stream listener lost the database (%s); reconnecting", exc)
                self.wake()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _revoked(self) -> None:
        if self._on_revocation is not None:
            try:
                self._on_revocation()
            except Exception:  # the listener must go on
                log.exception("key revocation handler failed")


# A message id: event id and ping id, ASCII digits (at most 19 each: 64-bit ids).
_CURSOR = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")


@dataclass(frozen=True)
class Cursor:
    """A stream position: the newest event id and ping id a client has seen."""

    event_id: int
    ping_id: int

    def __str__(self) -> str:
        return f"{self.event_id}-{self.ping_id}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        """A cursor from a message id `<event_id>-<ping_id>`."""
        match = _CURSOR.fullmatch(value.strip())
        if match is None:
            raise InvalidInput(f"{value[:60]!r} is not a stream position '<event_id>-<ping_id>'")
        return cls(int(match.group(1)), int(match.group(2)))


def current_cursor(session: Session) -> Cursor:
    """The position after everything stored now."""
    event_id = session.scalar(select(func.max(Event.id))) or 0
    ping_id = session.scalar(select(func.max(Ping.id))) or 0
    return Cursor(int(event_id), int(ping_id))


def message(kind: str, cursor: Cursor, data: dict[str, Any]) -> str:
    """One SSE message."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {cursor}\nevent: {kind}\ndata: {body}\n\n"


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@dataclass
class _Gap:
    missing: int  # the first id not (yet) visible
    seen_at: datetime  # database clock when it was first seen, after the read that saw it
    since: float  # monotonic time of the same


@dataclass
class Reader:
    """One client's position and filters; `poll` reads what is new (blocking, in a thread)."""

    cursor: Cursor
    unit_id: int | None = None
    types: tuple[str, ...] = ()
    positions: bool = True
    check_gaps: bool = False  # PostgreSQL: ids may become visible out of order
    gaps: dict[str, _Gap] = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        """Whether a missing id holds the stream back."""
        return bool(self.gaps)

    def poll(self, session: Session) -> tuple[list[str], bool]:
        """New messages in order, and whether more are ready to read at once."""
        settled = self._settled(session)
        event_top, events_full = self._horizon(session, "events", self.cursor.event_id, settled)
        ping_top = self.cursor.ping_id
        pings_full = False
        if self.positions:
            ping_top, pings_full = self._horizon(session, "pings", self.cursor.ping_id, settled)
        events: list[dict[str, Any]] = []
        if event_top > self.cursor.event_id:
            f = EventFilter(types=self.types, unit_id=self.unit_id, after_id=self.cursor.event_id)
            events = [e for e in query_events(session, f, EVENT_LIMIT) if e["id"] <= event_top]
            if len(events) == EVENT_LIMIT:
                event_top, events_full = events[-1]["id"], True
        pings: list[dict[str, Any]] = []
        if ping_top > self.cursor.ping_id:
            pings = self._pings(session, ping_top)
            if len(pings) == PING_LIMIT:
                ping_top, pings_full = pings[-1]["id"], True
        out = self._merge(events, pings)
        self.cursor = Cursor(event_top, ping_top)
        return out, events_full or pings_full

    def _merge(self, events: list[dict[str, Any]], pings: list[dict[str, Any]]) -> list[str]:
        """Both lists in id order, each event after the position that caused it."""
        out: list[str] = []
        event_id, ping_id = self.cursor.event_id, self.cursor.ping_id
        i = j = 0
        while i < len(events) or j < len(pings):
            take_event = j == len(pings) or (
                i < len(events) and (events[i]["ping_id"] or 0) < pings[j]["id"]
            )
            if take_event:
                event = events[i]
                event_id, i = event["id"], i + 1
                out.append(message(event["type"], Cursor(event_id, ping_id), event))
            else:
                position = pings[j]
                ping_id, j = position["id"], j + 1
                out.append(message("position", Cursor(event_id, ping_id), position))
        return out

    def _pings(self, session: Session, top: int) -> list[dict[str, Any]]:
        stmt = (
            select(
                Ping.id,
                Ping.unit_id,
                Unit.name,
                Ping.ts,
                Ping.lon,
                Ping.lat,
                Ping.speed_mps,
                Ping.heading,
                Ping.battery,
                Ping.flags,
            )
            .join(Unit, Unit.id == Ping.unit_id)
            .where(Ping.id > self.cursor.ping_id, Ping.id <= top)
            .where(ELIGIBLE)
        )
        if self.unit_id is not None:
            stmt = stmt.where(Ping.unit_id == self.unit_id)
        rows = session.execute(stmt.order_by(Ping.id).limit(PING_LIMIT))
        return [
            {
                "id": row.id,
                "unit_id": row.unit_id,
                "unit_name": row.name,
                "ts": _iso(row.ts),
                "lon": row.lon,
                "lat": row.lat,
                "speed_mps": row.speed_mps,
                "heading": row.heading,
                "battery": row.battery,
                "flags": flag_names(row.flags),
            }
            for row in rows
        ]

    def _horizon(
        self, session: Session, kind: str, after: int, settled: set[str]
    ) -> tuple[int, bool]:
        """The id up to which every row is visible or given up on, and whether the page was full."""
        model = Event if kind == "events" else Ping
        limit = EVENT_LIMIT if kind == "events" else PING_LIMIT
        ids = session.scalars(
            select(model.id).where(model.id > after).order_by(model.id).limit(limit)
        ).all()
        full = len(ids) == limit
        if not self.check_gaps:
            return (ids[-1] if ids else after), full
        expected = after + 1
        for row_id in ids:
            if row_id != expected:
                gap = self.gaps.get(kind)
                if gap is None or gap.missing != expected:
                    now = session.execute(select(func.clock_timestamp())).scalar_one()
                    self.gaps[kind] = _Gap(expected, now, time.monotonic())
                    return expected - 1, False
                if kind not in settled:
                    return expected - 1, False
                del self.gaps[kind]
                log.info("stream skips %s ids %d..%d (never committed)", kind, expected, row_id - 1)
            expected = row_id + 1
        self.gaps.pop(kind, None)
        return expected - 1, full

    def _settled(self, session: Session) -> set[str]:
        """The kinds whose missing id no open transaction can hold any more.

        Ingest reserves ping ids with nextval before it writes, so every open transaction is
        suspect, not only those that have written.
        """
        settled = set()
        for kind, gap in self.gaps.items():
            if time.monotonic() - gap.since > GAP_MAX_WAIT_S:
                settled.add(kind)
                continue
            open_writers = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state <> 'idle'"
                    " AND xact_start <= :seen_at"
                ),
                {"seen_at": gap.seen_at},
            )
            if not open_writers:
                settled.add(kind)
        return settled


class EventStream(StreamingResponse):
    """A text/event-stream response that drops a client whose socket stops draining."""

    media_type = "text/event-stream"

    async def stream_response(self, send: Send) -> None:
        """Send the stream, giving each write at most SEND_TIMEOUT_S to go out."""

        async def timed(msg: Message) -> None:
            await asyncio.wait_for(send(msg), SEND_TIMEOUT_S)

        body = self.body_iterator
        STREAM_CLIENTS.inc()
        try:
            await timed(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in body:
                data = chunk if isinstance(chunk, bytes) else str(chunk).encode(self.charset)
                await timed({"type": "http.response.body", "body": data, "more_body": True})
            await timed({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            # Returning without completing the response makes the server close the connection.
            log.warning("dropped a stream client that read nothing for %g s", SEND_TIMEOUT_S)
        finally:
            STREAM_CLIENTS.dec()
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
