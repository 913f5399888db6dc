"""Traccar Client's JSON list of flat OsmAnd positions (its offline buffer) on the OsmAnd door."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.errors import BadRequest, PayloadTooLarge
from service.protocols import DeviceReport
from service.protocols.osmand import parse_osmand_json_list
from service.schemas import PingIn
from tests.conftest import ADMIN_KEY

NOW = datetime(2024, 11, 27, 3, 0, tzinfo=UTC)
BUFFER = [
    {
        "id": "48241179",
        "lat": -1.2683,
        "lon": 116.834,
        "timestamp": 1732673400,
        "speed": 10.5,
        "bearing": 90.0,
        "altitude": 12.0,
        "accuracy": 5.0,
        "batt": 81.0,
        "charge": True,
    },
    {
        "id": "48241179",
        "lat": -1.2684,
        "lon": 116.8341,
        "timestamp": "2024-11-27 02:10:30",
        "speed": 0,
        "batt": 80,
        "wifi": ["00:11:22:33:44:55,-60", "66:77:88:99:aa:bb,-72"],
    },
    {"id": "48241179", "timestamp": 1732673460, "batt": 79},  # no fix: a status report
]


@pytest.fixture
def secret(client: TestClient) -> str:
    """The device secret of a Traccar Client phone's unit."""
    unit = client.post("/api/v1/units", json={"name": "Polwan 02", "device_id": "48241179"})
    return str(unit.json()["device_secret"])


def _post(client: TestClient, body: Any, secret: str) -> Any:
    return client.post(f"/api/v1/osmand/{secret}", json=body, headers={"Authorization": ""})


def _fixes(client: TestClient) -> list[dict[str, Any]]:
    unit = client.get("/api/v1/units").json()[0]["id"]
    r = client.get(f"/api/v1/units/{unit}/track", params={"from": "2024-11-26", "to": "2024-11-28"})
    return [f for f in r.json()["features"] if f["properties"]["kind"] == "fix"]


def test_each_element_reads_like_one_osmand_request() -> None:
    first, second, status = parse_osmand_json_list(BUFFER, now=NOW, max_batch=10)
    assert isinstance(first, PingIn) and isinstance(second, PingIn)
    assert isinstance(status, DeviceReport)
    assert first.ts == datetime(2024, 11, 27, 2, 10, tzinfo=UTC)
    assert first.speed_mps == pytest.approx(10.5 * 1852 / 3600)
    assert (first.heading, first.battery) == (90.0, 81.0)
    assert first.attributes == {"charge": True}
    assert second.attributes == {"wifi": BUFFER[1]["wifi"]}
    assert status.kind == "status" and status.attributes["battery"] == 79


def test_list_errors() -> None:
    with pytest.raises(PayloadTooLarge, match="batch of 3 positions exceeds the limit of 2"):
        parse_osmand_json_list(BUFFER, now=NOW, max_batch=2)
    with pytest.raises(BadRequest, match="empty list"):
        parse_osmand_json_list([], now=NOW, max_batch=2)
    with pytest.raises(BadRequest, match="JSON object"):
        parse_osmand_json_list([1], now=NOW, max_batch=2)
    with pytest.raises(BadRequest, match="lat must be a string, number or boolean"):
        parse_osmand_json_list([{"id": "x", "lat": {"v": 1}}], now=NOW, max_batch=2)


def test_buffer_is_stored_through_the_osmand_door(client: TestClient, secret: str) -> None:
    r = _post(client, BUFFER, secret)
    assert r.status_code == 200, r.text
    assert r.content == b""
    fixes = _fixes(client)
    assert [f["properties"]["ts"] for f in fixes] == [
        "2024-11-27T02:10:00+00:00",
        "2024-11-27T02:10:30+00:00",
    ]
    assert {f["properties"]["source"] for f in fixes} == {"osmand"}
    assert [f["properties"]["battery"] for f in fixes] == [81, 80]
    r = _post(client, BUFFER, secret)  # the buffer sent again: duplicates, not stored twice
    assert r.status_code == 200
    assert len(_fixes(client)) == 2


def test_same_errors_as_one_request(client: TestClient, secret: str) -> None:
    bad = [BUFFER[0], {**BUFFER[1], "lat": 95}]
    r = _post(client, bad, secret)
    assert r.status_code == 422 and "lat" in r.json()["detail"]
    r = _post(client, [{"lat": 1, "lon": 2}], secret)
    assert r.status_code == 400 and "device id" in r.json()["detail"]
    r = _post(client, [{**BUFFER[0], "id": "sari/pixel"}], secret)
    assert r.status_code == 403  # a device secret speaks for its own unit only
    r = client.post("/api/v1/osmand", json=BUFFER, headers={"Authorization": ""})
    assert r.status_code == 401  # no secret: nothing else is said
    r = _post(client, [], secret)
    assert r.status_code == 400
    assert _fixes(client) == []


def test_list_bounded_by_max_batch(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_batch=2))) as small:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        small.post("/api/v1/units", json={"name": "P", "device_id": "48241179"}, headers=admin)
        r = small.post("/api/v1/osmand", json=BUFFER, headers=admin)
    assert r.status_code == 413
    assert "limit of 2" in r.json()["detail"]
