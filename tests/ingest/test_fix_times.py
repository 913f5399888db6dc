"""One time rule at every door: fixes from PATROLI_MIN_FIX_TIME to now + PATROLI_MAX_FUTURE_S,
numeric timestamps read as seconds or milliseconds by range, and every stored fix readable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import ADMIN_KEY
from tests.helpers import LAT, LON0, T0, circle_feature, ping


@pytest.fixture
def unit(client: TestClient) -> int:
    client.post("/api/v1/geofences", json=circle_feature(LON0, LAT, radius_m=200))
    body = {"name": "Unit 1", "device_id": "u1"}
    return int(client.post("/api/v1/units", json=body).json()["id"])


def _stored(client: TestClient, unit_id: int, start: str, end: str) -> list[dict]:
    r = client.get(f"/api/v1/units/{unit_id}/track", params={"from": start, "to": end})
    assert r.status_code == 200, r.text
    return [f for f in r.json()["features"] if f["properties"]["kind"] == "fix"]


def test_a_fix_dated_year_one_is_refused_and_fires_nothing(client: TestClient, unit: int) -> None:
    r = client.post("/api/v1/pings", json={**ping("u1", 0, 0), "ts": "0001-01-01T00:00:00Z"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "ts=0001-01-01T00:00:00Z" in detail and "2000-01-01T00:00:00Z" in detail
    [latest] = client.get("/api/v1/positions/latest").json()["features"]
    assert latest["geometry"] is None  # no fix stored
    assert client.get("/api/v1/events").json()["events"] == []
    # The next real fix is neither late nor preceded by a bogus offline/online.
    r = client.post("/api/v1/pings", json=ping("u1", 0, 0)).json()
    assert r["accepted"] == 1 and r["results"][0]["flags"] == []
    types = [e["type"] for e in client.get("/api/v1/events").json()["events"]]
    assert "offline" not in types and "online" not in types


def test_numeric_timestamps_are_seconds_or_milliseconds_by_range(
    client: TestClient, unit: int
) -> None:
    millis = int(T0.timestamp() * 1000)
    r = client.post("/api/v1/pings", json={**ping("u1", 0, 0), "ts": millis}).json()
    assert r["results"][0]["ts"].startswith("2024-11-26T23:00:00")
    r = client.post("/api/v1/pings", json={**ping("u1", 5, 5), "ts": T0.timestamp() + 5}).json()
    assert r["results"][0]["ts"].startswith("2024-11-26T23:00:05")
    for value in (253_402_300_800, 20_000_000_000, 1, -5, "253402300800", True):
        r = client.post("/api/v1/pings", json={**ping("u1", 9, 9), "ts": value})
        assert r.status_code == 422, (value, r.text)
        assert "ts" in r.json()["detail"]
    assert len(_stored(client, unit, "2024-11-26", "2024-11-28")) == 2


def test_fixes_beyond_the_future_limit_are_refused_within_it_flagged(
    client: TestClient, unit: int
) -> None:
    far = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    r = client.post("/api/v1/pings", json={**ping("u1", 0, 0), "ts": far})
    assert r.status_code == 422 and "PATROLI_MAX_FUTURE_S" in r.json()["detail"]
    for late_offset in ("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z"):
        r = client.post("/api/v1/pings", json={**ping("u1", 0, 0), "ts": late_offset})
        assert r.status_code == 422, r.text
    near = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = client.post("/api/v1/pings", json={**ping("u1", 0, 0), "ts": near}).json()
    assert r["results"][0]["flags"] == ["future"]


def test_every_tracker_protocol_applies_the_rule(client: TestClient, unit: int) -> None:
    old = {"id": "u1", "lat": str(LAT), "lon": str(LON0)}
    for stamp in ("253402300800", "0", "1999-12-31T23:59:59Z", "20000000000"):
        r = client.get("/api/v1/osmand", params={**old, "timestamp": stamp})
        assert r.status_code == 422, (stamp, r.text)
    status = {"id": "u1", "batt": "50", "timestamp": "946684799"}  # a report without a fix
    assert client.get("/api/v1/osmand", params=status).status_code == 422
    traccar = {"device_id": "u1", "location": {"timestamp": "1990-01-01T00:00:00Z",
               "coords": {"latitude": LAT, "longitude": LON0}}}  # fmt: skip
    assert client.post("/api/v1/osmand", json=traccar).status_code == 422
    client.post("/api/v1/units", json={"name": "HP", "device_id": "polres/hp-07"})
    headers = {"X-Limit-U": "polres", "X-Limit-D": "hp-07"}
    for message in (
        {"_type": "location", "lat": LAT, "lon": LON0, "tst": 0},
        {"_type": "location", "lat": LAT, "lon": LON0, "tst": 253402300800},
        {"_type": "transition", "event": "enter", "tst": 631152000},  # 1990
    ):
        r = client.post("/api/v1/owntracks", json=message, headers=headers)
        assert r.status_code == 422, (message, r.text)
    # Milliseconds are understood where seconds are the protocol's unit, too.
    stamp = str(int(T0.timestamp() * 1000))
    assert client.get("/api/v1/osmand", params={**old, "timestamp": stamp}).status_code == 200
    assert _stored(client, unit, "2024-11-26", "2024-11-28")[0]["properties"]["ts"].startswith(
        "2024-11-26T23:00:00"
    )


def _gpx(*times: str) -> bytes:
    points = "".join(
        f'<trkpt lat="{LAT}" lon="{LON0 + i * 0.0001}"><time>{t}</time></trkpt>'
        for i, t in enumerate(times)
    )
    return (
        '<?xml version="1.0"?><gpx version="1.1" creator="t" '
        'xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><trkseg>{points}</trkseg></trk></gpx>"
    ).encode()


def test_gpx_points_outside_the_range_are_refused_and_what_is_stored_reads_back(
    client: TestClient, unit: int
) -> None:
    old = _gpx(*(f"1901-06-01T00:{m:02d}:00Z" for m in range(5)))
    r = client.post(f"/api/v1/units/{unit}/gpx", files={"file": ("1901.gpx", old)})
    assert r.status_code == 422, r.text
    assert "ts=1901-06-01T00:00:00Z" in r.json()["detail"]
    assert _stored(client, unit, "1970-01-01", "1970-01-02") == []
    # The earliest valid fix is stored and can be read back by every read.
    first = _gpx("2000-01-01T00:00:00Z", "2000-01-01T00:01:00Z", "1999-12-31T23:59:00Z")
    r = client.post(f"/api/v1/units/{unit}/gpx", files={"file": ("2000.gpx", first)}).json()
    assert (r["accepted"], r["rejected"]) == (2, 1)
    assert len(_stored(client, unit, "2000-01-01", "2000-01-02")) == 2
    window = {"from": "946684800", "to": "946771200000"}  # seconds and milliseconds
    assert len(_stored(client, unit, window["from"], window["to"])) == 2
    gpx = client.get(f"/api/v1/units/{unit}/track.gpx", params=window)
    assert gpx.status_code == 200 and gpx.text.count("<trkpt") == 2


def test_the_earliest_fix_time_is_a_setting(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(min_fix_time=datetime(2024, 11, 26, 23, 0, 5, tzinfo=UTC))
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        c.post("/api/v1/units", json={"name": "Unit 1", "device_id": "u1"})
        r = c.post("/api/v1/pings", json=[ping("u1", 0, 0), ping("u1", 10, 10)]).json()
        assert [x["status"] for x in r["results"]] == ["rejected", "accepted"]
        assert "2024-11-26T23:00:05Z" in r["results"][0]["reason"]


def test_settings_refuse_a_fix_range_reads_could_not_cover() -> None:
    with pytest.raises(ValueError, match="1970"):
        Settings(_env_file=None, min_fix_time=datetime(1969, 1, 1, tzinfo=UTC))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_future_s"):
        Settings(_env_file=None, max_future_s=10, future_tolerance_s=300)  # type: ignore[call-arg]
