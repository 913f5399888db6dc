"""Acknowledging an event: who, when and a note, stored on the event and logged as an `ack`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.errors import Conflict, NotFound
from service.store.models import Event, utcnow

ACK_NOTE_MAX = 500  # characters of an acknowledgement note


def acknowledge(
    session: Session, event_id: int, by: str, note: str | None, now: datetime | None = None
) -> tuple[Event, Event]:
    """Mark an event acknowledged and add its `ack` event; returns (event, ack).

    The update takes effect only while the event is unacknowledged, so of two concurrent
    acknowledgements exactly one succeeds (on SQLite and PostgreSQL alike); the other gets
    Conflict. Unknown events are NotFound; an `ack` itself cannot be acknowledged.
    """
    now = now or utcnow()
    note = note or None
    done = session.execute(
        update(Event)
        .where(Event.id == event_id, Event.acked_at.is_(None), Event.type != "ack")
        .values(acked_at=now, acked_by=by, ack_note=note)
        .execution_options(synchronize_session=False)
    )
    event = session.get(Event, event_id, populate_existing=True)
    if event is None:
        raise NotFound(f"event {event_id} not found")
    if not done.rowcount:  # type: ignore[attr-defined]
        if event.type == "ack":
            raise Conflict(f"event {event_id} is an acknowledgement; it cannot be acknowledged")
        when = event.acked_at.isoformat().replace("+00:00", "Z") if event.acked_at else "?"
        raise Conflict(f"event {event_id} was already acknowledged by {event.acked_by} at {when}")
    ack = Event(
        type="ack",
        unit_id=event.unit_id,
        ts=now,
        details={
            "event_id": event.id,
            "event_type": event.type,
            "event_ts": event.ts.isoformat().replace("+00:00", "Z"),
            "acked_by": by,
            "note": note,
        },
    )
    session.add(ack)
    session.flush()
    return event, ack
