"""Enrolment: the QR codes decode to configurations that a phone then posts with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.areas.broker import phone_identity
from service.areas.enroll import (
    OWNTRACKS,
    TRACCAR,
    Enrolment,
    Link,
    enrol,
    tracker_id,
)
from service.config import Settings
from service.errors import Conflict
from service.store.db import Store
from tests.conftest import ADMIN_KEY
from tests.helpers import along, cli_env, run_patroli
from tests.qrcodes import decode_matrix, decode_terminal, owntracks_config

PUBLIC = "http://testserver"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def phone_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings whose public URL is the test client's, with no key caching (rotations apply at
    once, whoever made them)."""
    return make_settings(public_url=PUBLIC, key_cache_s=0)


@pytest.fixture
def http(phone_settings: Settings) -> Iterator[TestClient]:
    """A client of the app that sends no key unless told (a phone has only its link)."""
    with TestClient(create_app(phone_settings)) as c:
        yield c


def add_unit(http: TestClient, name: str, device_id: str) -> dict[str, Any]:
    r = http.post("/api/v1/units", json={"name": name, "device_id": device_id}, headers=ADMIN)
    assert r.status_code == 201, r.text
    unit: dict[str, Any] = r.json()
    return unit


def enrol_unit(http: TestClient, unit_id: int) -> Enrolment:
    store: Store = http.app.state.store  # type: ignore[attr-defined]
    settings: Settings = http.app.state.settings  # type: ignore[attr-defined]
    with store.write() as session:
        return enrol(session, unit_id, settings)


def scanned(enrolment: Enrolment, app: str) -> str:
    """What a phone's scanner reads from the unit's QR code for `app`."""
    (link,) = [link for link in enrolment.links if link.app == app]
    return decode_matrix(link.qr().matrix_iter(scale=1, border=4))


def traccar_post(http: TestClient, scanned_url: str, chainage_m: float) -> httpx.Response:
    """Traccar Client 9 set up from a scanned link (origin and path kept, id from the query)
    posting one location as its JSON body."""
    parts = urlsplit(scanned_url)
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    device_id = parse_qs(parts.query)["id"][0]
    lon, lat = along(chainage_m)
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    location = {
        "timestamp": ts,
        "coords": {"latitude": lat, "longitude": lon, "accuracy": 5, "speed": 3, "heading": 90},
        "is_moving": True,
        "battery": {"level": 0.8, "is_charging": False},
        "_": f"&id={device_id}&lat={lat}&lon={lon}&timestamp={ts}&",
    }
    return http.post(url, json={"location": location, "device_id": device_id})


def latest(http: TestClient) -> dict[str, Any]:
    """Device id → properties of the latest positions."""
    features = http.get("/api/v1/positions/latest", headers=ADMIN).json()["features"]
    return {f["properties"]["device_id"]: f["properties"] for f in features}


def test_traccar_qr_configures_a_client_that_posts(http: TestClient) -> None:
    unit = add_unit(http, "Polwan 01", "p01")
    enrolment = enrol_unit(http, unit["id"])
    url = scanned(enrolment, TRACCAR)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    assert parts.path.startswith("/api/v1/osmand/ptl_")
    assert parse_qs(parts.query) == {"id": ["p01"], "interval": ["30"], "accuracy": ["high"]}
    r = traccar_post(http, url, 100)
    assert r.status_code == 200, r.text
    assert latest(http)["p01"]["name"] == "Polwan 01"
    # The classic OsmAnd form: id and fix as query parameters of the configured server URL.
    lon, lat = along(150)
    now = int(datetime.now(UTC).timestamp())
    r = http.get(url.split("?")[0], params={"id": "p01", "lat": lat, "lon": lon, "timestamp": now})
    assert r.status_code == 200, r.text


def test_owntracks_qr_configures_an_app_that_posts(http: TestClient) -> None:
    unit = add_unit(http, "Sabhara 7", "sabhara/hp7")
    enrolment = enrol_unit(http, unit["id"])
    assert enrolment.notes == ()
    config = owntracks_config(scanned(enrolment, OWNTRACKS))
    assert config["_type"] == "configuration" and config["mode"] == 3
    assert (config["username"], config["deviceId"], config["tid"]) == ("sabhara", "hp7", "S7")
    assert config["url"].startswith(f"{PUBLIC}/api/v1/owntracks/ptl_")
    assert config["locatorInterval"] == 30
    # What OwnTracks sends in HTTP mode: X-Limit-U/-D, Basic auth with the configured user.
    lon, lat = along(200)
    message = {
        "_type": "location",
        "lat": lat,
        "lon": lon,
        "tst": int(datetime.now(UTC).timestamp()),
        "acc": 6,
        "tid": config["tid"],
    }
    r = http.post(
        config["url"],
        json=message,
        headers={"X-Limit-U": config["username"], "X-Limit-D": config["deviceId"]},
        auth=(config["username"], config["password"]),
    )
    assert r.status_code == 200, r.text
    assert r.json() == []
    assert latest(http)["sabhara/hp7"]["name"] == "Sabhara 7"


