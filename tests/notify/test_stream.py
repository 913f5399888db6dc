"""The live stream: positions and events over SSE, resuming, filters, keep-alive, wake-ups."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from shapely.geometry import Point
from sqlalchemy import select

from service.app import create_app
from service.config import Settings
from service.notify import stream as stream_module
from service.notify.stream import Broker, Cursor, EventStream, Reader, notify
from service.quality import EXCLUDED
from service.store.db import Store
from service.store.models import Event, Ping
from tests.conftest import ADMIN_KEY
from tests.helpers import T0, add_unit, along, live_app, ping

STREAM = "/api/v1/stream"


@dataclass
class Msg:
    """One SSE block: a message, a comment or a field-only block."""

    event: str | None = None
    id: str | None = None
    data: Any = None
    retry: int | None = None
    comment: str | None = None


class SSE:
    """A blocking reader of an SSE response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next_block(self, deadline: float) -> Msg:
        """The next block; fails after the deadline."""
        msg, fields = Msg(), False
        for line in self._lines:
            if time.monotonic() > deadline:
                raise AssertionError("stream deadline passed")
            if line == "":
                if fields:
                    return msg
                continue
            fields = True
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                msg.comment = value
            elif name == "event":
                msg.event = value
            elif name == "id":
                msg.id = value
            elif name == "data":
                msg.data = json.loads(value)
            elif name == "retry":
                msg.retry = int(value)
        raise AssertionError("stream ended")

    def messages(self, count: int, timeout: float = 3.0) -> list[Msg]:
        """The next `count` messages (comments skipped)."""
        deadline = time.monotonic() + timeout
        out: list[Msg] = []
        while len(out) < count:
            block = self.next_block(deadline)
            if block.event is not None:
                out.append(block)
        return out

    def positions(self, count: int, timeout: float = 3.0) -> list[Msg]:
        """The next `count` position messages (events skipped)."""
        deadline = time.monotonic() + timeout
        out: list[Msg] = []
        while len(out) < count:
            block = self.next_block(deadline)
            if block.event == "position":
                out.append(block)
        return out

    def quiet(self, seconds: float) -> list[Msg]:
        """Messages that arrive within `seconds` (the stream must send keep-alives meanwhile)."""
        deadline = time.monotonic() + seconds
        out: list[Msg] = []
        while time.monotonic() < deadline:
            block = self.next_block(deadline + 5)
            if block.event is not None:
                out.append(block)
        return out


