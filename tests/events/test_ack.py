"""Acknowledging events: who, when and a note; once only; operator role; on the live stream."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.config import Settings
from service.notify.stream import Cursor
from service.store.models import WebhookDelivery
from tests.conftest import ADMIN_KEY
from tests.helpers import ping
from tests.notify.test_stream import Live, _served

ACK = "/api/v1/events/{}/ack"


def _key(client: Any, role: str, name: str, **extra: Any) -> str:
    r = client.post("/api/v1/keys", json={"name": name, "role": role, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _alarms(client: Any, device_id: str, count: int) -> list[dict[str, Any]]:
    """`count` alarm events of a unit (separate presses), oldest first."""
    for i in range(count):
        fixes = [ping(device_id, 100, 600 * i, alarm="sos"), ping(device_id, 105, 600 * i + 5)]
        r = client.post("/api/v1/pings", json=fixes)
        assert r.status_code == 200, r.text
    r = client.get("/api/v1/events", params={"type": "alarm"})
    events = r.json()["events"]
    assert len(events) == count
    return list(events)


def test_acknowledge_stores_who_when_and_note(client: TestClient) -> None:
    unit = client.post("/api/v1/units", json={"name": "Polwan 01", "device_id": "p01"}).json()
    first, second, third = _alarms(client, "p01", 3)
    assert first["acked_at"] is None and first["acked_by"] is None and first["ack_note"] is None
    operator = _key(client, "operator", "Piket Bripka Sari")

    r = client.post(
        ACK.format(first["id"]), json={"note": "ditelepon, aman"}, headers=_bearer(operator)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == first["id"] and body["type"] == "alarm"
    assert body["acked_by"] == "Piket Bripka Sari" and body["ack_note"] == "ditelepon, aman"
    assert body["acked_at"].endswith("Z") and body["unit_name"] == "Polwan 01"

    # The event log shows the acknowledgement on the event, and the `ack` event after it.
    events = client.get("/api/v1/events").json()["events"]
    shown = {e["id"]: e for e in events}
    assert shown[first["id"]]["acked_at"] == body["acked_at"]
    assert shown[first["id"]]["ack_note"] == "ditelepon, aman"
    assert shown[second["id"]]["acked_at"] is None
    [ack] = [e for e in events if e["type"] == "ack"]
    assert ack["unit_id"] == unit["id"] and ack["ts"] == body["acked_at"]
    assert ack["details"] == {
        "event_id": first["id"],
        "event_type": "alarm",
        "event_ts": first["ts"],
        "acked_by": "Piket Bripka Sari",
        "note": "ditelepon, aman",
    }
    assert client.get("/api/v1/events", params={"type": "ack"}).json()["events"] == [ack]

    # Twice: 409 naming who acknowledged it; nothing changes.
    r = client.post(ACK.format(first["id"]), json={"note": "lagi"})
    assert r.status_code == 409
    assert "already acknowledged by Piket Bripka Sari" in r.json()["detail"]
    assert client.get("/api/v1/events", params={"type": "ack"}).json()["events"] == [ack]
    # An acknowledgement itself is not acknowledged.
    r = client.post(ACK.format(ack["id"]))
    assert r.status_code == 409 and "acknowledgement" in r.json()["detail"]

    # Without a body (no note), with the bootstrap admin key.
    r = client.post(ACK.format(second["id"]))
    assert r.status_code == 200, r.text
    assert r.json()["ack_note"] is None and r.json()["acked_by"] == "admin (bootstrap key)"
    # An empty note is no note; an admin key issued by the API is named by its name.
    admin = _key(client, "admin", "Kasi Ops")
    r = client.post(ACK.format(third["id"]), json={"note": ""}, headers=_bearer(admin))
    assert r.status_code == 200 and r.json()["acked_by"] == "Kasi Ops"
    assert r.json()["ack_note"] is None


def test_acknowledge_refusals(client: TestClient) -> None:
    unit = client.post("/api/v1/units", json={"name": "Polwan 02", "device_id": "p02"}).json()
    [event] = _alarms(client, "p02", 1)
    url = ACK.format(event["id"])
    viewer = _key(client, "viewer", "layar dinding")
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        (_bearer(viewer), {}, 403, "this needs an admin or operator key; yours is viewer"),
        (_bearer(unit["device_secret"]), {}, 403, "yours is tracker"),
        ({"Authorization": "Bearer nope-not-a-key"}, {}, 401, "invalid or revoked"),
        ({}, {"note": "baris\nbaru"}, 422, "body.note: must not contain control characters"),
        ({}, {"note": "x" * 501}, 422, "at most 500 characters"),
        ({}, {"note": 5}, 422, "body.note"),
        ({}, {"note": "ok", "by": "someone"}, 422, "body.by"),
    ]
    for headers, body, status, detail in cases:
        r = client.post(url, json=body, headers=headers)
        assert r.status_code == status, (body, r.text)
        assert detail in r.json()["detail"], (body, r.text)
    r = client.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert client.post(ACK.format(2**40)).status_code == 404
    assert client.post(ACK.format(2**40)).json()["detail"] == f"event {2**40} not found"
    r = client.post(ACK.format(2**63))
    assert r.status_code == 422 and "event_id" in r.json()["detail"]
    r = client.post(ACK.format(0))
    assert r.status_code == 422
    # None of these acknowledged it.
    events = client.get("/api/v1/events").json()["events"]
    assert [e["acked_at"] for e in events] == [None]
    # A note of exactly 500 characters is fine, and may hold markup (it is data).
    note = "<b>" + "é" * 497
    r = client.post(url, json={"note": note})
    assert r.status_code == 200 and r.json()["ack_note"] == note


def test_map_session_cannot_acknowledge(client: TestClient) -> None:
    client.post("/api/v1/units", json={"name": "Polwan 03", "device_id": "p03"})
    [event] = _alarms(client, "p03", 1)
    operator = _key(client, "operator", "piket")
    del client.headers["Authorization"]
    r = client.get("/maps/live", params={"key": operator}, follow_redirects=False)
    assert r.status_code == 303 and "patroli_session" in r.headers["set-cookie"]
    # The operator's map opens with the cookie; acknowledging needs the key itself.
    assert client.get("/maps/live").status_code == 200
    r = client.post(ACK.format(event["id"]), json={})
    assert r.status_code == 401
    r = client.post(ACK.format(event["id"]), json={}, headers=_bearer(operator))
    assert r.status_code == 200


def test_operator_reads_and_acknowledges_only(client: TestClient) -> None:
    operator = _key(client, "operator", "piket")
    h = _bearer(operator)
    for path in ("/api/v1/events", "/api/v1/units", "/api/v1/positions/latest", "/metrics"):
        assert client.get(path, headers=h).status_code == 200, path
    r = client.post("/api/v1/units", json={"name": "X", "device_id": "x"}, headers=h)
    assert r.status_code == 403 and "yours is operator" in r.json()["detail"]
    assert client.get("/api/v1/keys", headers=h).status_code == 403
    r = client.post("/api/v1/pings", json=[ping("x", 100, 0)], headers=h)
    assert r.status_code == 403
    listed = {k["name"]: k["role"] for k in client.get("/api/v1/keys").json()}
    assert listed["piket"] == "operator"
    r = client.post("/api/v1/keys", json={"name": "o", "role": "operator", "unit_id": 1})
    assert r.status_code == 422 and "only tracker keys" in r.json()["detail"]


@pytest.fixture
def live(make_settings: Callable[..., Settings]) -> Any:
    """A served app that allows webhooks to the loopback address."""
    with _served(make_settings(webhook_allow="127.0.0.1")) as served:
        yield served


def test_acknowledgement_is_on_the_stream_and_resumes(live: Live) -> None:
    live.unit("u1")
    with live.open(positions="false") as sse:
        live.post(ping("u1", 100, 0, alarm="sos"))
        [alarm] = sse.messages(1)
        assert alarm.event == "alarm"
        before = str(alarm.id)
        operator = _key(live.http, "operator", "piket malam")
        r = live.http.post(
            ACK.format(alarm.data["id"]),
            json={"note": "sudah ditangani"},
            headers=_bearer(operator),
        )
        assert r.status_code == 200, r.text
        [ack] = sse.messages(1, timeout=1.0)
    assert ack.event == "ack"
    assert ack.data["type"] == "ack" and ack.data["unit_name"] == "U1"
    assert ack.data["ts"] == r.json()["acked_at"]
    assert ack.data["details"]["event_id"] == alarm.data["id"]
    assert ack.data["details"]["acked_by"] == "piket malam"
    assert ack.data["details"]["note"] == "sudah ditangani"
    cursor = Cursor.parse(str(ack.id))
    assert cursor.event_id == ack.data["id"] > alarm.data["id"]
    # A client that missed it gets it on resuming, and only it; `type=ack` selects it.
    with live.open(headers={"Last-Event-ID": before}, positions="false") as sse:
        [again] = sse.messages(1)
        assert sse.quiet(0.5) == []
    assert (again.event, again.id, again.data) == (ack.event, ack.id, ack.data)
    with live.open(last_event_id="0-0", type="ack", positions="false") as sse:
        [only] = sse.messages(1)
    assert only.data["id"] == ack.data["id"]


def test_acknowledgement_goes_to_webhooks(live: Live) -> None:
    live.unit("u1")
    r = live.http.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["ack"], "secret": "s3cret-value"},
    )
    assert r.status_code == 201, r.text
    live.post(ping("u1", 100, 0, alarm="sos"))
    [alarm] = live.http.get("/api/v1/events", params={"type": "alarm"}).json()["events"]
    assert live.http.post(ACK.format(alarm["id"])).status_code == 200
    [ack] = live.http.get("/api/v1/events", params={"type": "ack"}).json()["events"]
    with live.store.read() as session:
        queued = session.scalars(select(WebhookDelivery.event_id)).all()
    assert queued == [ack["id"]]  # the alarm was not subscribed to; its acknowledgement was


def test_concurrent_acknowledgements_one_wins(live: Live) -> None:
    live.unit("u1")
    live.post(ping("u1", 100, 0, alarm="sos"))
    [alarm] = live.http.get("/api/v1/events", params={"type": "alarm"}).json()["events"]
    names = [f"piket {i}" for i in range(6)]
    keys = [_key(live.http, "operator", name) for name in names]
    statuses: list[int] = []
    barrier = threading.Barrier(len(keys))

    def ack(key: str) -> None:
        with httpx.Client(base_url=live.base, timeout=10) as c:
            barrier.wait()
            statuses.append(c.post(ACK.format(alarm["id"]), headers=_bearer(key)).status_code)

    threads = [threading.Thread(target=ack, args=(k,)) for k in keys]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(statuses) == [200] + [409] * (len(keys) - 1)
    events = live.http.get("/api/v1/events").json()["events"]
    acks = [e for e in events if e["type"] == "ack"]
    [stored] = [e for e in events if e["id"] == alarm["id"]]
    assert len(acks) == 1 and acks[0]["details"]["acked_by"] == stored["acked_by"] in names
    assert live.http.headers["Authorization"] == f"Bearer {ADMIN_KEY}"
