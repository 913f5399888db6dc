"""Alarms and low battery: decoded from each door, fired once per occurrence, logged, streamed
and sent to webhooks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import ValidationError

from service.app import create_app
from service.config import Settings
from service.events.machine import Fix, Params, UnitMachine
from service.protocols.osmand import parse_osmand, parse_traccar_json
from service.protocols.owntracks import parse_owntracks
from service.quality import Flag
from service.schemas import PingIn
from tests.conftest import ADMIN_KEY
from tests.helpers import along, live_app, serve_app

T = datetime(2024, 11, 27, 2, 0, tzinfo=UTC)
PARAMS = Params()


def fix(
    seconds: float, alarm: str | None = None, battery: float | None = None, flags: int = 0
) -> Fix:
    """A fix of the test unit `seconds` after T."""
    lon, lat = along(seconds)
    return Fix(T + timedelta(seconds=seconds), lon, lat, 1.0, flags, alarm, battery)


def fired(machine: UnitMachine, *fixes: Fix, params: Params = PARAMS) -> list[tuple[str, Any]]:
    """(type, alarm or battery) of the alarm and low_battery events the fixes fire."""
    out = []
    for f in fixes:
        for e in machine.step(f, [], [], params):
            if e.type in ("alarm", "low_battery"):
                out.append((e.type, e.details.get("alarm", e.details.get("battery"))))
    return out


# ---- the machine -----------------------------------------------------------------------------


def test_an_alarm_fires_once_per_occurrence() -> None:
    m = UnitMachine()
    # Repeated in the next fixes of the same press: one event.
    assert fired(m, fix(0, "sos"), fix(10, "sos"), fix(20, "sos")) == [("alarm", "sos")]
    # Another alarm, or the same after a fix without it, is a new occurrence.
    assert fired(m, fix(30, "general")) == [("alarm", "general")]
    assert fired(m, fix(40), fix(50, "general")) == [("alarm", "general")]
    # Repeated for longer than alarm_repeat_s: a new occurrence.
    assert fired(m, fix(50 + PARAMS.alarm_repeat_s + 1, "general")) == [("alarm", "general")]


def test_an_alarm_fires_whatever_the_fix_quality_or_age() -> None:
    m = UnitMachine()
    assert fired(m, fix(100)) == []
    assert fired(m, fix(110, "sos", flags=int(Flag.INACCURATE))) == [("alarm", "sos")]
    m = UnitMachine()
    fired(m, fix(100))
    [late] = m.step(fix(50, "sos", battery=40, flags=int(Flag.LATE)), [], [], PARAMS)
    assert (late.type, late.details) == ("alarm", {"alarm": "sos", "battery": 40, "late": True})
    fired(m, fix(150))
    [nowhere] = m.step(fix(200, "sos", flags=int(Flag.ZERO)), [], [], PARAMS)
    assert (nowhere.lon, nowhere.lat) == (None, None)  # (0, 0) is no position


def test_low_battery_crosses_with_hysteresis() -> None:
    m = UnitMachine()
    levels = [50, 16, 14, 10, 18, 19.9, 14, 20, 30, 12, 11]
    got = fired(m, *(fix(10 * i, battery=b) for i, b in enumerate(levels)))
    # Below 15 fires; only 20 (15 + 5) re-arms it; the next fall below 15 fires again.
    assert got == [("low_battery", 14), ("low_battery", 12)]
    assert fired(UnitMachine(), fix(0, battery=5), params=Params(low_battery_pct=None)) == []


def test_alarm_state_survives_a_restart_and_old_states_load() -> None:
    m = UnitMachine()
    fired(m, fix(0, "sos", battery=10))
    resumed = UnitMachine.from_dict(json.loads(json.dumps(m.to_dict())))
    assert fired(resumed, fix(10, "sos", battery=9)) == []
    old = m.to_dict()
    del old["alarm"]  # stored before alarms existed
    assert fired(UnitMachine.from_dict(old), fix(20, "sos", battery=9)) == [
        ("alarm", "sos"),
        ("low_battery", 9),
    ]


# ---- the doors ---------------------------------------------------------------------------------


def test_doors_read_the_alarm() -> None:
    osmand = parse_osmand({"id": ["1"], "lat": ["-1.2"], "lon": ["116.8"], "alarm": ["sos"]}, now=T)
    assert isinstance(osmand, PingIn) and osmand.alarm == "sos"
    assert osmand.attributes == {"alarm": "sos"}  # kept as sent, as before
    odd = parse_osmand({"id": ["1"], "lat": ["-1.2"], "lon": ["116.8"], "alarm": ["a b"]}, now=T)
    assert isinstance(odd, PingIn) and odd.alarm is None and odd.attributes == {"alarm": "a b"}
    owntracks = parse_owntracks(
        {"_type": "location", "lat": -1.2, "lon": 116.8, "tst": 1732672800, "alarm": "sos"},
        device_id="polres/hp-07",
        now=T,
    )
    assert isinstance(owntracks, PingIn) and owntracks.alarm == "sos"
    traccar = parse_traccar_json(
        {
            "device_id": "1",
            "location": {
                "coords": {"latitude": -1.2, "longitude": 116.8},
                "extras": {"alarm": "sos"},
            },
        },
        now=T,
    )
    assert isinstance(traccar, PingIn) and traccar.alarm == "sos"
    ok = {"device_id": "1", "lat": -1.2, "lon": 116.8, "ts": T}
    assert PingIn.model_validate({**ok, "alarm": "lowBattery"}).alarm == "lowBattery"
    for bad in ("", "sos!", "9lives", "x" * 41):
        with pytest.raises(ValidationError):
            PingIn.model_validate({**ok, "alarm": bad})


# ---- end to end: the log, the stream and a webhook ---------------------------------------------


@dataclass
class Hooks:
    """A webhook receiver: the event bodies it was sent."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            with self.lock:
                self.bodies.append(json.loads(await request.body()))
            return Response(status_code=200)

        return app

    def types(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(b["type"], b["unit_id"]) for b in self.bodies]


