"""OsmAnd protocol as sent by Traccar Client and compatible apps: parameters or Traccar JSON.

Parameter form (query string and/or form body, e.g. Traccar Client up to 8, OsmAnd, GPSLogger):
`?id=123456&timestamp=1700000000&lat=-1.2683&lon=116.834&speed=10.5&bearing=90&batt=81`.
JSON form (Traccar Client 9+): the background-geolocation location object under `location`
with the device id beside it: `{"device_id": "...", "location": {"coords": {...}, ...}}`.
JSON list (a tracker's offline buffer sent at once): flat parameter objects,
`[{"id": "123456", "lat": -1.2683, "lon": 116.834, "timestamp": 1700000000, ...}, ...]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from service.errors import BadRequest, InvalidInput, PayloadTooLarge
from service.fixtime import DEFAULT_FIX_TIMES, FixTimes
from service.protocols import (
    DeviceReport,
    Parsed,
    as_utc,
    checked_device_id,
    from_epoch,
    from_iso,
    make_ping,
    non_negative,
    number,
)
from service.schemas import alarm_name

SpeedUnit = Literal["knots", "kmh", "mps", "mph"]

# Factors to m/s. Traccar Client sends knots, the OsmAnd protocol's historical unit.
SPEED_TO_MPS: dict[str, float] = {
    "knots": 1852 / 3600,
    "kmh": 1 / 3.6,
    "mps": 1.0,
    "mph": 0.44704,
}

# Parameters read into PingIn fields or dropped; all others become attributes.
_KNOWN = frozenset(
    {
        "id",
        "deviceid",
        "timestamp",
        "lat",
        "lon",
        "location",
        "speed",
        "bearing",
        "heading",
        "altitude",
        "accuracy",
        "hdop",
        "batt",
        "charge",
        "valid",
        "cell",
        "wifi",
        "key",  # the device secret: authentication, never stored
    }
)

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def parse_osmand(
    params: Mapping[str, Sequence[str]],
    *,
    now: datetime,
    speed_unit: SpeedUnit = "knots",
    times: FixTimes = DEFAULT_FIX_TIMES,
) -> Parsed:
    """One OsmAnd request (merged query and form parameters) as a ping or a status report."""
    values = {key: _as_list(raw) for key, raw in params.items()}

    def last(key: str) -> str | None:
        # A repeated single-valued parameter: the last one wins, as in the Traccar server.
        present = [v.strip() for v in values.get(key, ()) if v.strip()]
        return present[-1] if present else None

    device_id = last("id") or last("deviceid")
    if device_id is None:
        raise BadRequest("missing device id: send id= or deviceid=")
    checked_device_id(device_id)

    stamp = last("timestamp")
    ts = parse_osmand_timestamp(stamp, now, times) if stamp is not None else as_utc(now)

    def num(key: str) -> float | None:
        text = last(key)
        return None if text is None else number(text, key)

    speed = non_negative(num("speed"))
    heading = num("bearing")
    if heading is None:
        heading = num("heading")
    fields: dict[str, Any] = {
        "speed_mps": None if speed is None else speed * SPEED_TO_MPS[speed_unit],
        "heading": non_negative(heading),
        "altitude_m": num("altitude"),
        "accuracy_m": non_negative(num("accuracy")),
        "battery": num("batt"),
    }

    attributes: dict[str, Any] = {}
    hdop = num("hdop")
    if hdop is not None:
        attributes["hdop"] = hdop
    charge = last("charge")
    if charge is not None:
        attributes["charge"] = _flag(charge, "charge")
    valid = last("valid")
    if valid is not None and not _flag(valid, "valid"):
        # The fix is kept (the device may still be roughly there) but marked as invalid.
        attributes["valid"] = False
    for key in ("cell", "wifi"):
        towers = [v.strip() for v in values.get(key, ()) if v.strip()]
        if towers:
            attributes[key] = towers
    for key, raw in values.items():
        if key not in _KNOWN:
            attributes[key] = raw[0] if len(raw) == 1 else list(raw)

    position = _position(last("lat"), last("lon"), last("location"))
    if position is None:
        return _status(device_id, ts, fields, attributes)
    lat, lon = position
    return make_ping(
        {
            "device_id": device_id,
            "lat": lat,
            "lon": lon,
            "ts": ts,
            "alarm": alarm_name(last("alarm")),  # also kept in the attributes, as sent
            "attributes": attributes,
            **fields,
        }
    )


def parse_osmand_timestamp(
    text: str, now: datetime, times: FixTimes = DEFAULT_FIX_TIMES
) -> datetime:
    """UTC time of an OsmAnd `timestamp`: Unix seconds or ms, ISO 8601, `yyyy-MM-dd HH:mm:ss`."""
    try:
        value = float(text)
    except ValueError:
        # ISO 8601 with `T` or a space, with or without offset; no offset means UTC.
        return from_iso(text, "timestamp")
    # Seconds or milliseconds, whichever lies in the valid range of fix times.
    return from_epoch(value, "timestamp", now, times)


def parse_traccar_json(body: Any, *, now: datetime) -> Parsed:
    """One Traccar Client 9 JSON request (`device_id` plus one `location`) as ping or report."""
    device_id, location = _json_root(body)
    if isinstance(location, list):
        raise BadRequest("location is a list: send one location object per request")
    return _json_location(device_id, location, now)


def parse_traccar_json_body(body: Any, *, now: datetime) -> list[Parsed]:
    """A Traccar-style JSON request whose `location` is one object or a batch list of them."""
    device_id, location = _json_root(body)
    locations = location if isinstance(location, list) else [location]
    return [_json_location(device_id, item, now) for item in locations]


def parse_osmand_json_list(
    body: Sequence[Any],
    *,
    now: datetime,
    max_batch: int,
    speed_unit: SpeedUnit = "knots",
    times: FixTimes = DEFAULT_FIX_TIMES,
) -> list[Parsed]:
    """A JSON list of flat OsmAnd parameter objects, each read like one OsmAnd request."""
    if len(body) > max_batch:
        raise PayloadTooLarge(f"batch of {len(body)} positions exceeds the limit of {max_batch}")
    if not body:
        raise BadRequest("empty list: send at least one position object")
    return [
        parse_osmand(_json_params(item), now=now, speed_unit=speed_unit, times=times)
        for item in body
    ]


def _json_params(item: Any) -> dict[str, list[str]]:
    """One flat JSON position object as OsmAnd parameters (values as their query-string text)."""
    if not isinstance(item, Mapping):
        raise BadRequest("each element of the list must be a JSON object of OsmAnd parameters")
    params: dict[str, list[str]] = {}
    for key, value in item.items():
        values = value if isinstance(value, list) else [value]
        texts = [_param_text(str(key), v) for v in values if v is not None]
        if texts:
            params[str(key)] = texts
    return params


def _param_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise BadRequest(f"{key} must be a string, number or boolean, got {value!r}")


# ---- parameters ----------------------------------------------------------------------------


def _as_list(raw: Sequence[str] | str) -> list[str]:
    # A bare string is a Sequence[str] too: guard against iterating it letter by letter.
    return [raw] if isinstance(raw, str) else [str(v) for v in raw]


def _flag(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInput(f"{name} must be true, false, 1 or 0, got {text!r}")


def _position(lat: str | None, lon: str | None, location: str | None) -> tuple[float, float] | None:
    """(lat, lon) from `lat`+`lon` or `location=lat,lon`; None when the request has no fix."""
    if lat is not None or lon is not None:
        if lat is None or lon is None:
            raise BadRequest("send both lat= and lon= (or location=lat,lon)")
        pair = (number(lat, "lat"), number(lon, "lon"))
    elif location is not None:
        parts = location.split(",")
        if len(parts) != 2:
            raise InvalidInput(f"location must be 'lat,lon', got {location!r}")
        pair = (number(parts[0], "location latitude"), number(parts[1], "location longitude"))
    else:
        return None
    return None if _no_fix(*pair) else pair


def _no_fix(lat: float, lon: float) -> bool:
    # 0,0 is what trackers send without a fix (Traccar treats it the same way).
    return lat == 0.0 and lon == 0.0


def _status(
    device_id: str, ts: datetime, fields: Mapping[str, Any], attributes: dict[str, Any]
) -> DeviceReport:
    """A report without a fix: ping-like values join the attributes under PingIn's names."""
    battery = fields.get("battery")
    if battery is not None and not 0 <= battery <= 100:
        raise InvalidInput(f"battery must be 0..100 %, got {battery}")
    extra = {k: v for k, v in fields.items() if v is not None}
    return DeviceReport(
        device_id=device_id, ts=ts, kind="status", attributes={**extra, **attributes}
    )


