"""Tracker protocol adapters: OsmAnd/Traccar, OwnTracks and GPX messages to pings and reports.

The adapters are pure: they turn an already decoded request (parameters, JSON, bytes) into
`PingIn` objects, or `DeviceReport` objects for messages that carry no position. Problems the
protocol itself rules out raise `BadRequest` (HTTP 400); values the protocol could express but
that make no sense raise `InvalidInput` (422); range checks are left to `PingIn`, whose
`pydantic.ValidationError` propagates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from service.errors import BadRequest, InvalidInput
from service.schemas import PingIn


@dataclass(frozen=True)
class DeviceReport:
    """A tracker message that is not a position: status without a fix, OwnTracks transition, ..."""

    device_id: str
    ts: datetime  # aware UTC; when the message carries no time, the caller passes `now`
    kind: str  # e.g. "status", "transition", "lwt", "waypoint", "card", ...
    attributes: dict[str, Any]


Parsed: TypeAlias = PingIn | DeviceReport

MAX_DEVICE_ID = 200  # as PingIn.device_id and units.device_id


def as_utc(value: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def number(value: Any, name: str) -> float:
    """A finite float from a JSON number or numeric string, else InvalidInput naming the field."""
    # bool is an int subclass: `true` must not silently become 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    try:
        result = float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise InvalidInput(f"{name} must be a finite number, got {value!r}")
    return result


def non_negative(value: float | None) -> float | None:
    """None for negative values: trackers send -1 for an unknown speed, course or accuracy."""
    return None if value is None or value < 0 else value


def from_epoch(seconds: float, name: str) -> datetime:
    """UTC datetime of a Unix time in seconds, else BadRequest naming the field."""
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise BadRequest(f"{name}={seconds!r} is not a usable Unix time") from None


def from_iso(text: str, name: str) -> datetime:
    """UTC datetime of an ISO 8601 string (no offset means UTC), else BadRequest naming it."""
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not an ISO 8601 time") from None


def checked_device_id(device_id: str) -> str:
    """The device id, or InvalidInput when it is longer than a unit's device_id may be."""
    if len(device_id) > MAX_DEVICE_ID:
        raise InvalidInput(f"device id longer than {MAX_DEVICE_ID} characters")
    return device_id


def make_ping(fields: Mapping[str, Any]) -> PingIn:
    """A validated PingIn; an empty attributes dict is stored as None."""
    data = dict(fields)
    if not data.get("attributes"):
        data["attributes"] = None
    return PingIn.model_validate(data)
