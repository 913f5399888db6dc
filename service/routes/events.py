"""HTTP routes for the event log and acknowledgements."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.auth import Principal
from service.errors import BODY_ERRORS, COMMON_ERRORS, InvalidInput, error_responses
from service.events.ack import ACK_NOTE_MAX, acknowledge
from service.events.log import EventFilter, event_dict, query_events
from service.events.types import unknown_event_types
from service.fields import LINE_PATTERN, MAX_BIG_ID, BigId, Id, check_line
from service.fixtime import parse_read_time as parse_time
from service.notify.fanout import Fanout
from service.routes.deps import AckDep, StoreDep, ViewerDep
from service.store.db import Store
from service.store.models import Unit

router = APIRouter(
    prefix="/api/v1/events", tags=["events"], responses=error_responses(*COMMON_ERRORS)
)


# Single-line text like every name (service.fields.Line), its length checked first.
AckNote = Annotated[
    str,
    Field(max_length=ACK_NOTE_MAX, json_schema_extra={"pattern": LINE_PATTERN}),
    AfterValidator(check_line),
]


class AckIn(BaseModel):
    """An acknowledgement of an event, with an optional single-line note."""

    model_config = ConfigDict(extra="forbid")

    note: AckNote | None = Field(
        None, description=f"What was done: single-line, at most {ACK_NOTE_MAX} characters"
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


def _acknowledge(
    store: Store, fanout: Fanout | None, event_id: int, principal: Principal, note: str | None
) -> dict[str, Any]:
    with store.write() as session:
        event, ack = acknowledge(session, event_id, principal.who, note)
        if fanout is not None:
            fanout.in_transaction(session, [ack])
        unit = session.get(Unit, event.unit_id) if event.unit_id is not None else None
        out = event_dict(event, unit.name if unit else None)
    if fanout is not None:
        fanout.after_commit([ack])
    return out


@router.post("/{event_id}/ack", responses=error_responses(*BODY_ERRORS, 404, 409))
async def ack_event(
    request: Request,
    event_id: BigId,
    store: StoreDep,
    principal: AckDep,
    data: Annotated[AckIn | None, Body()] = None,
) -> dict[str, Any]:
    """Acknowledge an event (operator or admin): stores who (the key's name), when and the note.

    The acknowledgement is also an `ack` event: on the live stream, in the event log and to
    webhooks. An event is acknowledged once; again is 409.
    """
    fanout: Fanout | None = getattr(request.app.state, "fanout", None)
    note = data.note if data is not None else None
    return await run_in_threadpool(_acknowledge, store, fanout, event_id, principal, note)
