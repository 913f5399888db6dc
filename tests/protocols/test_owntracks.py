"""OwnTracks HTTP mode: identity from headers/query/Basic auth, and real app payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from service.errors import BadRequest, InvalidInput
from service.protocols import DeviceReport
from service.protocols.owntracks import (
    owntracks_device_id,
    owntracks_identity,
    parse_owntracks,
    parse_owntracks_body,
)
from service.schemas import PingIn

NOW = datetime(2024, 11, 27, 2, 15, tzinfo=UTC)
DEVICE = "polres/hp-07"

# Android app 2.4 location message in HTTP mode.
ANDROID_LOCATION: dict[str, Any] = {
    "_type": "location",
    "acc": 12,
    "alt": 48,
    "batt": 81,
    "bs": 1,
    "conn": "m",
    "created_at": 1732673401,
    "lat": -1.2683,
    "lon": 116.834,
    "m": 1,
    "t": "u",
    "tid": "07",
    "topic": "owntracks/polres/hp-07",
    "tst": 1732673400,
    "vac": 3,
    "vel": 36,
}

# iOS app location message with extended data (heading, pressure, Wi-Fi, regions).
IOS_LOCATION: dict[str, Any] = {
    "_type": "location",
    "BSSID": "a4:2b:b0:11:22:33",
    "SSID": "POLRES-BPN",
    "acc": 5,
    "alt": 21,
    "batt": 64,
    "bs": 2,
    "cog": 270,
    "conn": "w",
    "created_at": 1732673460,
    "inregions": ["Mapolresta"],
    "lat": -1.2690,
    "lon": 116.8351,
    "m": 2,
    "p": 100.87,
    "tid": "07",
    "topic": "owntracks/polres/hp-07",
    "tst": 1732673459,
    "vac": 4,
    "vel": 0,
}

TRANSITION: dict[str, Any] = {
    "_type": "transition",
    "acc": 10,
    "desc": "Mapolresta",
    "event": "enter",
    "lat": -1.2690,
    "lon": 116.8351,
    "rid": "6da9cf",
    "t": "c",
    "tid": "07",
    "tst": 1732673459,
    "wtst": 1730000000,
}


def test_android_location_becomes_a_ping() -> None:
    p = parse_owntracks(ANDROID_LOCATION, device_id=DEVICE, now=NOW)
    assert isinstance(p, PingIn)
    assert p.device_id == DEVICE
    assert (p.lat, p.lon) == (-1.2683, 116.834)
    assert p.ts == datetime(2024, 11, 27, 2, 10, tzinfo=UTC)
    assert p.speed_mps == pytest.approx(10.0)  # 36 km/h
    assert (p.accuracy_m, p.altitude_m, p.battery, p.heading) == (12, 48, 81, None)
    assert p.attributes == {
        "bs": 1,
        "conn": "m",
        "created_at": 1732673401,
        "m": 1,
        "t": "u",
        "tid": "07",
        "topic": "owntracks/polres/hp-07",
        "vac": 3,
    }


def test_ios_location_keeps_course_and_extended_data() -> None:
    p = parse_owntracks(IOS_LOCATION, device_id=DEVICE, now=NOW)
    assert isinstance(p, PingIn)
    assert (p.heading, p.speed_mps, p.battery) == (270, 0, 64)
    assert p.attributes is not None
    assert p.attributes["SSID"] == "POLRES-BPN"
    assert p.attributes["inregions"] == ["Mapolresta"]
    assert p.attributes["p"] == 100.87


def test_old_apps_numbers_as_strings_are_accepted() -> None:
    message = {"_type": "location", "lat": "-1.2683", "lon": "116.834", "tst": "1732673400"}
    p = parse_owntracks(message, device_id=DEVICE, now=NOW)
    assert isinstance(p, PingIn)
    assert (p.lat, p.ts) == (-1.2683, datetime(2024, 11, 27, 2, 10, tzinfo=UTC))


def test_missing_tst_means_now() -> None:
    p = parse_owntracks({"_type": "location", "lat": 1.0, "lon": 2.0}, device_id=DEVICE, now=NOW)
    assert p.ts == NOW


def test_transition_is_a_report_with_the_whole_message() -> None:
    report = parse_owntracks(TRANSITION, device_id=DEVICE, now=NOW)
    assert isinstance(report, DeviceReport)
    assert (report.kind, report.device_id) == ("transition", DEVICE)
    assert report.ts == datetime(2024, 11, 27, 2, 10, 59, tzinfo=UTC)
    assert report.attributes == {k: v for k, v in TRANSITION.items() if k != "_type"}


@pytest.mark.parametrize(
    "message",
    [
        {"_type": "lwt", "tst": 1732600000},
        {
            "_type": "waypoint",
            "desc": "Pos Lantas",
            "lat": -1.27,
            "lon": 116.83,
            "rad": 50,
            "tst": 1730000000,
        },
    ],
)
def test_lwt_and_waypoint_are_reported_now(message: dict[str, Any]) -> None:
    # Their tst is the connect or creation time, not when the message was sent.
    report = parse_owntracks(message, device_id=DEVICE, now=NOW)
    assert isinstance(report, DeviceReport)
    assert (report.kind, report.ts) == (message["_type"], NOW)
    assert report.attributes["tst"] == message["tst"]


# What a configuration keeps: how the phone reports.
CONFIGURATION_KEPT = {
    "mode": 3,
    "monitoring": 1,
    "tid": "07",
    "deviceId": "hp-07",
    "locatorInterval": 60,
    "locatorDisplacement": 50,
    "pubExtendedData": True,
}
# An Android app's configuration as it reports it (`_type: configuration`), with every
# credential the phone holds.
ANDROID_CONFIGURATION: dict[str, Any] = {
    "_type": "configuration",
    **CONFIGURATION_KEPT,
    "url": "https://patroli.example/api/v1/owntracks/ptl_device_secret_in_url",
    "host": "broker.polres.local",
    "port": 8883,
    "username": "polres",
    "password": "hunter2",
    "usePassword": True,
    "auth": True,
    "encryptionKey": "k3y",
    "opencageApiKey": "oc-123456",
    "tlsClientCrt": "MIIKcQIBAzCCCjcGCSqGSIb3DQEHAaCCCig",
    "tlsClientCrtPassword": "p12pass",
    "clientId": "polres-hp07",
    "waypoints": [{"_type": "waypoint", "desc": "Pos", "tst": 1, "rad": 50}],
}


def test_a_configuration_keeps_only_how_the_phone_reports() -> None:
    report = parse_owntracks(ANDROID_CONFIGURATION, device_id=DEVICE, now=NOW)
    assert isinstance(report, DeviceReport)
    assert report.attributes == CONFIGURATION_KEPT


def test_no_message_keeps_a_credential() -> None:
    dump = {"_type": "dump", "configuration": ANDROID_CONFIGURATION, "internal": {"a": 1}}
    report = parse_owntracks(dump, device_id=DEVICE, now=NOW)
    assert isinstance(report, DeviceReport)
    assert report.attributes == {
        "configuration": {"_type": "configuration", **CONFIGURATION_KEPT},
        "internal": {"a": 1},
    }
    card = {"_type": "card", "name": "Polwan 07", "accessToken": "t", "extra": {"Secret": "s"}}
    report = parse_owntracks(card, device_id=DEVICE, now=NOW)
    assert isinstance(report, DeviceReport)
    assert report.attributes == {"name": "Polwan 07", "extra": {}}
    ping = parse_owntracks(
        {**ANDROID_LOCATION, "apiKey": "x", "session_token": "y"}, device_id=DEVICE, now=NOW
    )
    assert isinstance(ping, PingIn) and ping.attributes is not None
    assert not {"apiKey", "session_token"} & ping.attributes.keys()
    assert ping.attributes["topic"] == "owntracks/polres/hp-07"


def test_body_may_be_one_message_an_array_or_empty() -> None:
    parsed = parse_owntracks_body([ANDROID_LOCATION, TRANSITION], device_id=DEVICE, now=NOW)
    assert [type(p).__name__ for p in parsed] == ["PingIn", "DeviceReport"]
    assert len(parse_owntracks_body(IOS_LOCATION, device_id=DEVICE, now=NOW)) == 1
    assert parse_owntracks_body(None, device_id=DEVICE, now=NOW) == []
    assert parse_owntracks_body([], device_id=DEVICE, now=NOW) == []


@pytest.mark.parametrize(
    "message",
    [
        {"lat": 1.0, "lon": 2.0, "tst": 1732673400},
        {"_type": "location", "lon": 2.0, "tst": 1732673400},
        {"_type": "location", "lat": 1.0, "lon": 2.0, "tst": "yesterday"},
        "location",
    ],
)
def test_malformed_messages_are_bad_requests(message: Any) -> None:
    with pytest.raises(BadRequest):
        parse_owntracks(message, device_id=DEVICE, now=NOW)


def test_bad_and_out_of_range_values() -> None:
    with pytest.raises(InvalidInput, match="lat"):
        parse_owntracks({"_type": "location", "lat": "abc", "lon": 2.0}, device_id=DEVICE, now=NOW)
    with pytest.raises(ValidationError):
        parse_owntracks({"_type": "location", "lat": 95.0, "lon": 2.0}, device_id=DEVICE, now=NOW)


# ---- identity ------------------------------------------------------------------------------


def test_identity_from_the_headers_the_apps_send() -> None:
    headers = {"X-Limit-U": "polres", "X-Limit-D": "hp-07", "Content-Type": "application/json"}
    assert owntracks_identity("someone-else", headers, {}) == ("polres", "hp-07")
    assert owntracks_device_id("polres", "hp-07") == "polres/hp-07"


def test_identity_headers_are_case_insensitive() -> None:
    assert owntracks_identity(None, {"x-limit-u": "polres", "x-limit-d": "hp-07"}, {}) == (
        "polres",
        "hp-07",
    )


def test_identity_from_the_query_then_basic_auth_user() -> None:
    assert owntracks_identity(None, {}, {"u": "polres", "d": "hp-07"}) == ("polres", "hp-07")
    assert owntracks_identity("polres", {}, {"d": "hp-07"}) == ("polres", "hp-07")


@pytest.mark.parametrize(
    ("basic", "headers", "query", "message"),
    [
        (None, {}, {"d": "hp-07"}, "missing OwnTracks user"),
        ("polres", {}, {}, "missing OwnTracks device"),
        ("polres", {"X-Limit-D": "  "}, {}, "missing OwnTracks device"),
        ("polres", {"X-Limit-D": "a/b"}, {}, "must not contain '/'"),
        ("polres", {"X-Limit-D": "x" * 200}, {}, "longer than 200"),
    ],
)
def test_identity_that_cannot_be_determined_is_a_bad_request(
    basic: str | None, headers: dict[str, str], query: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        owntracks_identity(basic, headers, query)


def test_encrypted_message_is_reported_undecrypted() -> None:
    message = {"_type": "encrypted", "data": "c2VjcmV0Ym94IGNpcGhlcnRleHQ="}
    report = parse_owntracks(message, device_id=DEVICE, now=NOW)
    assert report == DeviceReport(
        device_id=DEVICE, ts=NOW, kind="encrypted", attributes={"data": message["data"]}
    )
