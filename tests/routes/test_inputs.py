"""Bad input anywhere gets a 4xx that names it, the same on SQLite and PostGIS: ids beyond their
column, control characters and NUL in text, out-of-range times and limits."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import LAT, LON0, circle_feature, ping, route_feature

HUGE = 3_000_000_000  # beyond PostgreSQL INTEGER
HUGER = 2**63  # beyond SQLite INTEGER


@pytest.fixture
def ids(client: TestClient) -> dict[str, int]:
    route = client.post("/api/v1/patrol-routes", json=route_feature()).json()["id"]
    fence = client.post("/api/v1/geofences", json=circle_feature(LON0, LAT)).json()["id"]
    unit = client.post("/api/v1/units", json={"name": "A", "device_id": "u1"}).json()["id"]
    hook = client.post("/api/v1/webhooks", json={"url": "http://93.184.215.14/patroli"})
    return {"route": route, "fence": fence, "unit": unit, "hook": hook.json()["id"]}


@pytest.mark.parametrize("huge", [HUGE, HUGER])
@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/api/v1/units/{huge}", "unit_id"),
        ("PATCH", "/api/v1/units/{huge}", "unit_id"),
        ("DELETE", "/api/v1/units/{huge}", "unit_id"),
        ("POST", "/api/v1/units/{huge}/secret", "unit_id"),
        ("GET", "/api/v1/units/{huge}/assignments", "unit_id"),
        ("DELETE", "/api/v1/units/{huge}/assignments/{huge}", "route_id"),
        ("GET", "/api/v1/units/{huge}/track", "unit_id"),
        ("GET", "/api/v1/units/{huge}/track.gpx", "unit_id"),
        ("GET", "/api/v1/patrol-routes/{huge}", "route_id"),
        ("DELETE", "/api/v1/patrol-routes/{huge}", "route_id"),
        ("GET", "/api/v1/geofences/{huge}", "geofence_id"),
        ("GET", "/api/v1/presence/geofences/{huge}", "geofence_id"),
        ("GET", "/api/v1/coverage/patrol-routes/{huge}", "route_id"),
        ("GET", "/api/v1/coverage/patrol-routes/{huge}/compliance", "route_id"),
        ("DELETE", "/api/v1/keys/{huge}", "key_id"),
        ("GET", "/api/v1/webhooks/{huge}", "webhook_id"),
        ("GET", "/api/v1/webhooks/{huge}/deliveries", "webhook_id"),
        ("GET", "/api/v1/events?unit={huge}", "unit"),
        ("GET", "/api/v1/events?geofence={huge}", "geofence"),
        ("GET", "/api/v1/events?patrol_route={huge}", "patrol_route"),
        ("GET", "/api/v1/coverage/patrol-routes/1?unit={huge}", "unit"),
        ("GET", "/maps/replay?unit={huge}", "unit"),
        ("GET", "/api/v1/stream?unit={huge}", "unit"),
    ],
)
def test_ids_beyond_the_column_range_are_a_422_naming_them(
    client: TestClient, method: str, path: str, name: str, huge: int
) -> None:
    r = client.request(method, path.format(huge=huge), json={} if method == "PATCH" else None)
    assert r.status_code == 422, r.text
    assert name in r.json()["detail"] and "2147483647" in r.json()["detail"]


def test_big_ids_are_checked_against_64_bits(client: TestClient) -> None:
    r = client.post(f"/api/v1/webhooks/deliveries/{HUGER}/redeliver")
    assert r.status_code == 422 and "delivery_id" in r.json()["detail"]
    assert client.post(f"/api/v1/webhooks/deliveries/{HUGE}/redeliver").status_code == 404
    assert client.get("/api/v1/events", params={"after": HUGER}).status_code == 422
    assert client.get("/api/v1/events", params={"after": 0}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "name"),
    [
        ("/api/v1/units", {"name": "A", "device_id": "x", "patrol_route_ids": [HUGE]}, "0"),
        ("/api/v1/units/{unit}/assignments", {"patrol_route_id": HUGE}, "patrol_route_id"),
        ("/api/v1/keys", {"name": "k", "role": "tracker", "unit_id": HUGE}, "unit_id"),
        ("/api/v1/pings", {**ping("u1", 0, 0), "device_id": None, "unit_id": 2**70}, "unit_id"),
    ],
)
def test_ids_in_bodies_beyond_the_column_range_are_a_422(
    client: TestClient, ids: dict[str, int], path: str, body: dict, name: str
) -> None:
    r = client.post(path.format(**ids), json=body)
    # 422, never the 503 a tracker would retry for ever
    assert r.status_code == 422, r.text
    assert name in r.json()["detail"]


def test_gpx_upload_to_a_unit_id_beyond_the_column_is_a_422(client: TestClient) -> None:
    gpx = b'<gpx version="1.1"><trk><trkseg></trkseg></trk></gpx>'
    r = client.post(f"/api/v1/units/{2**31}/gpx", files={"file": ("t.gpx", gpx)})
    assert r.status_code == 422 and "unit_id" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/units", {"name": "A{c}", "device_id": "d-new"}, "name"),
        ("/api/v1/units", {"name": "A", "device_id": "d{c}"}, "device_id"),
        ("/api/v1/units", {"name": "A", "device_id": "d-new", "kind": "k{c}"}, "kind"),
        ("/api/v1/keys", {"name": "k{c}", "role": "viewer"}, "name"),
        ("/api/v1/webhooks", {"url": "http://exa{c}mple.com/"}, "url"),
        ("/api/v1/webhooks", {"url": "http://example.com/", "secret": "s3cr3t-{c}-x"}, "secret"),
        ("/api/v1/pings", {**ping("u1", 0, 0), "device_id": "u{c}1"}, "device_id"),
        ("/api/v1/pings", {**ping("u1", 0, 0), "ping_id": "p{c}"}, "ping_id"),
        ("/api/v1/patrol-routes", route_feature(name="R{c}"), "name"),
        ("/api/v1/geofences", circle_feature(LON0, LAT, name="G{c}"), "name"),
        ("/api/v1/geofences", circle_feature(LON0, LAT, kind="k{c}"), "kind"),
    ],
)
def test_control_characters_in_names_are_a_422_naming_the_field(
    client: TestClient, path: str, body: dict, field: str
) -> None:
    for char in ("\x00", "\x1b", "\r", "\n", "\x7f"):

        def fill(value: object, char: str = char) -> object:
            if isinstance(value, str):
                return value.replace("{c}", char)
            if isinstance(value, dict):
                return {k: fill(v) for k, v in value.items()}
            return value

        r = client.post(path, json=fill(body))
        assert r.status_code == 422, (char, r.text)
        assert field in r.json()["detail"] and "control characters" in r.json()["detail"]


def test_patches_refuse_control_characters_too(client: TestClient, ids: dict[str, int]) -> None:
    for path, body in (
        (f"/api/v1/units/{ids['unit']}", {"name": "A\x00"}),
        (f"/api/v1/patrol-routes/{ids['route']}", {"properties": {"name": "R\x00"}}),
        (f"/api/v1/geofences/{ids['fence']}", {"properties": {"kind": "k\x00"}}),
    ):
        r = client.patch(path, json=body)
        assert r.status_code == 422 and "control characters" in r.json()["detail"], r.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "A\\ud800", "device_id": "x"}',  # a lone surrogate
        b'{"name": "A\\u0000", "device_id": "x"}',
    ],
)
def test_unstorable_text_in_json_escapes_is_a_422(client: TestClient, raw: bytes) -> None:
    r = client.post("/api/v1/units", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "name" in r.json()["detail"], r.text
    assert client.get("/api/v1/units").json() == []


@pytest.mark.parametrize("escape", ["\\u0000", "\\udc00"])
def test_ping_attributes_that_cannot_be_stored_are_refused_naming_where(
    client: TestClient, ids: dict[str, int], escape: str
) -> None:
    body = (
        '{"device_id": "u1", "lat": -1.268, "lon": 116.83, "ts": "2024-11-26T23:00:00Z", '
        f'"attributes": {{"cell": ["ok", "x{escape}"]}}}}'
    ).encode()
    r = client.post("/api/v1/pings", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "attributes.cell[1]" in r.json()["detail"], r.text
    tab = body.replace(escape.encode(), b"\\t")  # other control characters are data
    r = client.post("/api/v1/pings", content=tab, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def test_tracker_protocols_refuse_unstorable_device_ids_and_messages(
    client: TestClient, ids: dict[str, int]
) -> None:
    r = client.get("/api/v1/osmand", params={"id": "u\x001", "lat": "-1.268", "lon": "116.83"})
    assert r.status_code == 422 and "device id" in r.json()["detail"], r.text
    r = client.get("/api/v1/osmand", params={"id": "u1", "batt": "50", "note": "a\x00b"})
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text
    headers = {"X-Limit-U": "polres", "X-Limit-D": "hp-07"}
    client.post("/api/v1/units", json={"name": "HP", "device_id": "polres/hp-07"})
    r = client.post("/api/v1/owntracks", json={"_type": "x" * 41}, headers=headers)
    assert r.status_code == 422 and "40" in r.json()["detail"], r.text  # both backends alike
    r = client.post("/api/v1/owntracks", json={"_type": "card", "name": "\x00"}, headers=headers)
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text


def test_deliveries_limit_is_checked_and_any_allowed_value_works(
    client: TestClient, ids: dict[str, int]
) -> None:
    url = f"/api/v1/webhooks/{ids['hook']}/deliveries"
    for limit in (1, 513, 1000):
        assert client.get(url, params={"limit": limit}).status_code == 200
    for limit in (0, 1001, HUGER):
        r = client.get(url, params={"limit": limit})
        assert r.status_code == 422 and "limit" in r.json()["detail"]


@pytest.mark.parametrize("cursor", ["²-1", "1-²", "٣-1", "1" * 5000 + "-1", "1--1", "-1-1"])
def test_stream_positions_that_are_not_ascii_numbers_are_a_422(
    client: TestClient, cursor: str
) -> None:
    r = client.get("/api/v1/stream", params={"last_event_id": cursor})
    assert r.status_code == 422 and "stream position" in r.json()["detail"], r.text


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nested beyond any parser's depth
        b'{"device_id": "u1", "location": {"coords": {"latitude": ' + b"9" * 5000 + b"}}}",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/osmand", "/api/v1/owntracks?u=a&d=b", "/api/v1/pings"])
def test_json_no_parser_can_read_is_a_400(client: TestClient, path: str, body: bytes) -> None:
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
