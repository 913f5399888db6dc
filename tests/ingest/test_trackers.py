"""Tracker protocols end to end: Traccar Client (OsmAnd GET, form and JSON POST), OwnTracks, GPX."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import ADMIN_KEY
from tests.protocols.test_owntracks import ANDROID_LOCATION, TRANSITION
from tests.protocols.test_traccar_json import TRACCAR_CLIENT_9


@pytest.fixture
def units(client: TestClient) -> dict[str, dict[str, Any]]:
    """Units for a Traccar Client phone and an OwnTracks phone."""
    return {
        "traccar": client.post(
            "/api/v1/units", json={"name": "Polwan 02", "device_id": "48241179"}
        ).json(),
        "owntracks": client.post(
            "/api/v1/units", json={"name": "Polwan 03", "device_id": "sari/pixel"}
        ).json(),
    }


def _track(client: TestClient, unit_id: int) -> list[dict[str, Any]]:
    r = client.get(
        f"/api/v1/units/{unit_id}/track", params={"from": "2024-11-10", "to": "2024-12-10"}
    )
    return [f for f in r.json()["features"] if f["properties"]["kind"] == "fix"]


def test_traccar_client_get(client: TestClient, units: dict) -> None:
    secret = units["traccar"]["device_secret"]
    r = client.get(
        f"/api/v1/osmand/?id=48241179&timestamp=1732673400&lat=-1.2683&lon=116.834"
        f"&speed=10.5&bearing=90.0&altitude=12.0&accuracy=5.0&batt=81.0&key={secret}",
        headers={"Authorization": ""},
    )
    assert r.status_code == 200, r.text
    assert r.content == b""
    [fix] = _track(client, units["traccar"]["id"])
    props = fix["properties"]
    assert props["ts"] == "2024-11-27T02:10:00+00:00"
    assert fix["geometry"]["coordinates"] == [116.834, -1.2683]
    assert props["speed_mps"] == pytest.approx(10.5 * 0.514444, rel=1e-5)
    assert props["battery"] == 81 and props["heading"] == 90 and props["accuracy_m"] == 5
    assert props["source"] == "osmand"


def test_traccar_client_form_post_with_basic_auth(client: TestClient, units: dict) -> None:
    secret = units["traccar"]["device_secret"]
    basic = base64.b64encode(f"48241179:{secret}".encode()).decode()
    r = client.post(
        "/api/v1/osmand",
        content="id=48241179&timestamp=2024-11-27 02:10:05&lat=-1.2684&lon=116.8341"
        "&speed=0.0&bearing=0.0&batt=55.0&charge=true&cell=510,10,1234,5678",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {basic}",
        },
    )
    assert r.status_code == 200, r.text
    [fix] = _track(client, units["traccar"]["id"])
    assert fix["properties"]["ts"] == "2024-11-27T02:10:05+00:00"
    assert fix["properties"]["battery"] == 55


def test_traccar_client_9_json_post(client: TestClient, units: dict) -> None:
    secret = units["traccar"]["device_secret"]
    r = client.post(
        f"/api/v1/osmand?key={secret}",
        content=TRACCAR_CLIENT_9,
        headers={"Content-Type": "application/json", "Authorization": ""},
    )
    assert r.status_code == 200, r.text
    [fix] = _track(client, units["traccar"]["id"])
    props = fix["properties"]
    assert props["ts"] == "2024-11-27T02:10:00.512000+00:00"
    assert props["speed_mps"] == pytest.approx(5.4)  # already m/s in JSON
    assert props["battery"] == pytest.approx(81)


def test_osmand_errors(client: TestClient, units: dict) -> None:
    secret = units["traccar"]["device_secret"]
    no_auth = {"Authorization": ""}
    r = client.get(f"/api/v1/osmand?lat=1&lon=2&timestamp=0&key={secret}", headers=no_auth)
    assert r.status_code == 400 and "device id" in r.json()["detail"]
    r = client.get("/api/v1/osmand?lat=1&lon=2&timestamp=0", headers=no_auth)
    assert r.status_code == 401  # no secret: nothing else is said
    r = client.get("/api/v1/osmand?id=48241179&lat=-1.2&lon=116.8", headers=no_auth)
    assert r.status_code == 401
    other = "sari%2Fpixel"
    r = client.get(f"/api/v1/osmand?id={other}&lat=-1.2&lon=116.8&key={secret}", headers=no_auth)
    assert r.status_code == 403  # a device secret speaks for its own unit only
    r = client.get("/api/v1/osmand?id=nobody&lat=-1.2&lon=116.8")  # admin key
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    r = client.get(f"/api/v1/osmand?id=48241179&lat=95&lon=116.8&key={secret}", headers=no_auth)
    assert r.status_code == 422 and "lat" in r.json()["detail"]
    assert _track(client, units["traccar"]["id"]) == []


def test_status_without_fix_is_a_report_not_a_position(client: TestClient, units: dict) -> None:
    secret = units["traccar"]["device_secret"]
    r = client.get(
        f"/api/v1/osmand?id=48241179&timestamp=1732673400&batt=15&key={secret}",
        headers={"Authorization": ""},
    )
    assert r.status_code == 200
    assert _track(client, units["traccar"]["id"]) == []
    latest = client.get("/api/v1/positions/latest").json()["features"]
    assert all(f["geometry"] is None for f in latest)


def test_relaxed_device_auth_and_auto_register(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(device_key_required=False, auto_register=True)
    with TestClient(create_app(settings)) as c:
        r = c.get("/api/v1/osmand?id=new-phone&lat=-1.2683&lon=116.834&timestamp=1732673400")
        assert r.status_code == 200
        units = c.get("/api/v1/units", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert [u["device_id"] for u in units] == ["new-phone"]


def test_owntracks_location_and_transition(client: TestClient, units: dict) -> None:
    secret = units["owntracks"]["device_secret"]
    basic = base64.b64encode(f"sari:{secret}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "X-Limit-U": "sari", "X-Limit-D": "pixel"}
    r = client.post("/api/v1/owntracks", json=ANDROID_LOCATION, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == []
    r = client.post("/api/v1/owntracks", json=TRANSITION, headers=headers)
    assert r.status_code == 200 and r.json() == []
    r = client.post("/api/v1/owntracks", content=b"", headers=headers)
    assert r.status_code == 200 and r.json() == []
    [fix] = _track(client, units["owntracks"]["id"])
    props = fix["properties"]
    assert fix["geometry"]["coordinates"] == [ANDROID_LOCATION["lon"], ANDROID_LOCATION["lat"]]
    assert props["battery"] == ANDROID_LOCATION["batt"]
    assert props["speed_mps"] == pytest.approx(ANDROID_LOCATION["vel"] / 3.6)
    assert props["source"] == "owntracks"
    wrong = {**headers, "X-Limit-D": "other-phone"}
    r = client.post("/api/v1/owntracks", json=ANDROID_LOCATION, headers=wrong)
    assert r.status_code == 403  # a device secret speaks for its own unit only


def test_gpx_import_and_export(client: TestClient, units: dict) -> None:
    uid = units["traccar"]["id"]
    gpx = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><name>Patroli pagi</name>
    <trkseg>
      <trkpt lat="-1.2683" lon="116.8340"><ele>12</ele>
        <time>2024-11-27T07:00:00+08:00</time></trkpt>
      <trkpt lat="-1.2684" lon="116.8345"><time>2024-11-27T07:00:10+08:00</time></trkpt>
    </trkseg>
    <trkseg>
      <trkpt lat="-1.2685" lon="116.8350"><time>2024-11-27T07:00:20+08:00</time></trkpt>
    </trkseg>
  </trk>
</gpx>"""
    r = client.post(f"/api/v1/units/{uid}/gpx", files={"file": ("pagi.gpx", gpx)})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3
    again = client.post(f"/api/v1/units/{uid}/gpx", files={"file": ("pagi.gpx", gpx)}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    fixes = _track(client, uid)
    assert [f["properties"]["ts"][11:19] for f in fixes] == ["23:00:00", "23:00:10", "23:00:20"]
    r = client.get(
        f"/api/v1/units/{uid}/track.gpx", params={"from": "2024-11-26", "to": "2024-11-28"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/gpx+xml")
    assert r.text.count("<trkpt") == 3 and "2024-11-26T23:00:10Z" in r.text
    r = client.post(f"/api/v1/units/{uid}/gpx", files={"file": ("x.gpx", b"not xml")})
    assert r.status_code == 422 and "GPX" in r.json()["detail"]


def test_body_over_limit_is_413(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_body_bytes=1000))) as c:
        r = c.post(
            "/api/v1/pings",
            content=b"[" + b" " * 2000 + b"]",
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        )
    assert r.status_code == 413
    assert "1000 bytes" in r.json()["detail"]


def test_tracker_key_cannot_auto_register_devices(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings(auto_register=True))) as c:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        unit = c.post("/api/v1/units", json={"name": "A", "device_id": "a"}, headers=admin)
        secret = unit.json()["device_secret"]
        r = c.get(f"/api/v1/osmand?id=intruder&lat=-1.2683&lon=116.834&key={secret}")
        assert r.status_code == 403
        names = [u["device_id"] for u in c.get("/api/v1/units", headers=admin).json()]
    assert names == ["a"]