class Listener:
    """A stream client in a thread: (type, unit id) of every event it is sent."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.events: list[tuple[str, int]] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        params = {"positions": "false", "keepalive": 0.2}
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with (
            httpx.Client(base_url=self.base, timeout=10) as c,
            c.stream("GET", "/api/v1/stream", params=params, headers=headers) as r,
        ):
            kind = None
            for line in r.iter_lines():
                self.ready.set()
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind is not None:
                    self.events.append((kind, json.loads(line.split(":", 1)[1])["unit_id"]))
                    kind = None
                if self.stop.is_set():
                    return

    def __enter__(self) -> Listener:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def served(make_settings: Any) -> Iterator[tuple[str, httpx.Client, Hooks]]:
    """The app served, a webhook for every event registered to a local receiver."""
    hooks = Hooks()
    settings: Settings = make_settings(webhook_allow="127.0.0.1")
    with serve_app(hooks.app()) as receiver, live_app(create_app(settings)) as (base, http):
        r = http.post("/api/v1/webhooks", json={"url": f"{receiver}/hook", "secret": "s" * 16})
        assert r.status_code == 201, r.text
        yield base, http, hooks


def _unit(http: httpx.Client, device_id: str) -> str:
    """A new unit's device secret."""
    r = http.post("/api/v1/units", json={"name": device_id.upper(), "device_id": device_id})
    assert r.status_code == 201, r.text
    return str(r.json()["device_secret"])


def test_alarms_appear_once_in_the_log_the_stream_and_a_webhook(
    served: tuple[str, httpx.Client, Hooks], backend: str
) -> None:
    """Each door's SOS and each battery crossing: once in the log, the stream and a webhook."""
    base, http, hooks = served
    with Listener(base) as listener:
        _post_alarms(http)
        expected = _expected(http)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
            len(hooks.types()) < len(expected) or len(listener.events) < len(expected)
        ):
            time.sleep(0.1)
        time.sleep(0.5)  # and nothing more arrives
    kinds = ("alarm", "low_battery")
    assert sorted(e for e in listener.events if e[0] in kinds) == expected
    assert sorted(hooks.types()) == expected


