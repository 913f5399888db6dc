"""OwnTracks HTTP mode: the apps POST the same JSON messages they would publish over MQTT.

Identity: the apps send the configured user name and device name as `X-Limit-U` and
`X-Limit-D` headers (they may also be put in the URL as `?u=&d=`, as for the OwnTracks
Recorder). The unit's device id is `"{user}/{device}"`, the MQTT topic without its
`owntracks/` prefix: a phone configured with user `polres` and device `hp-07` is the unit
with device_id `polres/hp-07`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.errors import BadRequest
from service.fixtime import DEFAULT_FIX_TIMES, FixTimes
from service.protocols import (
    MAX_DEVICE_ID,
    DeviceReport,
    Parsed,
    as_utc,
    from_epoch,
    make_ping,
    non_negative,
    number,
)
from service.schemas import alarm_name

# Fields a location message maps onto PingIn; all others are kept as attributes.
_LOCATION_FIELDS = frozenset({"_type", "lat", "lon", "tst", "acc", "alt", "vel", "cog", "batt"})

# Messages whose `tst` is not the time of the message itself: for `lwt` it is when the app
# connected, for waypoints when the region was created. They are reported at `now`.
_TST_NOT_EVENT_TIME = frozenset({"lwt", "waypoint", "waypoints"})

# Fields never kept from any message, at any depth: names that suggest a credential (the app's
# `password`, `encryptionKey`, `opencageApiKey`, `tlsClientCrt`, `clientpkcs`, `auth`, ...).
_SECRET_NAME = re.compile(
    r"pass|secret|key|token|auth|cred|pwd|crt|cert|pkcs|p12|cookie|session", re.IGNORECASE
)

# A `configuration` message (also inside a `dump`) is the app's whole settings: broker and
# server addresses, user names, URLs that may hold the device secret, keys for third-party
# services. Only these settings, which say how the phone reports, are kept.
_CONFIGURATION_KEPT = frozenset(
    {
        "_type",
        "mode",
        "monitoring",
        "tid",
        "deviceId",
        "locatorDisplacement",
        "locatorInterval",
        "locatorPriority",
        "locatorAccuracyForeground",
        "locatorAccuracyBackground",
        "moveModeLocatorInterval",
        "pegLocatorFastestIntervalToInterval",
        "ignoreInaccurateLocations",
        "ignoreStaleLocations",
        "fusedRegionDetection",
        "pubExtendedData",
        "extendedData",
        "pubInterval",
        "pubIncludeBattery",
        "ping",
        "keepalive",
        "positions",
        "days",
        "maxHistory",
        "ranging",
        "locked",
        "remoteConfiguration",
        "allowRemoteLocation",
        "cmd",
        "autostartOnBoot",
    }
)


def owntracks_identity(
    basic_user: str | None, headers: Mapping[str, str], query: Mapping[str, str]
) -> tuple[str, str]:
    """(user, device) of an OwnTracks HTTP request from X-Limit-U/-D, then ?u=&d=, then Basic."""
    lowered = {key.lower(): value for key, value in headers.items()}
    user = _clean(lowered.get("x-limit-u")) or _clean(query.get("u")) or _clean(basic_user)
    # No fallback to the message's `tid`: it is a two-letter display label, not unique, and
    # guessing would file one officer's positions under another unit.
    device = _clean(lowered.get("x-limit-d")) or _clean(query.get("d"))
    if user is None:
        raise BadRequest(
            "missing OwnTracks user: set Username in the app (sent as X-Limit-U) or add ?u="
        )
    if device is None:
        raise BadRequest(
            "missing OwnTracks device: set Device ID in the app (sent as X-Limit-D) or add ?d="
        )
    for name, value in (("user", user), ("device", device)):
        if "/" in value:
            raise BadRequest(f"OwnTracks {name} {value!r} must not contain '/'")
    if len(owntracks_device_id(user, device)) > MAX_DEVICE_ID:
        raise BadRequest(f"OwnTracks user/device longer than {MAX_DEVICE_ID} characters")
    return user, device


def owntracks_device_id(user: str, device: str) -> str:
    """The unit device_id of an OwnTracks phone: `user/device`, like its MQTT topic."""
    return f"{user}/{device}"


def parse_owntracks(
    body: Any, *, device_id: str, now: datetime, times: FixTimes = DEFAULT_FIX_TIMES
) -> Parsed:
    """One OwnTracks message: `location` as a ping, any other `_type` as a DeviceReport."""
    if not isinstance(body, Mapping):
        raise BadRequest("an OwnTracks message must be a JSON object")
    kind = body.get("_type")
    if not isinstance(kind, str) or not kind:
        raise BadRequest("OwnTracks message without _type")
    if kind == "location":
        return _location(body, device_id, now, times)
    ts = as_utc(now)
    if kind not in _TST_NOT_EVENT_TIME and body.get("tst") is not None:
        ts = _tst(body["tst"], now, times)
    attributes = {k: v for k, v in _without_secrets(body).items() if k != "_type"}
    return DeviceReport(device_id=device_id, ts=ts, kind=kind, attributes=attributes)


def parse_owntracks_body(
    body: Any, *, device_id: str, now: datetime, times: FixTimes = DEFAULT_FIX_TIMES
) -> list[Parsed]:
    """An OwnTracks HTTP body: one message, an array of them, or nothing (None/empty)."""
    # The apps POST a zero-length body when a friend is deleted; there is nothing to store.
    if body is None or body == "" or body == b"":
        return []
    messages = body if isinstance(body, list) else [body]
    return [
        parse_owntracks(message, device_id=device_id, now=now, times=times) for message in messages
    ]


def _location(body: Mapping[str, Any], device_id: str, now: datetime, times: FixTimes) -> Parsed:
    if body.get("lat") is None or body.get("lon") is None:
        raise BadRequest("OwnTracks location message without lat/lon")

    def num(key: str) -> float | None:
        # Apps before Android 0.5.11 / iOS 8.0 sent numbers as strings; number() takes both.
        value = body.get(key)
        return None if value is None else number(value, key)

    vel = non_negative(num("vel"))  # km/h
    return make_ping(
        {
            "device_id": device_id,
            "lat": num("lat"),
            "lon": num("lon"),
            "ts": _tst(body["tst"], now, times) if body.get("tst") is not None else as_utc(now),
            "speed_mps": None if vel is None else vel / 3.6,
            "heading": non_negative(num("cog")),
            "accuracy_m": non_negative(num("acc")),
            "altitude_m": num("alt"),
            "battery": non_negative(num("batt")),
            "alarm": alarm_name(body.get("alarm")),  # also kept in the attributes, as sent
            "attributes": {
                k: v for k, v in _without_secrets(body).items() if k not in _LOCATION_FIELDS
            },
        }
    )


def _tst(value: Any, now: datetime, times: FixTimes) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"tst must be a Unix time in seconds, got {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise BadRequest(f"tst must be a Unix time in seconds, got {value!r}") from None
    return from_epoch(seconds, "tst", now, times)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def _without_secrets(value: Any) -> Any:
    """A message without credential-like fields, and configurations cut to harmless settings."""
    if isinstance(value, Mapping):
        configuration = value.get("_type") == "configuration"
        return {
            k: _without_secrets(v)
            for k, v in value.items()
            if not _SECRET_NAME.search(str(k)) and (not configuration or k in _CONFIGURATION_KEPT)
        }
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
