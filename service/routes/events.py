"""HTTP route for the event log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from service.errors import COMMON_ERRORS, InvalidInput, error_responses
from service.events.log import EventFilter, query_events
from service.events.types import unknown_event_types
from service.fields import MAX_BIG_ID, Id
from service.fixtime import parse_read_time as parse_time
from service.routes.deps import StoreDep, ViewerDep

router = APIRouter(
    prefix="/api/v1/events", tags=["events"], responses=error_responses(*COMMON_ERRORS)
)


@router.get("")
def read_events(
    store: StoreDep,
    _: ViewerDep,
    from_: Annotated[str | None, Query(alias="from", description="Event time ≥ (ISO 8601)")] = None,
    to: Annotated[str | None, Query(description="Event time < (ISO 8601)")] = None,
    type: Annotated[list[str] | None, Query(description="Event types (repeatable)")] = None,
    unit: Annotated[Id | None, Query(description="Unit id")] = None,
    geofence: Annotated[Id | None, Query(description="Geofence id")] = None,
    patrol_route: Annotated[Id | None, Query(description="Patrol route id")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_BIG_ID, description="Page cursor: events after this id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Events, oldest first; follow `next` (an `after` cursor) for the next page."""
    unknown = unknown_event_types(type or ())
    if unknown:
        raise InvalidInput(f"unknown event type(s): {', '.join(unknown)}")
    f = EventFilter(
        start=parse_time(from_, "from") if from_ else None,
        end=parse_time(to, "to") if to else None,
        types=tuple(type or ()),
        unit_id=unit,
        geofence_id=geofence,
        patrol_route_id=patrol_route,
        after_id=after,
    )
    with store.read() as session:
        events = query_events(session, f, limit)
    return {"events": events, "next": events[-1]["id"] if len(events) == limit else None}