def _post_alarms(http: httpx.Client) -> None:
    """Alarms through each door, with retries and repeats; a battery running down and up."""
    osmand_key = _unit(http, "357000")
    owntracks_key = _unit(http, "polres/hp-07")
    js_key = _unit(http, "hp-json")
    epoch = int(T.timestamp())
    lon, lat = along(100)

    # OsmAnd (Traccar Client): SOS, the tracker's retry of it, and the same press repeated.
    query = {"id": "357000", "lat": lat, "lon": lon, "alarm": "sos", "key": osmand_key}
    for stamp in (epoch, epoch, epoch + 10):
        assert http.get("/api/v1/osmand", params={**query, "timestamp": stamp}).status_code == 200
    # OsmAnd without a fix: a status report with SOS and a low battery, sent twice (a retry).
    status_key = _unit(http, "357001")
    status = {"id": "357001", "alarm": "sos", "batt": 9, "key": status_key, "timestamp": epoch}
    for _ in range(2):
        r = http.get("/api/v1/osmand", params=status)
        assert r.status_code == 200, r.text
    # OwnTracks: a location message carrying the alarm.
    message = {"_type": "location", "lat": lat, "lon": lon, "tst": epoch, "alarm": "sos"}
    r = http.post(
        "/api/v1/owntracks",
        json=message,
        headers={"X-Limit-U": "polres", "X-Limit-D": "hp-07"},
        auth=("polres", owntracks_key),
    )
    assert r.status_code == 200, r.text
    # JSON pings: SOS twice by ping id (a retry), then the battery running down and back up.
    tracker = {"Authorization": f"Bearer {js_key}"}
    sos = {"device_id": "hp-json", "lat": lat, "lon": lon, "ts": T.isoformat()}
    for _ in range(2):
        r = http.post(
            "/api/v1/pings", json={**sos, "alarm": "sos", "ping_id": "p1"}, headers=tracker
        )
        assert r.status_code == 200, r.text
    batteries = [40, 14, 12, 19, 21, 13]
    pings = [
        {**sos, "ts": (T + timedelta(seconds=10 * (i + 1))).isoformat(), "battery": b}
        for i, b in enumerate(batteries)
    ]
    assert http.post("/api/v1/pings", json=pings, headers=tracker).status_code == 200


def _expected(http: httpx.Client) -> list[tuple[str, int]]:
    """The alarm events in the log, checked: one per occurrence."""
    devices = ("357000", "polres/hp-07", "hp-json", "357001")
    osmand, owntracks, js, status = (_unit_id(http, d) for d in devices)
    alarms = [("alarm", osmand), ("alarm", owntracks), ("alarm", js), ("alarm", status)]
    batteries = [("low_battery", js), ("low_battery", js), ("low_battery", status)]
    expected = sorted([*alarms, *batteries])
    events = http.get("/api/v1/events", params={"type": ["alarm", "low_battery"]})
    assert events.status_code == 200, events.text
    logged = events.json()
    rows = logged["events"] if isinstance(logged, dict) else logged
    assert sorted((e["type"], e["unit_id"]) for e in rows) == expected
    by_js = [
        e["details"]["battery"] for e in rows if e["type"] == "low_battery" and e["unit_id"] == js
    ]
    assert by_js == [14, 13]
    assert {e["details"]["alarm"] for e in rows if e["type"] == "alarm"} == {"sos"}
    # The status report's alerts: no position is known, none is made up.
    assert all(
        e["position"] is None and e["details"].get("battery") == 9
        for e in rows
        if e["unit_id"] == status
    )

    return expected


def _unit_id(http: httpx.Client, device_id: str) -> int:
    units = http.get("/api/v1/units").json()
    rows = units["units"] if isinstance(units, dict) else units
    return int(next(u["id"] for u in rows if u["device_id"] == device_id))
