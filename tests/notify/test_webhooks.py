"""Webhooks: subscriptions API, signed delivery to a real receiver, retries, restarts."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from service.config import Settings
from service.notify.webhooks import (
    RETRY_SCHEDULE,
    WebhookDispatcher,
    enqueue,
    next_delay,
    sign,
)
from service.routes import webhooks as webhook_routes
from service.store.db import Store
from service.store.models import Event, Unit, WebhookAttempt, WebhookDelivery
from tests.helpers import serve_app

# Far in the future, so a dispatcher started by the app's lifespan (real clock) never finds the
# deliveries these tests drive with their own clock.
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=400)
SECRET = "receiver-secret-123"
# The test receivers listen on the loopback address, which the default policy refuses.
LOCAL = "127.0.0.1"
PUBLIC = "93.184.215.14"  # a global address the fake resolver gives public names


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings allowing webhooks to the local test receivers."""
    return make_settings(webhook_allow=LOCAL)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """Names the resolver answers with given addresses: each lookup of a name takes the next
    answer while more than one is left. Other names resolve as usual."""
    answers: dict[str, list[list[str]]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        name = name.lower().rstrip(".") if isinstance(name, str) else name  # as DNS does
        if name not in answers:
            return real(host, port, *args, **kwargs)
        queue = answers[name]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        number = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, number, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, number))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def api(client: TestClient) -> TestClient:
    """The admin client, with the webhook routes mounted if the app does not have them yet."""
    app: Any = client.app
    if not any(getattr(r, "path", "") == "/api/v1/webhooks" for r in app.routes):
        app.include_router(webhook_routes.router)
    return client


@dataclass
class Receiver:
    """A webhook receiver: answers 503 to the first `fail_first` attempts of each delivery."""

    fail_first: int = 0
    fail_all: bool = False
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            delivery = headers["x-patroli-delivery"]
            with self.lock:
                seen = sum(1 for h, _, _ in self.received if h["x-patroli-delivery"] == delivery)
                code = 503 if self.fail_all or seen < self.fail_first else 200
                self.received.append((headers, body, code))
            return Response(status_code=code, content=b"busy" if code != 200 else b"ok")

        return app

    def accepted(self) -> Counter[str]:
        """How often each delivery id was answered 200."""
        with self.lock:
            return Counter(h["x-patroli-delivery"] for h, _, c in self.received if c == 200)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A running receiver and its hook URL."""
    rec = Receiver()
    with serve_app(rec.app()) as base:
        yield rec, f"{base}/hook"


class Clock:
    """A settable clock for the dispatcher."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def store_of(api: TestClient) -> Store:
    """The app's store."""
    app: Any = api.app
    store: Store = app.state.store
    return store


def add_events(
    store: Store, types: list[str], now: datetime = T0, *, own_units: bool = False
) -> list[int]:
    """Store events of a unit (or each of its own unit, so each delivery is the head of its
    own line) and enqueue their webhook deliveries in one transaction."""
    with store.write() as session:
        units = [
            Unit(name="Polwan 01", device_id=f"dev-{time.monotonic_ns()}-{i}")
            for i in range(len(types) if own_units else 1)
        ]
        session.add_all(units)
        session.flush()
        events = [
            Event(
                type=t,
                unit_id=units[i % len(units)].id,
                ts=now,
                lon=116.83,
                lat=-1.24,
                details={"n": i},
            )
            for i, t in enumerate(types)
        ]
        session.add_all(events)
        session.flush()
        enqueue(session, events, now=now)
        return [e.id for e in events]


def hook_with_events(
    api: TestClient, url: str, types: list[str], *, own_units: bool = False
) -> tuple[dict[str, Any], Store, list[int]]:
    """A webhook registered for `url`, then events enqueued: the hook, the store, the event ids."""
    hook = register(api, url)
    store = store_of(api)
    return hook, store, add_events(store, types, own_units=own_units)


