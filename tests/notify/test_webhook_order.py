"""Webhook order: a unit's events reach a receiver in the order they were stored, also after the
receiver was down, with several dispatchers, and past a delivery that died."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.config import Settings
from service.notify.webhooks import WebhookDispatcher, enqueue
from service.routes import webhooks as webhook_routes
from service.store.db import Store
from service.store.models import Event, Unit, WebhookDelivery
from tests.notify.test_webhooks import (
    LOCAL,
    SECRET,
    T0,
    Clock,
    deliveries,
    dispatching,
    register,
    store_of,
)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings allowing webhooks to the local test receiver."""
    return make_settings(webhook_allow=LOCAL)


@pytest.fixture
def api(client: TestClient) -> TestClient:
    """The admin client, with the webhook routes mounted if the app does not have them yet."""
    app: Any = client.app
    if not any(getattr(r, "path", "") == "/api/v1/webhooks" for r in app.routes):
        app.include_router(webhook_routes.router)
    return client


@dataclass
class Receiver:
    """A receiver on a fixed port: refuses connections (nothing listens) until it comes back;
    then answers 503 while `busy`, else 200, except 503 always to the events in `reject`."""

    sock: socket.socket
    busy: bool = False
    delay_s: float = 0.0
    reject: set[int] = field(default_factory=set)
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}/hook"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            event_id = json.loads(body)["id"]
            with self.lock:
                code = 503 if self.busy or event_id in self.reject else 200
                self.received.append((headers, body, code))
            if self.delay_s:
                time.sleep(self.delay_s)  # blocks this receiver's loop: one request at a time
            return Response(status_code=code)

        return app

    def come_back(self) -> None:
        """Start listening on the port that refused connections so far."""
        server = uvicorn.Server(uvicorn.Config(self.app(), log_level="warning", access_log=False))
        self.thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]})
        self.thread.daemon = True
        self.server = server
        self.thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "receiver not up"
            time.sleep(0.02)

    def events(self, accepted_only: bool = False) -> list[int]:
        """The event ids of the requests, in the order they arrived."""
        with self.lock:
            return [
                json.loads(b)["id"] for _, b, c in self.received if c == 200 or not accepted_only
            ]

    def accepted(self) -> Counter[str]:
        """How often each delivery id was answered 200."""
        with self.lock:
            return Counter(h["x-patroli-delivery"] for h, _, c in self.received if c == 200)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that is down (its port refuses connections) until `come_back()`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    rec = Receiver(sock)
    try:
        yield rec
    finally:
        if rec.server is not None and rec.thread is not None:
            rec.server.should_exit = True
            rec.thread.join(10)
        sock.close()


def make_units(store: Store, n: int) -> list[int]:
    """`n` new units; their ids."""
    with store.write() as session:
        units = [
            Unit(name=f"Polwan {i:02d}", device_id=f"ord-{time.monotonic_ns()}-{i}")
            for i in range(n)
        ]
        session.add_all(units)
        session.flush()
        return [u.id for u in units]


def fire(store: Store, unit_id: int | None, kind: str, now: datetime) -> int:
    """Store one event (and enqueue its deliveries) in one transaction; its id."""
    with store.write() as session:
        event = Event(type=kind, unit_id=unit_id, ts=now, lon=116.83, lat=-1.24)
        session.add(event)
        session.flush()
        enqueue(session, [event], now=now)
        return event.id


def check_exactly_once_in_order(
    rec: Receiver, api: TestClient, hook_id: int, fired: dict[int, list[int]]
) -> None:
    """Every delivery accepted once, signed, and each unit's requests in the order of its events."""
    rows = deliveries(api, hook_id, limit=1000)
    assert {r["status"] for r in rows} == {"delivered"}
    assert rec.accepted() == Counter({str(r["id"]): 1 for r in rows})
    assert len(rows) == sum(len(ids) for ids in fired.values())
    for headers, body, _ in rec.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-patroli-signature"], expected)
        assert str(json.loads(body)["delivery_id"]) == headers["x-patroli-delivery"]
    unit_of = {e: u for u, ids in fired.items() for e in ids}
    seen: dict[int, list[int]] = defaultdict(list)
    accepted: dict[int, list[int]] = defaultdict(list)
    for event_id in rec.events():
        seen[unit_of[event_id]].append(event_id)
    for event_id in rec.events(accepted_only=True):
        accepted[unit_of[event_id]].append(event_id)
    for unit, ids in fired.items():
        assert accepted[unit] == ids, unit  # each event once, in the order it was stored
        assert seen[unit] == sorted(seen[unit]), unit  # no attempt ever overtook an older one


