"""The event log: stored events as JSON, and the paged events query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.events.types import EVENT_TYPES as EVENT_TYPES  # callers import it from here too
from service.store.models import Event, Unit


def event_dict(event: Event, unit_name: str | None = None) -> dict[str, Any]:
    """An event as the API, the live stream and webhooks show it."""
    return {
        "id": event.id,
        "type": event.type,
        "unit_id": event.unit_id,
        "unit_name": unit_name,
        "ts": _iso(event.ts),
        "position": (
            None
            if event.lon is None or event.lat is None
            else {"type": "Point", "coordinates": [event.lon, event.lat]}
        ),
        "patrol_route_id": event.patrol_route_id,
        "geofence_id": event.geofence_id,
        "ping_id": event.ping_id,
        "details": event.details or {},
        "acked_at": _iso(event.acked_at),
        "acked_by": event.acked_by,
        "ack_note": event.ack_note,
    }


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class EventFilter:
    """Which events to list."""

    start: datetime | None = None
    end: datetime | None = None
    types: tuple[str, ...] = ()
    unit_id: int | None = None
    geofence_id: int | None = None
    patrol_route_id: int | None = None
    after_id: int | None = None


def query_events(session: Session, f: EventFilter, limit: int) -> list[dict[str, Any]]:
    """Events matching a filter, oldest first (by id), at most `limit`."""
    stmt = select(Event, Unit.name).outerjoin(Unit, Unit.id == Event.unit_id)
    if f.start is not None:
        stmt = stmt.where(Event.ts >= f.start)
    if f.end is not None:
        stmt = stmt.where(Event.ts < f.end)
    if f.types:
        stmt = stmt.where(Event.type.in_(f.types))
    if f.unit_id is not None:
        stmt = stmt.where(Event.unit_id == f.unit_id)
    if f.geofence_id is not None:
        stmt = stmt.where(Event.geofence_id == f.geofence_id)
    if f.patrol_route_id is not None:
        stmt = stmt.where(Event.patrol_route_id == f.patrol_route_id)
    if f.after_id is not None:
        stmt = stmt.where(Event.id > f.after_id)
    rows = session.execute(stmt.order_by(Event.id).limit(limit))
    return [event_dict(event, name) for event, name in rows]
