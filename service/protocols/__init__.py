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
from datetime import datetime
from typing import Any, TypeAlias

from service.errors import BadRequest, InvalidInput
from service.fields import check_json_text, check_line
from service.fixtime import FixTimes, to_utc
from service.schemas import PingIn


@dataclass(frozen=True)
class DeviceReport:
    """A tracker message that is not a position: status without a fix, OwnTracks transition, ..."""

    device_id: str
    ts: datetime  # aware UTC; when the message carries no time, the caller passes `now`
    kind: str  # e.g. "status", "transition", "lwt", "waypoint", "card", ...
    attributes: dict[str, Any]

    def __post_init__(self) -> None:
        checked_device_id(self.device_id)
        if len(self.kind) > MAX_REPORT_KIND:
            raise InvalidInput(f"message type longer than {MAX_REPORT_KIND} characters")
        try:
            check_line(self.kind)
            check_json_text(self.attributes)
        except ValueError as exc:
            raise InvalidInput(f"message type or attributes: {exc}") from None


Parsed: TypeAlias = PingIn | DeviceReport

MAX_DEVICE_ID = 200  # as PingIn.device_id and units.device_id
MAX_REPORT_KIND = 40  # as device_reports.kind


def as_utc(value: datetime, name: str = "time") -> datetime:
    """The same instant as an aware UTC datetime (naive means UTC); InvalidInput on overflow."""
    return to_utc(value, name)


def number(value: Any, name: str) -> float:
    """A finite float from a JSON number or numeric string, else InvalidInput naming the field."""
    # bool is an int subclass: `true` must not silently become 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an integer beyond any float
        raise InvalidInput(f"{name} must be a finite number") from None
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(result):
        raise InvalidInput(f"{name} must be a finite number, got {str(value)[:40]!r}")
    return result


def non_negative(value: float | None) -> float | None:
    """None for negative values: trackers send -1 for an unknown speed, course or accuracy."""
    return None if value is None or value < 0 else value


def from_epoch(value: float, name: str, now: datetime, times: FixTimes) -> datetime:
    """A Unix time in seconds or ms by the time rule (service.fixtime), else InvalidInput."""
    return times.from_number(value, name, now)


def from_iso(text: str, name: str) -> datetime:
    """UTC datetime of an ISO 8601 string (no offset means UTC), else BadRequest naming it."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not an ISO 8601 time") from None
    return as_utc(parsed, name)


def checked_device_id(device_id: str) -> str:
    """The device id, or InvalidInput when it is too long or holds control characters."""
    if len(device_id) > MAX_DEVICE_ID:
        raise InvalidInput(f"device id longer than {MAX_DEVICE_ID} characters")
    try:
        return check_line(device_id)
    except ValueError as exc:
        raise InvalidInput(f"device id {exc}") from None


def make_ping(fields: Mapping[str, Any]) -> PingIn:
    """A validated PingIn; an empty attributes dict is stored as None."""
    data = dict(fields)
    if not data.get("attributes"):
        data["attributes"] = None
    return PingIn.model_validate(data)