def outage(
    rec: Receiver, store: Store, dispatcher: WebhookDispatcher, clock: Clock, units: list[int]
) -> dict[int, list[int]]:
    """While the receiver refuses connections, then answers 503: events of the units are fired
    in turn, 15 s apart, with a dispatcher pass after each. Returns each unit's event ids."""
    fired: dict[int, list[int]] = {u: [] for u in units}
    kinds = ["geofence_enter", "stopped", "moving", "off_route", "geofence_exit", "online"]
    for round_ in range(len(kinds)):
        if round_ == 3:
            rec.busy = True
            rec.come_back()  # listening again, but answering 503
        for unit in units:
            fired[unit].append(fire(store, unit, kinds[round_], clock()))
            dispatcher.process_due()
            clock.advance(timedelta(seconds=5))
    return fired


def test_receiver_down_then_back_gets_each_units_events_in_order(
    api: TestClient, settings: Settings, receiver: Receiver
) -> None:
    rec = receiver
    hook = register(api, rec.url)
    store = store_of(api)
    units = make_units(store, 3)
    clock = Clock(T0)
    with dispatching(store, settings, clock=clock) as dispatcher:
        fired = outage(rec, store, dispatcher, clock, units)
        assert rec.received, "heads were tried while the receiver answered 503"
        heads = {ids[0] for ids in fired.values()}
        assert set(rec.events()) <= heads, "only the head of each unit's line was tried"
        rec.busy = False
        passes = 0
        while deliveries(api, hook["id"], status="pending"):
            clock.advance(timedelta(seconds=30))
            dispatcher.process_due()
            passes += 1
            assert passes < 200
    check_exactly_once_in_order(rec, api, hook["id"], fired)
    # Once a line's head is accepted the rest follow in the same pass, without their own backoff.
    rows = deliveries(api, hook["id"], limit=1000)
    by_event = {r["event_id"]: r for r in rows}
    for ids in fired.values():
        assert len({by_event[e]["delivered_at"] for e in ids}) == 1
        assert [by_event[e]["attempts"] for e in ids[1:]] == [1] * (len(ids) - 1)


def test_two_dispatchers_drain_in_order_without_duplicates(
    api: TestClient, settings: Settings, receiver: Receiver
) -> None:
    rec = receiver
    hook = register(api, rec.url)
    store = store_of(api)
    units = make_units(store, 3)
    clock = Clock(T0)
    with dispatching(store, settings, clock=clock) as dispatcher:
        fired = outage(rec, store, dispatcher, clock, units)
    rec.busy = False
    rec.delay_s = 0.005
    clock.advance(timedelta(hours=1))  # every head's backoff is over
    # A second instance: its own engine and store on the same database.
    other_store = Store.from_url(settings.database_url)
    workers = [
        WebhookDispatcher(store, settings, clock=clock, batch=2),
        WebhookDispatcher(other_store, settings, clock=clock, batch=2),
    ]
    sent = [0, 0]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def drain(i: int) -> None:
        try:
            start.wait()
            for _ in range(50):
                sent[i] += workers[i].process_due()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.stop()
    other_store.engine.dispose()
    assert not errors, errors
    assert sum(sent) == sum(len(ids) for ids in fired.values())
    assert all(sent), sent  # both instances sent some
    check_exactly_once_in_order(rec, api, hook["id"], fired)


