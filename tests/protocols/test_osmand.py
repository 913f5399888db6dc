"""OsmAnd parameters exactly as Traccar Client and compatible apps send them."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from service.errors import BadRequest, InvalidInput
from service.protocols import DeviceReport
from service.protocols.osmand import parse_osmand
from service.schemas import PingIn

NOW = datetime(2024, 11, 27, 2, 15, tzinfo=UTC)


def params(url_or_body: str) -> dict[str, list[str]]:
    """Decoded multi-valued parameters of a request line (`/?a=1`) or a form body (`a=1`)."""
    query = urlsplit(url_or_body).query if url_or_body.startswith("/") else url_or_body
    return parse_qs(query, keep_blank_values=True)


def ping(url_or_body: str, **kwargs: str) -> PingIn:
    parsed = parse_osmand(params(url_or_body), now=NOW, **kwargs)  # type: ignore[arg-type]
    assert isinstance(parsed, PingIn)
    return parsed


def test_traccar_client_query_string_becomes_a_ping() -> None:
    p = ping(
        "/?id=123456&timestamp=1700000000&lat=-1.2683&lon=116.834&speed=10.5"
        "&bearing=90&altitude=12&accuracy=5&batt=81"
    )
    assert p.device_id == "123456"
    assert (p.lat, p.lon) == (-1.2683, 116.834)
    assert p.ts == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert p.speed_mps == pytest.approx(5.4017, abs=1e-4)  # 10.5 kn
    assert (p.heading, p.altitude_m, p.accuracy_m, p.battery) == (90, 12, 5, 81)
    assert p.attributes is None


def test_form_post_body_parses_like_the_query_string() -> None:
    body = "id=123456&timestamp=1700000000&lat=-1.2683&lon=116.834&speed=0.0&bearing=0.0&batt=55.0"
    p = ping(body)
    assert (p.device_id, p.lat, p.lon, p.speed_mps, p.heading, p.battery) == (
        "123456",
        -1.2683,
        116.834,
        0,
        0,
        55,
    )


def test_deviceid_and_location_pair_are_accepted() -> None:
    p = ping("/?deviceid=hp-07&timestamp=1700000000&location=-1.2683,116.834")
    assert (p.device_id, p.lat, p.lon) == ("hp-07", -1.2683, 116.834)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000123", datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)),
        ("1442068686579", datetime(2015, 9, 12, 14, 38, 6, 579000, tzinfo=UTC)),
        ("946684800", datetime(2000, 1, 1, tzinfo=UTC)),  # the earliest fix time, in seconds
        ("946684800000", datetime(2000, 1, 1, tzinfo=UTC)),  # and in milliseconds
        ("2024-11-27+02%3A10%3A00", datetime(2024, 11, 27, 2, 10, tzinfo=UTC)),
        ("2024-11-27T10%3A10%3A00%2B08%3A00", datetime(2024, 11, 27, 2, 10, tzinfo=UTC)),
        ("2016-01-27T18%3A55%3A47Z", datetime(2016, 1, 27, 18, 55, 47, tzinfo=UTC)),
        ("2024-11-27T02%3A10%3A00", datetime(2024, 11, 27, 2, 10, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(stamp: str, expected: datetime) -> None:
    p = ping(f"/?id=1&lat=-1.2683&lon=116.834&timestamp={stamp}")
    assert p.ts == expected
    assert p.ts.tzinfo is not None and p.ts.utcoffset() == UTC.utcoffset(None)


@pytest.mark.parametrize(
    "stamp",
    [
        "253402300800",  # 9999-12-31 in seconds: not 1978 in milliseconds
        "2147483647",  # 2038 in seconds, 1970-01-25 in milliseconds: neither is valid
        "946684799",  # a second before 2000-01-01
        "0",
        "-1700000000",
        "1e300",
        "nan",
    ],
)
def test_numeric_timestamps_outside_the_valid_range_are_refused(stamp: str) -> None:
    with pytest.raises(InvalidInput, match=r"timestamp=.*neither Unix seconds"):
        parse_osmand(params(f"/?id=1&lat=1&lon=2&timestamp={stamp}"), now=NOW)


def test_missing_timestamp_means_now() -> None:
    assert ping("/?id=1&lat=-1.2683&lon=116.834").ts == NOW


def test_unparseable_timestamp_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="timestamp"):
        parse_osmand(params("/?id=1&lat=1&lon=2&timestamp=yesterday"), now=NOW)


@pytest.mark.parametrize(
    ("unit", "expected"), [("knots", 5.144444), ("kmh", 2.777778), ("mps", 10), ("mph", 4.4704)]
)
def test_speed_unit_is_configurable(unit: str, expected: float) -> None:
    p = ping("/?id=1&lat=-1.2683&lon=116.834&speed=10", speed_unit=unit)
    assert p.speed_mps == pytest.approx(expected, abs=1e-6)


def test_heading_parameter_and_unknown_negative_values() -> None:
    p = ping("/?id=1&lat=-1.2683&lon=116.834&heading=270&speed=-1&accuracy=-1")
    assert (p.heading, p.speed_mps, p.accuracy_m) == (270, None, None)


def test_invalid_fix_is_kept_but_marked() -> None:
    p = ping("/?id=1&lat=-1.2683&lon=116.834&valid=false&hdop=6.0")
    assert (p.lat, p.lon) == (-1.2683, 116.834)
    assert p.attributes == {"valid": False, "hdop": 6.0}
    assert ping("/?id=1&lat=-1.2683&lon=116.834&valid=0").attributes == {"valid": False}
    assert ping("/?id=1&lat=-1.2683&lon=116.834&valid=1").attributes is None


def test_cell_and_wifi_keep_every_value_and_unknown_keys_are_attributes() -> None:
    p = ping(
        "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0"
        "&cell=257,02,16,2224&cell=257,02,16,2223,-90"
        "&wifi=00-14-22-01-23-45,-80&wifi=00-1C-B3-09-85-15,-70"
        "&charge=true&alarm=sos&mock=true&driverUniqueId=NRP-8801&tag=a&tag=b"
        "&key=s3cret-device-key"
    )
    assert p.attributes == {
        "cell": ["257,02,16,2224", "257,02,16,2223,-90"],
        "wifi": ["00-14-22-01-23-45,-80", "00-1C-B3-09-85-15,-70"],
        "charge": True,
        "alarm": "sos",
        "mock": "true",
        "driverUniqueId": "NRP-8801",
        "tag": ["a", "b"],
    }


def test_device_secret_is_never_kept() -> None:
    p = ping("/?id=1&lat=-1.2683&lon=116.834&key=s3cret-device-key")
    assert p.attributes is None
    assert "s3cret" not in p.model_dump_json()


def test_request_without_coordinates_is_a_status_report() -> None:
    parsed = parse_osmand(
        params("/?id=123456&timestamp=1377177267&batt=15&charge=false&cell=257,02,16,2224"),
        now=NOW,
    )
    assert parsed == DeviceReport(
        device_id="123456",
        ts=datetime(2013, 8, 22, 13, 14, 27, tzinfo=UTC),
        kind="status",
        attributes={"battery": 15, "charge": False, "cell": ["257,02,16,2224"]},
    )


def test_zero_zero_is_no_fix() -> None:
    parsed = parse_osmand(params("/?id=1&lat=0&lon=0&batt=40"), now=NOW)
    assert isinstance(parsed, DeviceReport)
    assert (parsed.kind, parsed.ts, parsed.attributes) == ("status", NOW, {"battery": 40})


def test_empty_values_count_as_absent() -> None:
    parsed = parse_osmand(params("/?id=1&lat=&lon=&speed=&batt=70"), now=NOW)
    assert isinstance(parsed, DeviceReport)
    assert parsed.attributes == {"battery": 70}


@pytest.mark.parametrize("query", ["/?lat=60.0&lon=30.0&timestamp=1377177267", "/?id=&lat=1&lon=2"])
def test_missing_device_id_is_a_bad_request(query: str) -> None:
    with pytest.raises(BadRequest, match="missing device id: send id= or deviceid="):
        parse_osmand(params(query), now=NOW)


def test_half_a_coordinate_pair_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="lat= and lon="):
        parse_osmand(params("/?id=1&lat=-1.2683"), now=NOW)


@pytest.mark.parametrize(
    "query",
    [
        "/?id=1&lat=abc&lon=116.834",
        "/?id=1&lat=nan&lon=116.834",
        "/?id=1&location=-1.2683",
        "/?id=1&lat=-1.2683&lon=116.834&speed=fast",
        "/?id=1&lat=-1.2683&lon=116.834&valid=maybe",
        "/?id=1&batt=120",
    ],
)
def test_values_that_make_no_sense_are_invalid_input(query: str) -> None:
    with pytest.raises(InvalidInput):
        parse_osmand(params(query), now=NOW)


@pytest.mark.parametrize(
    "query", ["/?id=1&lat=95&lon=116.834", "/?id=1&lat=-1&lon=181", "/?id=1&lat=1&lon=2&batt=101"]
)
def test_out_of_range_fix_fails_validation(query: str) -> None:
    with pytest.raises(ValidationError):
        parse_osmand(params(query), now=NOW)


def test_single_string_values_are_not_split_into_letters() -> None:
    p = parse_osmand({"id": "hp-07", "lat": "-1.2683", "lon": "116.834"}, now=NOW)
    assert isinstance(p, PingIn)
    assert (p.device_id, p.lat) == ("hp-07", -1.2683)


def test_device_id_longer_than_a_unit_can_have_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="longer than 200"):
        parse_osmand(params("/?id=" + "9" * 201 + "&batt=50"), now=NOW)