def test_device_secret_in_the_path_or_a_bearer_header(client: TestClient, units: dict) -> None:
    """Trackers whose URL setting keeps only origin and path, or that send headers only."""
    secret = units["traccar"]["device_secret"]
    no_auth = {"Authorization": ""}
    fix = "id=48241179&lat=-1.2683&lon=116.834&timestamp="
    r = client.get(f"/api/v1/osmand/{secret}?{fix}1732673400", headers=no_auth)
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/v1/osmand/{secret}",
        content=f"{fix}1732673410",
        headers={"Content-Type": "application/x-www-form-urlencoded", **no_auth},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/v1/osmand/{secret}",
        content=TRACCAR_CLIENT_9,
        headers={"Content-Type": "application/json", **no_auth},
    )
    assert r.status_code == 200, r.text
    r = client.get(f"/api/v1/osmand?{fix}1732673420", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    assert len(_track(client, units["traccar"]["id"])) == 4

    r = client.get(f"/api/v1/osmand/ptl_wrong?{fix}1732673430", headers=no_auth)
    assert r.status_code == 401
    client.post(f"/api/v1/units/{units['traccar']['id']}/secret").raise_for_status()
    r = client.get(f"/api/v1/osmand/{secret}?{fix}1732673440", headers=no_auth)
    assert r.status_code == 401  # rotated: the old secret is dead in the path too

    ot = units["owntracks"]["device_secret"]
    identity = {"X-Limit-U": "sari", "X-Limit-D": "pixel", **no_auth}
    r = client.post(f"/api/v1/owntracks/{ot}", json=ANDROID_LOCATION, headers=identity)
    assert r.status_code == 200 and r.json() == []
    assert len(_track(client, units["owntracks"]["id"])) == 1
    r = client.post("/api/v1/owntracks/ptl_wrong", json=ANDROID_LOCATION, headers=identity)
    assert r.status_code == 401


def _reports(client: TestClient) -> int:
    from sqlalchemy import func, select

    from service.store.models import DeviceReportRow

    with client.app.state.store.read() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(DeviceReportRow)) or 0)


