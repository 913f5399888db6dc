"""The event types are listed once; the names and the check of given names come from there."""

from __future__ import annotations

from typing import get_args

from service.events.log import EVENT_TYPES as LOG_TYPES
from service.events.types import EVENT_TYPES, EventType, unknown_event_types


def test_the_names_come_from_the_literal() -> None:
    assert EVENT_TYPES == get_args(EventType) == LOG_TYPES
    assert "geofence_enter" in EVENT_TYPES and "revisited" in EVENT_TYPES


def test_unknown_names_are_sorted_and_unique() -> None:
    assert unknown_event_types(["online", "b", "a", "b"]) == ["a", "b"]
    assert unknown_event_types([]) == []


def test_every_event_type_has_a_label_in_both_languages() -> None:
    from service.maps.labels import event_labels

    for lang in ("id", "en"):
        assert set(event_labels(lang)) == set(EVENT_TYPES), lang