# ---- Traccar JSON --------------------------------------------------------------------------


def _json_root(body: Any) -> tuple[str, Any]:
    if not isinstance(body, Mapping):
        raise BadRequest("expected a JSON object with device_id and location")
    raw_id = body.get("device_id")
    if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise BadRequest("missing device_id in the JSON body")
    if "location" not in body or body["location"] is None:
        raise BadRequest("missing location object in the JSON body")
    return checked_device_id(raw_id.strip()), body["location"]


# Location keys turned into PingIn fields, or dropped: "_" is Traccar Client's copy of
# id/lat/lon/timestamp as a query string, for servers that only read form parameters.
_JSON_HANDLED = frozenset(
    {"timestamp", "coords", "battery", "activity", "uuid", "event", "extras", "_"}
)
_COORDS_HANDLED = frozenset({"latitude", "longitude", "speed", "heading", "accuracy", "altitude"})


def _json_location(device_id: str, location: Any, now: datetime) -> Parsed:
    """One background-geolocation location object as a ping, or a status report without coords."""
    if not isinstance(location, Mapping):
        raise BadRequest("location must be a JSON object")
    stamp = location.get("timestamp")
    if stamp is None:
        ts = as_utc(now)
    elif isinstance(stamp, str):
        ts = from_iso(stamp, "location.timestamp")
    else:
        raise BadRequest(f"location.timestamp must be an ISO 8601 string, got {stamp!r}")

    attributes: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    battery = location.get("battery")
    if isinstance(battery, Mapping):
        level = battery.get("level")
        if level is not None:
            # Level is a fraction 0..1; -1 means unknown (e.g. simulators).
            fraction = non_negative(number(level, "location.battery.level"))
            fields["battery"] = None if fraction is None else round(fraction * 100, 1)
        if isinstance(battery.get("is_charging"), bool):
            attributes["charge"] = battery["is_charging"]
    activity = location.get("activity")
    if isinstance(activity, Mapping):
        if activity.get("type"):
            attributes["activity"] = activity["type"]
        if activity.get("confidence") is not None:
            attributes["activity_confidence"] = activity["confidence"]
    if location.get("event"):
        attributes["event"] = location["event"]
    if location.get("extras"):
        attributes["extras"] = location["extras"]
    for key, value in location.items():
        if key not in _JSON_HANDLED and value is not None:
            attributes[key] = value

    uuid = location.get("uuid")
    ping_id = str(uuid) if uuid not in (None, "") else None
    coords = location.get("coords")
    if coords is not None and not isinstance(coords, Mapping):
        raise BadRequest("location.coords must be a JSON object")
    coords = coords or {}
    for key, value in coords.items():
        if key not in _COORDS_HANDLED and value is not None:
            attributes[key] = value

    def num(key: str) -> float | None:
        value = coords.get(key)
        return None if value is None else number(value, f"location.coords.{key}")

    fields.update(
        speed_mps=non_negative(num("speed")),  # already m/s; -1 means unknown
        heading=non_negative(num("heading")),
        accuracy_m=non_negative(num("accuracy")),
        altitude_m=num("altitude"),
    )
    lat, lon = num("latitude"), num("longitude")
    if (lat is None) != (lon is None):
        raise BadRequest("location.coords needs both latitude and longitude")
    if lat is None or lon is None or _no_fix(lat, lon):
        if ping_id is not None:
            attributes["uuid"] = ping_id
        return _status(device_id, ts, fields, attributes)
    extras = location.get("extras")
    alarm = location.get("alarm") or (extras.get("alarm") if isinstance(extras, Mapping) else None)
    return make_ping(
        {
            "device_id": device_id,
            "lat": lat,
            "lon": lon,
            "ts": ts,
            "ping_id": ping_id,
            "alarm": alarm_name(alarm),
            "attributes": attributes,
            **fields,
        }
    )