def test_attributes_are_capped_on_every_tracker_door(client: TestClient, units: dict) -> None:
    secret = units["traccar"]["device_secret"]
    no_auth = {"Authorization": ""}
    big = "x" * 9000  # with its name, over the 8192-byte default
    fix = "id=48241179&lat=-1.2683&lon=116.834&timestamp=1732673400"
    form = {"Content-Type": "application/x-www-form-urlencoded", **no_auth}
    traccar = json.loads(TRACCAR_CLIENT_9)
    traccar["location"]["extras"] = {"note": big}
    answers = {
        "query": client.get(f"/api/v1/osmand/{secret}?{fix}&note={big}", headers=no_auth),
        "form": client.post(f"/api/v1/osmand/{secret}", content=f"{fix}&note={big}", headers=form),
        "json": client.post(f"/api/v1/osmand/{secret}", json=traccar, headers=no_auth),
        "status": client.get(
            f"/api/v1/osmand/{secret}?id=48241179&batt=50&note={big}", headers=no_auth
        ),
    }
    ot = units["owntracks"]["device_secret"]
    identity = {"X-Limit-U": "sari", "X-Limit-D": "pixel", **no_auth}
    for kind, message in (
        ("owntracks location", {**ANDROID_LOCATION, "note": big}),
        ("owntracks transition", {**TRANSITION, "note": big}),
    ):
        answers[kind] = client.post(f"/api/v1/owntracks/{ot}", json=message, headers=identity)
    for door, r in answers.items():
        assert r.status_code == 422, (door, r.text)
        assert "PATROLI_MAX_ATTRIBUTES_BYTES" in r.json()["detail"], door
    assert _track(client, units["traccar"]["id"]) == []
    assert _track(client, units["owntracks"]["id"]) == []
    assert _reports(client) == 0
    # Just under the limit, every door stores.
    small = "x" * 8000
    r = client.get(f"/api/v1/osmand/{secret}?{fix}&note={small}", headers=no_auth)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/owntracks/{ot}", json={**TRANSITION, "note": small}, headers=identity)
    assert r.status_code == 200, r.text
    assert len(_track(client, units["traccar"]["id"])) == 1 and _reports(client) == 1


def test_owntracks_configuration_is_stored_without_credentials(
    client: TestClient, units: dict
) -> None:
    from sqlalchemy import select

    from service.store.models import DeviceReportRow
    from tests.protocols.test_owntracks import ANDROID_CONFIGURATION, CONFIGURATION_KEPT

    ot = units["owntracks"]["device_secret"]
    identity = {"X-Limit-U": "sari", "X-Limit-D": "pixel", "Authorization": ""}
    r = client.post(f"/api/v1/owntracks/{ot}", json=ANDROID_CONFIGURATION, headers=identity)
    assert r.status_code == 200, r.text
    with client.app.state.store.read() as session:  # type: ignore[attr-defined]
        [row] = session.scalars(select(DeviceReportRow)).all()
        assert (row.kind, row.attributes) == ("configuration", CONFIGURATION_KEPT)
