"""Live events: runs each unit's state machine inside the ingest transaction and stores events.

The machine state is kept in the unit's state row, which ingest has locked, so concurrent
requests and several workers see each transition exactly once, and a restart resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.areas.index import GeoIndex, load_index
from service.config import Settings
from service.events.machine import (
    Event,
    FenceRef,
    Fix,
    Located,
    Params,
    RouteRef,
    UnitMachine,
)
from service.store.models import Event as EventRow
from service.store.models import UnitState


def machine_params(settings: Settings) -> Params:
    """The event thresholds from the settings."""
    return settings.pick(Params)


def fence_refs(index: GeoIndex) -> list[FenceRef]:
    """Every geofence, as the machines watch them."""
    return [FenceRef(f.id, f.fence, f.hysteresis_m) for f in index.fences]


def in_shift(ts: datetime, start: str | None, end: str | None, tz: ZoneInfo) -> bool:
    """Whether a time falls in a daily local shift [start, end) (no shift: always)."""
    if start is None or end is None:
        return True
    local = ts.astimezone(tz).strftime("%H:%M")
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the shift wraps midnight, e.g. 19:00 to 07:00


def active_routes(index: GeoIndex, unit_id: int, ts: datetime, tz: ZoneInfo) -> list[RouteRef]:
    """The patrol routes the unit is assigned to at a time (its shift windows applied)."""
    return [
        RouteRef(
            route_id,
            index.route_by_id[route_id].corridor,
            index.route_by_id[route_id].off_route_after_s,
        )
        for route_id, start, end in index.assignments.get(unit_id, ())
        if route_id in index.route_by_id and in_shift(ts, start, end, tz)
    ]


def event_row(unit_id: int, event: Event, ping_id: int | None) -> EventRow:
    """A stored event from a machine event."""
    return EventRow(
        type=event.type,
        unit_id=unit_id,
        ts=event.ts,
        lon=event.lon,
        lat=event.lat,
        patrol_route_id=event.patrol_route_id,
        geofence_id=event.geofence_id,
        ping_id=ping_id,
        details=event.details or None,
    )


def run_machines(
    steps: Sequence[tuple[int, Fix, int | None]],
    machines: dict[int, dict[str, Any] | None],
    index: GeoIndex,
    settings: Settings,
    located: Sequence[Located] | None = None,
) -> tuple[list[EventRow], dict[int, dict[str, Any]]]:
    """Step each unit's machine with its new fixes: (unit id, fix, ping id), by unit and time.

    `located` (one per step, from GeoIndex.locate_many with the units' assigned routes) saves
    the machines from checking fences and routes fix by fix. Returns the events to store and
    the new machine state of every unit that moved.
    """
    params, fences, tz = machine_params(settings), fence_refs(index), settings.tz
    rows: list[EventRow] = []
    states: dict[int, dict[str, Any]] = {}
    current: tuple[int, UnitMachine] | None = None
    for n, (unit_id, fix, ping_id) in enumerate(steps):
        if current is None or current[0] != unit_id:
            if current is not None:
                states[current[0]] = current[1].to_dict()
            saved = machines.get(unit_id)
            current = (unit_id, UnitMachine.from_dict(saved) if saved else UnitMachine())
        routes = active_routes(index, unit_id, fix.ts, tz)
        where = None if located is None else located[n]
        for event in current[1].step(fix, fences, routes, params, where):
            rows.append(event_row(unit_id, event, ping_id))
    if current is not None:
        states[current[0]] = current[1].to_dict()
    return rows, states


def offline_events(
    session: Session, index: GeoIndex, settings: Settings, now: datetime
) -> list[EventRow]:
    """Fire `offline` for units silent for offline_after_s (each unit once, by one worker)."""
    params = machine_params(settings)
    # Only units silent long enough are locked (and SKIP LOCKED leaves busy ones to ingest).
    silent_since = now - timedelta(seconds=params.offline_after_s)
    stmt = (
        select(UnitState)
        .where(UnitState.machine.is_not(None), UnitState.last_ts < silent_since)
        .order_by(UnitState.unit_id)
    )
    # SKIP LOCKED: units another worker (or ingest) is handling right now are left to it.
    rows: list[EventRow] = []
    for state in session.scalars(stmt.with_for_update(skip_locked=True)):
        machine = UnitMachine.from_dict(state.machine or {})
        events = machine.check_offline(now, params)
        if events:
            state.machine = machine.to_dict()
            rows += [event_row(state.unit_id, e, None) for e in events]
    return rows


def reconcile_units(session: Session, settings: Settings) -> None:
    """After a geofence, route or assignment edit: update every machine's membership silently."""
    session.flush()
    index = load_index(session)
    fences, tz, params = fence_refs(index), settings.tz, machine_params(settings)
    # Same lock order as ingest (unit id), so an edit and a batch never deadlock.
    for state in session.scalars(
        select(UnitState)
        .where(UnitState.machine.is_not(None))
        .order_by(UnitState.unit_id)
        .with_for_update()
    ):
        machine = UnitMachine.from_dict(state.machine or {})
        at = state.last_ts or datetime.now(tz)
        machine.reconcile(fences, active_routes(index, state.unit_id, at, tz), params)
        state.machine = machine.to_dict()