@contextmanager
def dispatching(store: Store, settings: Settings, **options: Any) -> Iterator[WebhookDispatcher]:
    """A webhook dispatcher, stopped afterwards."""
    dispatcher = WebhookDispatcher(store, settings, **options)
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def register(api: TestClient, url: str, **extra: Any) -> dict[str, Any]:
    r = api.post("/api/v1/webhooks", json={"url": url, "secret": SECRET, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def deliveries(api: TestClient, webhook_id: int, **params: Any) -> list[dict[str, Any]]:
    r = api.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def check_signatures(rec: Receiver) -> None:
    for headers, body, _ in rec.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-patroli-signature"], expected)
        assert headers["content-type"] == "application/json"
        payload = json.loads(body)
        assert str(payload["delivery_id"]) == headers["x-patroli-delivery"]
        assert payload["type"] == headers["x-patroli-event"]


# ---- unit-level ----------------------------------------------------------------------------


def test_sign_is_hmac_sha256() -> None:
    body = b'{"a":1}'
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_retry_schedule_grows_and_covers_a_day() -> None:
    delays = [next_delay(n) for n in range(1, 40)]
    assert delays[0] == timedelta(seconds=10)
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == RETRY_SCHEDULE[-1] == timedelta(hours=1)
    assert sum(delays, timedelta()) > timedelta(hours=24)


# ---- API -----------------------------------------------------------------------------------


def test_crud_and_validation(api: TestClient, fake_dns: dict[str, list[list[str]]]) -> None:
    fake_dns["ops.example"] = [[PUBLIC]]
    r = api.post("/api/v1/webhooks", json={"url": "https://ops.example/hook"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["secret"]) >= 32
    assert created["event_types"] == [] and created["active"] is True
    other = register(api, f"http://{PUBLIC}:8080/x", event_types=["offline", "offline", "online"])
    assert other["event_types"] == ["offline", "online"]
    assert other["secret"] == SECRET

    listed = api.get("/api/v1/webhooks").json()
    assert [w["id"] for w in listed] == [created["id"], other["id"]]
    assert all("secret" not in w for w in listed)
    one = api.get(f"/api/v1/webhooks/{created['id']}")
    assert one.status_code == 200 and "secret" not in one.json()

    for bad in ("ftp://x/y", "not a url", "http://", "/relative", "http://h:99999/"):
        r = api.post("/api/v1/webhooks", json={"url": bad})
        assert r.status_code == 422, (bad, r.text)
    r = api.post("/api/v1/webhooks", json={"url": "http://h/", "event_types": ["teleported"]})
    assert r.status_code == 422 and "teleported" in r.json()["detail"]
    r = api.post("/api/v1/webhooks", json={"url": "http://h/", "secret": "short"})
    assert r.status_code == 422
    r = api.get(f"/api/v1/webhooks/{created['id']}/deliveries", params={"status": "lost"})
    assert r.status_code == 422

    assert api.delete(f"/api/v1/webhooks/{created['id']}").status_code == 204
    assert api.get(f"/api/v1/webhooks/{created['id']}").status_code == 404
    assert api.delete(f"/api/v1/webhooks/{created['id']}").status_code == 404
    assert api.get(f"/api/v1/webhooks/{created['id']}/deliveries").status_code == 404
    assert api.post("/api/v1/webhooks/deliveries/999/redeliver").status_code == 404


def test_admin_only(api: TestClient) -> None:
    r = api.get("/api/v1/webhooks", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_enqueue_filters_by_event_type(api: TestClient) -> None:
    store = store_of(api)
    every = register(api, "http://127.0.0.1:9/all")
    offline = register(api, "http://127.0.0.1:9/off", event_types=["offline"])
    api.delete(f"/api/v1/webhooks/{register(api, 'http://127.0.0.1:9/gone')['id']}")
    add_events(store, ["offline", "geofence_enter", "stopped"])
    assert len(deliveries(api, every["id"])) == 3
    rows = deliveries(api, offline["id"])
    assert len(rows) == 1 and rows[0]["status"] == "pending" and rows[0]["attempts"] == 0


# ---- delivery ------------------------------------------------------------------------------


def test_retries_until_accepted_signed_exactly_once(
    api: TestClient, settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.fail_first = 3
    hook, store, event_ids = hook_with_events(
        api, url, ["geofence_enter", "off_route"], own_units=True
    )
    clock = Clock(T0)
    with dispatching(store, settings, clock=clock) as dispatcher:
        assert dispatcher.process_due() == 2  # attempt 1: 503
        assert dispatcher.process_due() == 0  # nothing due before the backoff ends
        clock.advance(next_delay(1) - timedelta(seconds=1))
        assert dispatcher.process_due() == 0
        for attempt in (1, 2, 3):
            clock.advance(next_delay(attempt) + timedelta(seconds=1))
            assert dispatcher.process_due() == 2
        clock.advance(timedelta(hours=2))
        assert dispatcher.process_due() == 0

    assert len(rec.received) == 8
    check_signatures(rec)
    accepted = rec.accepted()
    assert sorted(accepted.values()) == [1, 1]
    bodies = [json.loads(b) for _, b, c in rec.received if c == 200]
    assert sorted(b["id"] for b in bodies) == sorted(event_ids)
    assert all(b["unit_name"] == "Polwan 01" for b in bodies)
    assert bodies[0]["position"]["coordinates"] == [116.83, -1.24]

    rows = deliveries(api, hook["id"])
    assert {str(r["id"]) for r in rows} == set(accepted)
    for row in rows:
        assert row["status"] == "delivered" and row["attempts"] == 4
        assert row["last_status_code"] == 200 and row["last_error"] is None
        assert row["delivered_at"] is not None
        log = row["attempt_log"]
        assert [a["status_code"] for a in log] == [503, 503, 503, 200]
        assert log[0]["error"].startswith("HTTP 503")
        assert all(a["duration_ms"] >= 0 for a in log)
    assert deliveries(api, hook["id"], status="pending") == []
    assert len(deliveries(api, hook["id"], status="delivered", limit=1)) == 1


def test_restart_between_attempts_and_crash_mid_send(
    api: TestClient, settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.fail_first = 1
    hook, store, _ = hook_with_events(api, url, ["offline", "online", "stopped"], own_units=True)
    clock = Clock(T0)

    first = WebhookDispatcher(store, settings, clock=clock)
    assert first.process_due() == 3  # all fail once
    first.stop()  # the service stops

    # The next instance claims the retries, then "crashes" before sending them.
    clock.advance(next_delay(1))
    crashed = WebhookDispatcher(store, settings, clock=clock)
    claimed = crashed.claim_due(clock())
    assert len(claimed) == 3
    crashed.stop()

    with dispatching(store, settings, clock=clock) as restarted:
        assert restarted.process_due() == 0  # still leased by the crashed instance
        clock.advance(crashed.lease(len(claimed)) + timedelta(seconds=1))
        assert restarted.process_due() == 3  # the lease ran out: sent again
        clock.advance(timedelta(hours=1))
        assert restarted.process_due() == 0

    check_signatures(rec)
    assert sorted(rec.accepted().values()) == [1, 1, 1]
    rows = deliveries(api, hook["id"])
    assert [r["status"] for r in rows] == ["delivered"] * 3
    assert [r["attempts"] for r in rows] == [2, 2, 2]


def outbox_metrics(api: TestClient) -> dict[str, float]:
    """The webhook gauges and attempt counters as /metrics shows them now."""
    found = {}
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            if sample.name in ("patroli_webhook_backlog", "patroli_webhook_dead"):
                found[sample.name] = sample.value
            elif sample.name == "patroli_webhook_attempts_total":
                found[sample.labels["result"]] = sample.value
    return found


def test_dead_after_retry_budget_then_redeliver(
    api: TestClient, make_settings: Callable[..., Settings], receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.fail_all = True
    hook, store, _ = hook_with_events(api, url, ["overspeed"])
    before = outbox_metrics(api)
    assert before["patroli_webhook_backlog"] == 1 and before["patroli_webhook_dead"] == 0
    # Three minutes of retries: attempts at 0, 10 s, 40 s and 100 s; the next (220 s) is too late.
    settings = make_settings(webhook_retry_hours=3 / 60, webhook_allow=LOCAL)
    clock = Clock(T0)
    with dispatching(store, settings, clock=clock) as dispatcher:
        assert dispatcher.process_due() == 1
        for attempt in (1, 2, 3):
            clock.advance(next_delay(attempt))
            assert dispatcher.process_due() == 1
        clock.advance(timedelta(hours=1))
        assert dispatcher.process_due() == 0
        (row,) = deliveries(api, hook["id"])
        assert row["status"] == "dead" and row["attempts"] == 4
        assert row["last_status_code"] == 503 and row["delivered_at"] is None
        assert deliveries(api, hook["id"], status="dead")[0]["id"] == row["id"]
        assert not rec.accepted()
        dead = outbox_metrics(api)
        assert dead["patroli_webhook_backlog"] == 0 and dead["patroli_webhook_dead"] == 1
        assert (dead["failed"] - before["failed"], dead["dead"] - before["dead"]) == (3, 1)

        rec.fail_all = False
        r = api.post(f"/api/v1/webhooks/deliveries/{row['id']}/redeliver")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "pending" and len(r.json()["attempt_log"]) == 4
        # Redelivery is due at the real "now"; run a pass until it is settled (an app-level
        # dispatcher, if running, may settle it first: either way exactly one is accepted).
        deadline = time.monotonic() + 10
        while deliveries(api, hook["id"])[0]["status"] != "delivered":
            assert time.monotonic() < deadline
            dispatcher.process_due(datetime.now(UTC))
            time.sleep(0.02)
    (row,) = deliveries(api, hook["id"])
    assert row["attempts"] == 5 and row["last_status_code"] == 200
    assert rec.accepted() == Counter({str(row["id"]): 1})
    check_signatures(rec)
    after = outbox_metrics(api)
    assert after["patroli_webhook_backlog"] == 0 and after["patroli_webhook_dead"] == 0
    assert after["delivered"] - before["delivered"] == 1


def test_unreachable_receiver_is_a_failed_attempt(api: TestClient, settings: Settings) -> None:
    with serve_app(FastAPI()) as base:
        dead_url = f"{base}/hook"
    # Nothing listens there any more.
    hook, store, _ = hook_with_events(api, dead_url, ["moving"])
    with dispatching(store, settings, clock=Clock(T0)) as dispatcher:
        assert dispatcher.process_due() == 1
    (row,) = deliveries(api, hook["id"])
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_status_code"] is None and row["last_error"]
    assert row["attempt_log"][0]["error"] == row["last_error"]


def test_background_thread_delivers_on_wake(
    api: TestClient, make_settings: Callable[..., Settings], receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    register(api, url)
    store = store_of(api)
    dispatcher = WebhookDispatcher(
        store, make_settings(webhook_timeout_s=2, webhook_allow=LOCAL), poll_s=30
    )
    dispatcher.start()
    try:
        time.sleep(0.05)  # the first (empty) pass is over; now only wake() helps
        add_events(store, ["geofence_exit"], now=datetime.now(UTC))
        dispatcher.wake()
        deadline = time.monotonic() + 5
        while not rec.accepted():
            assert time.monotonic() < deadline, "not delivered after wake()"
            time.sleep(0.01)
    finally:
        dispatcher.stop()
    assert sum(rec.accepted().values()) == 1
    check_signatures(rec)


def test_concurrent_workers_skip_locked_rows(
    api: TestClient, settings: Settings, backend: str
) -> None:
    if backend != "postgis":
        pytest.skip("SQLite has one writer: claims are serialised by the write lock")
    hook, store, _ = hook_with_events(
        api, "http://127.0.0.1:9/hook", ["offline", "online"], own_units=True
    )
    clock = Clock(T0)
    worker = WebhookDispatcher(store, settings, clock=clock)
    with store.write() as session:  # another worker is mid-claim, holding both rows
        locked = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == hook["id"])
            .with_for_update()
        ).all()
        assert len(locked) == 2
        assert worker.claim_due(clock()) == []  # skipped, not blocked, not sent twice
    assert len(worker.claim_due(clock())) == 2
    worker.stop()


# ---- target policy -------------------------------------------------------------------------

REFUSED_TARGETS = [
    ("http://127.0.0.1:8000/api/v1/units", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://localhost:5432/", "loopback"),  # /etc/hosts
    ("http://[::1]:8000/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback address (IPv4 127.0.0.1 inside IPv6)"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://169.254.10.10/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("https://192.168.1.10/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://[2002:a00:1::]/", "private address (IPv4 10.0.0.1 inside IPv6)"),  # 6to4
    ("http://100.64.0.1/", "shared (CGNAT)"),
    ("http://224.0.0.251/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://192.0.2.1/", "private"),  # documentation range: never a real receiver
    ("http://intranet.example/hook", "intranet.example resolves to 10.0.0.7, a private"),
    ("http://split.example/hook", "split.example resolves to 127.0.0.1, a loopback"),
]


@pytest.fixture
def strict(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """An admin client of an app with the default target policy (no allow-list)."""
    from service.app import create_app
    from tests.conftest import ADMIN_KEY

    with TestClient(create_app(make_settings())) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


@pytest.mark.parametrize(("url", "why"), REFUSED_TARGETS)
def test_registration_refuses_internal_targets(
    strict: TestClient, fake_dns: dict[str, list[list[str]]], url: str, why: str
) -> None:
    fake_dns["intranet.example"] = [["10.0.0.7"]]
    fake_dns["split.example"] = [[PUBLIC, "127.0.0.1"]]  # one bad address refuses the name
    r = strict.post("/api/v1/webhooks", json={"url": url})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert why in detail and "PATROLI_WEBHOOK_ALLOW" in detail, detail
    assert strict.get("/api/v1/webhooks").json() == []


def test_registration_accepts_public_targets(
    strict: TestClient, fake_dns: dict[str, list[list[str]]]
) -> None:
    fake_dns["hooks.example"] = [[PUBLIC, "2606:4700::6810:84e5"]]
    for url in (
        "https://hooks.example/patroli?token=abc",
        f"http://{PUBLIC}:8080/x",
        "http://[2606:4700::6810:84e5]/x",
        "http://[64:ff9b::5db8:d70e]/x",  # NAT64 of a public IPv4 address
    ):
        assert strict.post("/api/v1/webhooks", json={"url": url}).status_code == 201, url
    r = strict.post("/api/v1/webhooks", json={"url": "http://nowhere.invalid/x"})
    assert r.status_code == 422 and "does not resolve" in r.json()["detail"]


def test_allow_list_admits_named_hosts_and_networks(
    make_settings: Callable[..., Settings], fake_dns: dict[str, list[list[str]]]
) -> None:
    from service.app import create_app
    from tests.conftest import ADMIN_KEY

    fake_dns["hooks.polda.local"] = [["10.9.8.7"]]
    settings = make_settings(webhook_allow=" hooks.polda.local , 172.20.0.0/16,[fd00:1::5]")
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        for url in (
            "http://hooks.polda.local/x",
            "http://HOOKS.polda.local./y",
            "http://172.20.3.4:9000/z",
            "http://[fd00:1::5]/",
        ):
            assert c.post("/api/v1/webhooks", json={"url": url}).status_code == 201, url
        for url in ("http://10.9.8.7/", "http://172.21.0.1/", "http://[fd00:1::6]/"):
            assert c.post("/api/v1/webhooks", json={"url": url}).status_code == 422, url


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not a host", "http://hooks.local", "a..b"])
def test_bad_allow_list_entries_stop_the_service_from_starting(bad: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="webhook allow-list entry"):
        Settings(_env_file=None, webhook_allow=bad)  # type: ignore[call-arg]


def _attempt(api: TestClient, hook_id: int) -> dict[str, Any]:
    (row,) = deliveries(api, hook_id)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["attempt_log"][0]["error"] == row["last_error"]
    return row


def test_delivery_checks_the_target_again(
    api: TestClient,
    make_settings: Callable[..., Settings],
    receiver: tuple[Receiver, str],
) -> None:
    rec, url = receiver
    # Registered while the allow-list admitted the receiver; since then it was removed.
    hook, store, _ = hook_with_events(api, url.replace("127.0.0.1", "localhost"), ["offline"])
    with dispatching(store, make_settings(), clock=Clock(T0)) as dispatcher:
        assert dispatcher.process_due() == 1
    row = _attempt(api, hook["id"])
    assert row["last_status_code"] is None
    assert row["last_error"] == "refused: 127.0.0.1 is a loopback address"
    assert rec.received == []


def test_dns_rebinding_cannot_redirect_a_delivery(
    api: TestClient,
    make_settings: Callable[..., Settings],
    receiver: tuple[Receiver, str],
    fake_dns: dict[str, list[list[str]]],
) -> None:
    rec, url = receiver
    port = url.split(":")[2].split("/")[0]
    # A public address at registration; at delivery an allowed address (where nothing
    # listens) when it is checked, and the receiver's loopback address on any later lookup:
    # the POST must go to the address that was checked.
    fake_dns["rebind.example"] = [[PUBLIC], ["127.0.0.2"], ["127.0.0.1"]]
    hook, store, _ = hook_with_events(api, f"http://rebind.example:{port}/hook", ["offline"])
    with dispatching(
        store, make_settings(webhook_allow="127.0.0.2"), clock=Clock(T0)
    ) as dispatcher:
        assert dispatcher.process_due() == 1
    assert rec.received == []
    assert _attempt(api, hook["id"])["last_error"] == "connection refused"


def test_delivery_goes_to_the_checked_address_with_the_name_in_host(
    api: TestClient, receiver: tuple[Receiver, str], fake_dns: dict[str, list[list[str]]]
) -> None:
    rec, url = receiver
    port = url.split(":")[2].split("/")[0]
    fake_dns["receiver.example"] = [["127.0.0.1"]]  # allowed by address (LOCAL)
    hook, store, _ = hook_with_events(api, f"http://receiver.example:{port}/hook", ["online"])
    with dispatching(store, store_settings(api), clock=Clock(T0)) as dispatcher:
        assert dispatcher.process_due() == 1
    [(headers, _, code)] = rec.received
    assert code == 200 and headers["host"] == f"receiver.example:{port}"
    (row,) = deliveries(api, hook["id"])
    assert row["status"] == "delivered"


def store_settings(api: TestClient) -> Settings:
    """The settings the app under test was built with."""
    app: Any = api.app
    settings: Settings = app.state.settings
    return settings


def test_failed_deliveries_never_show_the_receivers_answer(
    api: TestClient, settings: Settings
) -> None:
    leak = "db-password=hunter2 at 10.0.0.3:5432"
    app = FastAPI()

    @app.post("/hook")
    async def hook() -> Response:
        return Response(leak, status_code=500, media_type="text/plain")

    with serve_app(app) as base:
        hook_row = register(api, f"{base}/hook")
        store = store_of(api)
        add_events(store, ["overspeed"])
        dispatcher = WebhookDispatcher(store, settings, clock=Clock(T0))
        try:
            assert dispatcher.process_due() == 1
        finally:
            dispatcher.stop()
    r = api.get(f"/api/v1/webhooks/{hook_row['id']}/deliveries")
    assert "hunter2" not in r.text and "10.0.0.3" not in r.text
    row = _attempt(api, hook_row["id"])
    assert row["last_status_code"] == 500 and row["last_error"] == "HTTP 500"
    # What older versions stored (the start of the answer) is not shown either.
    with store.write() as session:
        attempt = session.get(WebhookAttempt, row["attempt_log"][0]["id"])
        delivery = session.get(WebhookDelivery, row["id"])
        assert attempt is not None and delivery is not None
        attempt.error = delivery.last_error = f"HTTP 500: {leak}"
    r = api.get(f"/api/v1/webhooks/{hook_row['id']}/deliveries")
    assert "hunter2" not in r.text
    assert r.json()[0]["last_error"] == r.json()[0]["attempt_log"][0]["error"] == "HTTP 500"


def test_dead_delivery_log_line_names_no_url_secrets(
    api: TestClient,
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve_app(FastAPI()) as base:
        dead_url = f"{base}/services/T000/B000/XXXXSECRETPATH?token=SECRETTOKEN"
    hook, store, _ = hook_with_events(api, dead_url, ["moving"])
    settings = make_settings(webhook_retry_hours=1 / 3600, webhook_allow=LOCAL)
    with dispatching(store, settings, clock=Clock(T0)) as dispatcher, caplog.at_level("WARNING"):
        assert dispatcher.process_due() == 1
    assert deliveries(api, hook["id"])[0]["status"] == "dead"
    [line] = [r.getMessage() for r in caplog.records if "is dead" in r.getMessage()]
    assert base in line and "connection refused" in line
    assert "SECRET" not in line