@dataclass
class Live:
    """A running server, an admin client, and a direct store for inserting events."""

    app: FastAPI
    base: str
    http: httpx.Client
    store: Store

    @contextmanager
    def open(self, headers: dict[str, str] | None = None, **params: Any) -> Iterator[SSE]:
        """Connect to the stream; returns once its first block (the retry advice) is read."""
        params.setdefault("keepalive", 0.3)
        with httpx.Client(base_url=self.base, timeout=10) as c:
            h = {"Authorization": f"Bearer {ADMIN_KEY}", **(headers or {})}
            with c.stream("GET", STREAM, params=params, headers=h) as r:
                assert r.status_code == 200, r.read()
                sse = SSE(r)
                first = sse.next_block(time.monotonic() + 5)
                assert first.retry == 2000 and first.id is not None
                yield sse

    def unit(self, device_id: str) -> int:
        """Create a unit; its id."""
        r = self.http.post(
            "/api/v1/units", json={"name": device_id.upper(), "device_id": device_id}
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def post(self, *pings: dict[str, Any]) -> None:
        """Post pings through the API."""
        r = self.http.post("/api/v1/pings", json=list(pings))
        assert r.status_code == 200, r.text

    def event(self, unit_id: int, type_: str = "overspeed", seconds: float = 0) -> int:
        """Store an event directly, as the event producer does, and wake the streams."""
        lon, lat = along(100)
        with self.store.write() as session:
            event = Event(
                type=type_,
                unit_id=unit_id,
                ts=T0 + timedelta(seconds=seconds),
                lon=lon,
                lat=lat,
                details={"speed_mps": 25.0},
            )
            session.add(event)
            session.flush()
            notify(session)
            event_id = event.id
        self.app.state.broker.wake()
        return event_id

    def expected(
        self, after: Cursor, unit_id: int | None = None, types: tuple[str, ...] = ()
    ) -> tuple[list[int], list[int]]:
        """Event ids and eligible ping ids stored after a position, matching the filters."""
        with self.store.read() as session:
            events = select(Event.id).where(Event.id > after.event_id).order_by(Event.id)
            pings = select(Ping.id).where(
                Ping.id > after.ping_id, Ping.flags.op("&")(int(EXCLUDED)) == 0
            )
            if unit_id is not None:
                events = events.where(Event.unit_id == unit_id)
                pings = pings.where(Ping.unit_id == unit_id)
            if types:
                events = events.where(Event.type.in_(types))
            return list(session.scalars(events)), list(session.scalars(pings.order_by(Ping.id)))


@contextmanager
def _served(settings: Settings) -> Iterator[Live]:
    """The app served by uvicorn (the stream needs a real server)."""
    app = create_app(settings)
    store = Store.from_url(settings.database_url)
    with live_app(app) as (base, http):
        try:
            yield Live(app, base, http, store)
        finally:
            store.dispose()


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    """The app served by uvicorn, with the default settings."""
    with _served(settings) as served:
        yield served


def _split(messages: list[Msg]) -> tuple[list[int], list[int]]:
    events = [m.data["id"] for m in messages if m.event != "position"]
    pings = [m.data["id"] for m in messages if m.event == "position"]
    return events, pings


def test_positions_arrive_within_a_second(live: Live) -> None:
    uid = live.unit("u1")
    with live.open() as sse:
        live.post(ping("u1", 100, 0), ping("u1", 110, 5))
        posted = time.monotonic()
        first, second = sse.positions(2, timeout=1.0)
        assert time.monotonic() - posted < 1.0
    assert (first.event, second.event) == ("position", "position")
    assert first.data["unit_id"] == uid and first.data["unit_name"] == "U1"
    assert first.data["ts"] == "2024-11-26T23:00:00Z"
    assert first.data["flags"] == []
    assert {"lon", "lat", "speed_mps", "heading"} <= first.data.keys()
    assert second.data["id"] > first.data["id"]
    assert Cursor.parse(str(second.id)).ping_id == second.data["id"]


def test_excluded_pings_are_not_sent(live: Live) -> None:
    live.unit("u1")
    with live.open() as sse:
        live.post(ping("u1", 100, 0, accuracy_m=5000), ping("u1", 110, 5))
        [only] = sse.positions(1)
        assert only.data["ts"] == "2024-11-26T23:00:05Z"
        assert [m for m in sse.quiet(0.5) if m.event == "position"] == []


def test_events_arrive(live: Live) -> None:
    uid = live.unit("u1")
    with live.open(positions="false") as sse:
        event_id = live.event(uid, "overspeed")
        [msg] = sse.messages(1, timeout=1.0)
    assert msg.event == "overspeed"
    assert msg.data["id"] == event_id and msg.data["unit_name"] == "U1"
    assert msg.data["details"] == {"speed_mps": 25.0}
    assert msg.data["position"]["type"] == "Point"
    assert Cursor.parse(str(msg.id)).event_id == event_id


def test_resume_delivers_exactly_what_was_missed(live: Live) -> None:
    uid = live.unit("u1")
    with live.open() as sse:
        live.post(ping("u1", 100, 0))
        live.event(uid, "overspeed", 1)
        want_events, want_pings = live.expected(Cursor(0, 0))
        seen = sse.messages(len(want_events) + len(want_pings))
    last = Cursor.parse(str(seen[-1].id))
    assert _split(seen) == (want_events, want_pings)
    # While disconnected: more pings and events, interleaved.
    live.post(ping("u1", 120, 10), ping("u1", 130, 15))
    live.event(uid, "stopped", 16)
    live.post(ping("u1", 140, 20))
    live.event(uid, "moving", 21)
    missed_events, missed_pings = live.expected(last)
    assert len(missed_events) >= 2 and len(missed_pings) == 3
    with live.open(headers={"Last-Event-ID": str(last)}) as sse:
        got = sse.messages(len(missed_events) + len(missed_pings))
        assert sse.quiet(0.8) == []
    assert _split(got) == (missed_events, missed_pings)
    cursors = [Cursor.parse(str(m.id)) for m in got]
    assert cursors == sorted(cursors, key=lambda c: (c.event_id, c.ping_id))
    assert cursors[-1] == Cursor(missed_events[-1], missed_pings[-1])
    # The query parameter resumes too (the header wins when both are sent).
    with live.open(last_event_id=str(last)) as sse:
        again = sse.messages(len(got))
    assert [(m.event, m.id) for m in again] == [(m.event, m.id) for m in got]


def test_fresh_client_gets_only_new_data(live: Live) -> None:
    uid = live.unit("u1")
    live.post(ping("u1", 100, 0))
    live.event(uid)
    with live.open() as sse:
        assert sse.quiet(0.6) == []
        live.post(ping("u1", 110, 5))
        [msg] = sse.positions(1)
    assert msg.data["ts"] == "2024-11-26T23:00:05Z"


def test_unit_and_type_filters(live: Live) -> None:
    u1, u2 = live.unit("u1"), live.unit("u2")
    with (
        live.open(unit=u1) as by_unit,
        live.open(type="stopped,moving", positions="false") as by_type,
    ):
        live.post(ping("u2", 100, 0), ping("u1", 100, 1), ping("u2", 110, 5))
        live.event(u2, "stopped", 6)
        live.event(u1, "overspeed", 7)
        live.event(u1, "moving", 8)
        unit_events, unit_pings = live.expected(Cursor(0, 0), unit_id=u1)
        type_events, _ = live.expected(Cursor(0, 0), types=("stopped", "moving"))
        got_unit = by_unit.messages(len(unit_events) + len(unit_pings))
        got_type = by_type.messages(len(type_events))
        assert by_unit.quiet(0.5) == [] and by_type.quiet(0.1) == []
    assert _split(got_unit) == (unit_events, unit_pings)
    assert {m.data["unit_id"] for m in got_unit} == {u1}
    assert _split(got_type) == (type_events, [])
    assert {m.event for m in got_type} == {"stopped", "moving"}


def test_keepalive_headers_and_query_key(live: Live) -> None:
    with (
        httpx.Client(base_url=live.base, timeout=10) as c,
        c.stream("GET", STREAM, params={"key": ADMIN_KEY, "keepalive": 0.2}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        sse = SSE(r)
        deadline = time.monotonic() + 2
        assert sse.next_block(deadline).retry == 2000
        assert sse.next_block(deadline).comment == "keep-alive"


def test_streams_end_after_their_maximum_life(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "MAX_STREAM_S", 0.3)
    with live.open(keepalive=60) as sse:
        started = time.monotonic()
        with pytest.raises(AssertionError, match="stream ended"):
            sse.next_block(started + 5)
        assert time.monotonic() - started < 2


def test_refusals(live: Live) -> None:
    with httpx.Client(base_url=live.base, timeout=10) as anon:
        assert anon.get(STREAM).status_code == 401
        assert anon.get(STREAM, params={"key": "wrong"}).status_code == 401
    assert live.http.get(STREAM, params={"type": "nonsense"}).status_code == 422
    assert live.http.get(STREAM, params={"last_event_id": "x-1"}).status_code == 422
    assert live.http.get(STREAM, headers={"Last-Event-ID": "12"}).status_code == 422
    assert live.http.get(STREAM, params={"unit": 999}).status_code == 404


def test_cursor_beyond_the_log_is_clamped(live: Live) -> None:
    live.unit("u1")
    with live.open(headers={"Last-Event-ID": "1000-1000"}) as sse:
        live.post(ping("u1", 100, 0))
        [msg] = sse.positions(1)
    assert msg.data["ts"] == "2024-11-26T23:00:00Z"


def test_notify_wakes_the_broker_of_another_worker(settings: Settings, backend: str) -> None:
    store = Store.from_url(settings.database_url)

    def commit_with_notify() -> None:
        with store.write() as session:
            notify(session)

    async def scenario() -> bool:
        broker = Broker()
        broker.start(asyncio.get_running_loop(), settings.database_url)
        try:
            if backend == "sqlite":
                await asyncio.to_thread(commit_with_notify)  # a no-op there
                return await broker.wait(0.3)
            assert await broker.wait(5.0), "listener did not connect"
            token = broker.token()
            await asyncio.to_thread(commit_with_notify)
            return await broker.wait(5.0, token)
        finally:
            broker.stop()

    try:
        woke = asyncio.run(scenario())
    finally:
        store.dispose()
    assert woke is (backend != "sqlite")


def test_wake_before_wait_is_not_lost() -> None:
    async def scenario() -> tuple[bool, bool]:
        broker = Broker()
        broker.start(asyncio.get_running_loop())
        token = broker.token()
        broker.wake()
        await asyncio.sleep(0)
        return await broker.wait(0.5, token), await broker.wait(0.05, broker.token())

    assert asyncio.run(scenario()) == (True, False)


def test_client_that_stops_reading_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "SEND_TIMEOUT_S", 0.2)
    closed: list[bool] = []

    async def body() -> AsyncIterator[str]:
        try:
            while True:
                yield "data: x\n\n"
        finally:
            closed.append(True)

    async def scenario() -> float:
        sent = 0
        stall = asyncio.Event()

        async def send(message: Any) -> None:
            nonlocal sent
            sent += 1
            if sent > 3:
                await stall.wait()  # the socket stopped draining

        async def receive() -> Any:
            await stall.wait()

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
        started = time.monotonic()
        await asyncio.wait_for(EventStream(body())(scope, receive, send), 5.0)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2.0
    assert closed == [True]


def test_reader_waits_for_ids_committed_out_of_order(settings: Settings, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite commits ids in order")
    store = Store.from_url(settings.database_url)
    try:
        with store.write() as session:
            unit = add_unit(session, "U1", "u1")
            uid = unit.id

        def row(seconds: int) -> Ping:
            lon, lat = along(100 + seconds)
            return Ping(
                unit_id=uid,
                ts=T0 + timedelta(seconds=seconds),
                lon=lon,
                lat=lat,
                geom=Point(lon, lat),
                flags=0,
            )

        def poll(reader: Reader) -> list[int]:
            with store.read() as session:
                messages, _ = reader.poll(session)
            return [json.loads(m.split("data: ", 1)[1])["id"] for m in messages]

        for outcome in ("commit", "rollback"):
            with store.read() as session:
                reader = Reader(stream_module.current_cursor(session), check_gaps=True)
            slow = store.engine.connect()
            tx = slow.begin()
            with store._sessions(bind=slow) as held:
                held.add(row(1 if outcome == "commit" else 3))
                held.flush()  # holds the lower id, not yet committed
                with store.write() as session:
                    later = row(2 if outcome == "commit" else 4)
                    session.add(later)
                assert poll(reader) == [] and reader.waiting
                assert poll(reader) == []
                if outcome == "commit":
                    tx.commit()
                else:
                    tx.rollback()
            slow.close()
            got = poll(reader)
            if outcome == "commit":
                assert got == [later.id - 1, later.id]
            else:
                assert got == [later.id]
            assert not reader.waiting
    finally:
        store.dispose()


def _viewer_key(http: httpx.Client, name: str = "wall screen") -> tuple[str, int]:
    r = http.post("/api/v1/keys", json={"name": name, "role": "viewer"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"]), int(r.json()["id"])


def _ends_within(sse: SSE, seconds: float) -> float:
    """Seconds until the server closes the stream; fails if it is still open after `seconds`."""
    started = time.monotonic()
    with pytest.raises(AssertionError, match="stream ended"):
        while True:
            sse.next_block(started + seconds)
    return time.monotonic() - started


def test_revoking_a_key_ends_its_streams_at_once(make_settings: Any) -> None:
    # A long key cache: only the revocation itself can end the stream this quickly.
    with _served(make_settings(key_cache_s=60)) as live:
        key, key_id = _viewer_key(live.http)
        other, _ = _viewer_key(live.http, "duty officer")
        with (
            live.open(headers={"Authorization": f"Bearer {key}"}) as revoked,
            live.open(key=other, headers={"Authorization": ""}) as kept,
        ):
            assert live.http.delete(f"/api/v1/keys/{key_id}").status_code == 204
            assert _ends_within(revoked, 2.0) < 2.0
            # The other key's stream goes on.
            uid = live.unit("u1")
            live.post(ping("u1", 100, 0))
            [msg] = kept.positions(1)
            assert msg.data["unit_id"] == uid
        r = httpx.get(f"{live.base}{STREAM}", params={"key": key}, timeout=10)
        assert r.status_code == 401


def test_revocation_in_another_instance_ends_the_stream_within_the_key_cache_time(
    make_settings: Any,
) -> None:
    settings = make_settings(key_cache_s=1.5)
    with _served(settings) as a, _served(settings) as b:
        key, key_id = _viewer_key(a.http)
        with a.open(headers={"Authorization": f"Bearer {key}"}) as sse:
            time.sleep(0.5)
            assert b.http.delete(f"/api/v1/keys/{key_id}").status_code == 204
            # At most one key-cache period (1.5 s) and one poll later.
            assert _ends_within(sse, 3.0) < 3.0
        r = httpx.get(f"{a.base}{STREAM}", params={"key": key}, timeout=10)
        assert r.status_code == 401


def test_on_postgresql_a_revocation_in_another_instance_applies_at_once(
    make_settings: Any,
) -> None:
    """The revoking transaction's NOTIFY empties every instance's key cache: neither a key
    cached for ten minutes nor an open stream outlives a revocation made elsewhere."""
    settings = make_settings(key_cache_s=600)
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("revocations are broadcast with PostgreSQL's NOTIFY")
    with _served(settings) as a, _served(settings) as b:
        uid = a.unit("u1")
        secret = b.http.post(f"/api/v1/units/{uid}/secret").json()["device_secret"]
        auth = {"Authorization": f"Bearer {secret}"}
        r = httpx.post(f"{a.base}/api/v1/pings", json=ping("u1", 100, 0), headers=auth)
        assert r.status_code == 200, r.text  # the tracker's key is now cached by a
        key, key_id = _viewer_key(a.http)
        with a.open(headers={"Authorization": f"Bearer {key}"}) as sse:
            time.sleep(0.5)
            assert b.http.delete(f"/api/v1/keys/{key_id}").status_code == 204
            b.http.post(f"/api/v1/units/{uid}/secret").raise_for_status()
            assert _ends_within(sse, 3.0) < 3.0
        r = httpx.post(f"{a.base}/api/v1/pings", json=ping("u1", 200, 10), headers=auth)
        assert r.status_code == 401, r.text


def test_deleting_a_unit_or_rotating_its_secret_revokes_only_its_keys(
    make_settings: Any,
) -> None:
    with _served(make_settings(key_cache_s=60)) as live:
        uid = live.unit("u1")
        secret = live.http.post(f"/api/v1/units/{uid}/secret").json()["device_secret"]
        # A device secret is a tracker key: it posts pings and never opens a stream.
        tracker = httpx.get(f"{live.base}{STREAM}", params={"key": secret}, timeout=10)
        assert tracker.status_code == 403
        key, _ = _viewer_key(live.http)
        with live.open(headers={"Authorization": f"Bearer {key}"}) as sse:
            live.http.post(f"/api/v1/units/{uid}/secret").raise_for_status()
            live.http.delete(f"/api/v1/units/{uid}").raise_for_status()
            assert [m for m in sse.quiet(1.0) if m.event == "position"] == []
        r = httpx.post(
            f"{live.base}/api/v1/pings",
            json=ping("u1", 100, 0),
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
        assert r.status_code == 401
