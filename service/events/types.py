"""The event types, listed once: the names, their schema type and the check of given names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

EventType = Literal[
    "geofence_enter",
    "geofence_exit",
    "off_route",
    "on_route",
    "stopped",
    "moving",
    "overspeed",
    "offline",
    "online",
    "revisit_overdue",
    "revisited",
    "alarm",
    "low_battery",
    "ack",
]

# Alerts that stay pinned on the live map until someone acknowledges them.
PINNED_TYPES: tuple[EventType, ...] = ("alarm", "off_route", "offline", "low_battery")

EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)


def unknown_event_types(names: Iterable[str]) -> list[str]:
    """The given names that are not event types, sorted."""
    return sorted(set(names) - set(EVENT_TYPES))