def test_only_the_head_of_a_line_is_claimed(
    api: TestClient, settings: Settings, backend: str
) -> None:
    hook = register(api, "http://127.0.0.1:9/hook")
    store = store_of(api)
    a, b = make_units(store, 2)
    clock = Clock(T0)
    line_a = [fire(store, a, "moving", T0) for _ in range(3)]
    line_b = [fire(store, b, "stopped", T0) for _ in range(2)]
    no_unit = [fire(store, None, "online", T0) for _ in range(2)]
    worker = WebhookDispatcher(store, settings, clock=clock)
    try:
        if backend == "postgis":
            with store.write() as session:  # another instance is mid-claim of unit a's head
                head = session.scalars(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.event_id == line_a[0])
                    .with_for_update()
                ).one()
                assert head.webhook_id == hook["id"]
                claimed = {j.delivery_id for j in worker.claim_due(clock())}
                # Its line is skipped: never the next one behind the locked head.
                assert _events(store, claimed) == {line_b[0], no_unit[0]}
            assert _events(store, {j.delivery_id for j in worker.claim_due(clock())}) == {line_a[0]}
        else:
            claimed = {j.delivery_id for j in worker.claim_due(clock())}
            assert _events(store, claimed) == {line_a[0], line_b[0], no_unit[0]}
        # The heads are leased (still pending): their lines are blocked until they settle.
        assert worker.claim_due(clock()) == []
        clock.advance(worker.lease(3) + timedelta(seconds=1))
        claimed = {j.delivery_id for j in worker.claim_due(clock())}
        assert _events(store, claimed) == {line_a[0], line_b[0], no_unit[0]}
    finally:
        worker.stop()


def _events(store: Store, delivery_ids: set[int]) -> set[int]:
    with store.read() as session:
        return set(
            session.scalars(
                select(WebhookDelivery.event_id).where(WebhookDelivery.id.in_(delivery_ids))
            )
        )


def test_a_dead_head_does_not_block_its_line(
    api: TestClient, make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    rec = receiver
    rec.come_back()
    hook = register(api, rec.url)
    store = store_of(api)
    a, b = make_units(store, 2)
    line_a = [fire(store, a, kind, T0) for kind in ("overspeed", "stopped", "moving")]
    line_b = [fire(store, b, "online", T0)]
    rec.reject.add(line_a[0])  # the receiver never accepts unit a's first event
    # Three minutes of retries: attempts at 0, 10 s, 40 s and 100 s; the next (220 s) is too late.
    settings = make_settings(webhook_retry_hours=3 / 60, webhook_allow=LOCAL)
    clock = Clock(T0)
    with dispatching(store, settings, clock=clock) as dispatcher:
        assert dispatcher.process_due() == 2  # the heads: a's fails, b's is accepted
        for delay in (10, 30, 60):
            assert dispatcher.process_due() == 0  # a's line waits for its head
            clock.advance(timedelta(seconds=delay))
            sent = dispatcher.process_due()
        assert sent == 3  # the head's last attempt, then the rest of its line at once
    by_event = {r["event_id"]: r for r in deliveries(api, hook["id"])}
    dead = by_event[line_a[0]]
    assert dead["status"] == "dead" and dead["attempts"] == 4
    for event_id in line_a[1:] + line_b:
        row = by_event[event_id]
        assert row["status"] == "delivered" and row["attempts"] == 1
    assert rec.events() == [line_a[0], line_b[0], line_a[0], line_a[0], line_a[0], *line_a[1:]]
    assert sorted(rec.accepted().values()) == [1, 1, 1]


def test_a_waiting_backlog_is_polled_without_holding_up_writers(
    api: TestClient, settings: Settings
) -> None:
    register(api, "http://127.0.0.1:9/hook")
    store = store_of(api)
    (unit,) = make_units(store, 1)
    clock = Clock(T0)
    line = [fire(store, unit, "moving", T0) for _ in range(3)]
    worker = WebhookDispatcher(store, settings, clock=clock)
    try:
        assert [_events(store, {j.delivery_id}) for j in worker.claim_due(clock())] == [{line[0]}]
        claimed: list[Any] = []
        with store.write() as session:  # a writer (ingest) holds the database's write lock
            session.add(Unit(name="Polwan 99", device_id=f"ord-{time.monotonic_ns()}"))
            session.flush()
            poll = threading.Thread(target=lambda: claimed.append(worker.claim_due(clock())))
            poll.start()
            poll.join(5)
            # The poll found nothing due (the rest wait behind the leased head) without
            # waiting for the writer.
            assert not poll.is_alive()
        assert claimed == [[]]
    finally:
        worker.stop()