def test_rotation_refuses_the_old_qr(http: TestClient) -> None:
    unit = add_unit(http, "Polwan 02", "p02/hp")
    first = enrol_unit(http, unit["id"])
    old_traccar, old_owntracks = (
        scanned(first, TRACCAR),
        owntracks_config(scanned(first, OWNTRACKS)),
    )
    assert traccar_post(http, old_traccar, 100).status_code == 200

    second = enrol_unit(http, unit["id"])  # enrolling again rotates the secret
    new_traccar = scanned(second, TRACCAR)
    assert new_traccar != old_traccar
    r = traccar_post(http, old_traccar, 120)
    assert r.status_code == 401, r.text
    assert "revoked" in r.json()["detail"]
    r = http.post(
        old_owntracks["url"],
        json={"_type": "location", "lat": along(120)[1], "lon": along(120)[0], "tst": 1},
        headers={"X-Limit-U": "p02", "X-Limit-D": "hp"},
    )
    assert r.status_code == 401, r.text
    assert traccar_post(http, new_traccar, 140).status_code == 200

    # A rotation through the API also ends the enrolled link.
    r = http.post(f"/api/v1/units/{unit['id']}/secret", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert traccar_post(http, new_traccar, 160).status_code == 401


def test_enrolment_needs_the_public_url_and_then_revokes_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings())) as http:
        r = http.post("/api/v1/units", json={"name": "A", "device_id": "a"}, headers=ADMIN)
        unit = r.json()
        with pytest.raises(Conflict, match="PATROLI_PUBLIC_URL"):
            enrol_unit(http, unit["id"])
        lon, lat = along(100)
        r = http.get(
            f"/api/v1/osmand/{unit['device_secret']}",
            params={
                "id": "a",
                "lat": lat,
                "lon": lon,
                "timestamp": int(datetime.now(UTC).timestamp()),
            },
        )
        assert r.status_code == 200, r.text


def test_a_device_id_without_user_gets_only_traccar(http: TestClient) -> None:
    unit = add_unit(http, "Polwan 03", "p03")
    enrolment = enrol_unit(http, unit["id"])
    assert [link.app for link in enrolment.links] == [TRACCAR]
    assert "p03/phone" in enrolment.notes[0]


def test_identity_tracker_id_and_public_url_setting(
    make_settings: Callable[..., Settings],
) -> None:
    assert phone_identity("polres/hp1") == ("polres", "hp1")
    for bare in ("p01", "/hp", "polres/", "a/b/c"):
        assert phone_identity(bare) is None
    assert tracker_id("Polwan 01") == "P1"
    assert tracker_id("--") == "PT"
    assert make_settings(public_url="https://patroli.example.org/").public_url == (
        "https://patroli.example.org"
    )
    assert make_settings(public_url="").public_url is None
    for bad in ("patroli.example.org", "ftp://x", "https://x/?k=1", "https://u:p@x"):
        with pytest.raises(ValidationError):
            make_settings(public_url=bad)
    broker = make_settings(mqtt_public_url="mqtts://mqtt.example.org:8883/")
    assert broker.mqtt_public_url == "mqtts://mqtt.example.org:8883"
    for bad in ("mqtt.example.org", "https://x", "mqtt://x/t", "mqtt://u@x", "mqtt://x:99999"):
        with pytest.raises(ValidationError):
            make_settings(mqtt_public_url=bad)


def test_qr_renders_as_svg_and_terminal_text() -> None:
    link = Link(TRACCAR, "https://patroli.example.org/api/v1/osmand/ptl_x?id=p01&interval=30")
    assert link.svg_data_uri().startswith("data:image/svg+xml")
    assert decode_terminal(link.terminal()) == link.url


def test_cli_enroll_prints_links_and_qr_codes(
    phone_settings: Settings, database_url: str, tmp_path: Path
) -> None:
    with TestClient(create_app(phone_settings)) as http:
        unit = add_unit(http, "Polwan 04", "polres/p04")
        old = unit["device_secret"]
        env = cli_env(database_url, PATROLI_PUBLIC_URL=PUBLIC)
        done = run_patroli("units", "enroll", str(unit["id"]), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "Polwan 04" in out and "previous one no longer works" in out
        blocks = out.split("\n\n")
        urls = [line for line in out.splitlines() if line.startswith(("http", "owntracks:"))]
        assert len(urls) == 2
        decoded = [decode_terminal(block) for block in blocks if "█" in block]
        assert decoded == urls
        traccar, owntracks = urls
        assert traccar.startswith(f"{PUBLIC}/api/v1/osmand/ptl_") and old not in traccar
        assert owntracks_config(owntracks)["deviceId"] == "p04"
        assert traccar_post(http, traccar, 100).status_code == 200
        r = http.get(f"/api/v1/osmand/{old}", params={"id": "polres/p04", "lat": 0, "lon": 0})
        assert r.status_code == 401

        missing = run_patroli("units", "enroll", "999", env=env, cwd=tmp_path)
        assert missing.returncode == 2 and "unit 999 not found" in missing.stderr
