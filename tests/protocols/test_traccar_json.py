"""Traccar Client 9 JSON bodies (the background-geolocation location format)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from service.errors import BadRequest, InvalidInput
from service.protocols import DeviceReport
from service.protocols.osmand import parse_traccar_json, parse_traccar_json_body
from service.schemas import PingIn

NOW = datetime(2024, 11, 27, 2, 15, tzinfo=UTC)

# What Traccar Client 9 POSTs (its location template rendered; one location per request).
TRACCAR_CLIENT_9 = """{
  "location": {
    "timestamp": "2024-11-27T02:10:00.512Z",
    "coords": {
      "latitude": -1.2683,
      "longitude": 116.834,
      "accuracy": 4.8,
      "speed": 5.4,
      "heading": 91.3,
      "altitude": 12.1
    },
    "is_moving": true,
    "odometer": 15432.7,
    "event": "",
    "battery": {"level": 0.81, "is_charging": false},
    "activity": {"type": "in_vehicle"},
    "extras": {},
    "_": "&id=48241179&lat=-1.2683&lon=116.834&timestamp=2024-11-27T02:10:00.512Z&"
  },
  "device_id": "48241179"
}"""


def body(**location: Any) -> dict[str, Any]:
    data = json.loads(TRACCAR_CLIENT_9)
    data["location"].update(location)
    return data


def test_traccar_client_9_body_becomes_a_ping() -> None:
    p = parse_traccar_json(json.loads(TRACCAR_CLIENT_9), now=NOW)
    assert isinstance(p, PingIn)
    assert p.device_id == "48241179"
    assert (p.lat, p.lon) == (-1.2683, 116.834)
    assert p.ts == datetime(2024, 11, 27, 2, 10, 0, 512000, tzinfo=UTC)
    assert p.speed_mps == 5.4  # already m/s: no knots conversion
    assert (p.heading, p.accuracy_m, p.altitude_m, p.battery) == (91.3, 4.8, 12.1, 81)
    assert p.ping_id is None
    # Empty event and extras are noise; the "_" query-string copy is not kept.
    assert p.attributes == {
        "charge": False,
        "activity": "in_vehicle",
        "is_moving": True,
        "odometer": 15432.7,
    }


def test_unknown_speed_and_heading_are_none() -> None:
    data = body(coords={"latitude": -1.2683, "longitude": 116.834, "speed": -1, "heading": -1})
    p = parse_traccar_json(data, now=NOW)
    assert isinstance(p, PingIn)
    assert (p.speed_mps, p.heading) == (None, None)


def test_uuid_becomes_ping_id_and_other_fields_are_kept() -> None:
    data = body(
        uuid="9d5c5c37-2e1a-4c1b-8f0e-1f4ad1c0b6aa",
        event="heartbeat",
        extras={"heartbeat": True},
        mock=False,
        activity={"type": "still", "confidence": 100},
        battery={"level": -1, "is_charging": True},
    )
    p = parse_traccar_json(data, now=NOW)
    assert isinstance(p, PingIn)
    assert p.ping_id == "9d5c5c37-2e1a-4c1b-8f0e-1f4ad1c0b6aa"
    assert p.battery is None  # -1: level unknown
    assert p.attributes is not None
    assert p.attributes["event"] == "heartbeat"
    assert p.attributes["extras"] == {"heartbeat": True}
    assert p.attributes["mock"] is False
    assert (p.attributes["activity"], p.attributes["activity_confidence"]) == ("still", 100)
    assert p.attributes["charge"] is True


def test_location_without_coords_is_a_status_report() -> None:
    data = json.loads(TRACCAR_CLIENT_9)
    del data["location"]["coords"]
    report = parse_traccar_json(data, now=NOW)
    assert isinstance(report, DeviceReport)
    assert (report.device_id, report.kind) == ("48241179", "status")
    assert report.ts == datetime(2024, 11, 27, 2, 10, 0, 512000, tzinfo=UTC)
    assert report.attributes["battery"] == 81
    assert report.attributes["is_moving"] is True


def test_missing_timestamp_means_now() -> None:
    data = json.loads(TRACCAR_CLIENT_9)
    del data["location"]["timestamp"]
    assert parse_traccar_json(data, now=NOW).ts == NOW


def test_batched_locations_are_parsed_in_order() -> None:
    first = json.loads(TRACCAR_CLIENT_9)["location"]
    second = {**first, "timestamp": "2024-11-27T02:11:00Z", "uuid": "b"}
    parsed = parse_traccar_json_body(
        {"device_id": "48241179", "location": [first, second]}, now=NOW
    )
    assert [p.ts.minute for p in parsed] == [10, 11]
    with pytest.raises(BadRequest, match="one location object per request"):
        parse_traccar_json({"device_id": "48241179", "location": [first, second]}, now=NOW)


@pytest.mark.parametrize(
    "data",
    [
        {"location": {"coords": {"latitude": 1, "longitude": 2}}},
        {"device_id": "  ", "location": {"coords": {"latitude": 1, "longitude": 2}}},
        {"device_id": "48241179"},
        ["not", "an", "object"],
        {"device_id": "48241179", "location": {"timestamp": "yesterday"}},
        {"device_id": "48241179", "location": {"coords": {"latitude": 1}}},
    ],
)
def test_malformed_bodies_are_bad_requests(data: Any) -> None:
    with pytest.raises(BadRequest):
        parse_traccar_json(data, now=NOW)


def test_non_numeric_coordinate_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"location\.coords\.latitude"):
        parse_traccar_json(body(coords={"latitude": "north", "longitude": 116.8}), now=NOW)


def test_out_of_range_latitude_fails_validation() -> None:
    with pytest.raises(ValidationError):
        parse_traccar_json(body(coords={"latitude": 95.0, "longitude": 116.8}), now=NOW)
