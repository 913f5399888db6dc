"""Units: registration, edits, patrol-route assignment, device secrets."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import announce_revocation, create_key
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas import (
    AssignmentIn,
    AssignmentOut,
    UnitCreate,
    UnitCreated,
    UnitPublic,
    UnitUpdate,
)
from service.store.models import (
    ApiKey,
    Event,
    PatrolRoute,
    Unit,
    UnitPatrolRoute,
    UnitState,
    WebhookDelivery,
    utcnow,
)


def _route_ids(session: Session, unit_id: int) -> list[int]:
    return list(
        session.scalars(
            select(UnitPatrolRoute.patrol_route_id)
            .where(UnitPatrolRoute.unit_id == unit_id)
            .order_by(UnitPatrolRoute.patrol_route_id)
        )
    )


def _public(session: Session, unit: Unit) -> UnitPublic:
    return UnitPublic(
        id=unit.id,
        name=unit.name,
        device_id=unit.device_id,
        kind=unit.kind,
        patrol_route_ids=_route_ids(session, unit.id),
        created_at=unit.created_at,
    )


def _get(session: Session, unit_id: int) -> Unit:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"unit {unit_id} not found")
    return unit


def _check_device_free(session: Session, device_id: str, unit_id: int | None = None) -> None:
    other = session.scalars(select(Unit.id).where(Unit.device_id == device_id)).first()
    if other is not None and other != unit_id:
        raise Conflict(f"device_id {device_id!r} is already used by unit {other}")


def _assign(session: Session, unit_id: int, route_ids: list[int]) -> None:
    wanted = sorted(set(route_ids))
    found = set(session.scalars(select(PatrolRoute.id).where(PatrolRoute.id.in_(wanted))))
    missing = [rid for rid in wanted if rid not in found]
    if missing:
        raise NotFound(f"patrol route(s) not found: {', '.join(map(str, missing))}")
    session.execute(delete(UnitPatrolRoute).where(UnitPatrolRoute.unit_id == unit_id))
    session.add_all(UnitPatrolRoute(unit_id=unit_id, patrol_route_id=rid) for rid in wanted)


def create_unit(session: Session, data: UnitCreate) -> UnitCreated:
    """Register a unit; its device secret (a tracker key) is returned once."""
    _check_device_free(session, data.device_id)
    unit = Unit(name=data.name, device_id=data.device_id, kind=data.kind)
    session.add(unit)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent registration of the same device_id
        raise Conflict(f"device_id {data.device_id!r} is already used") from exc
    session.add(UnitState(unit_id=unit.id, last_flags=0))
    _assign(session, unit.id, data.patrol_route_ids)
    _, secret = create_key(
        session, role="tracker", name=f"device {unit.device_id}", unit_id=unit.id
    )
    session.flush()
    return UnitCreated(**_public(session, unit).model_dump(), device_secret=secret)


def list_units(session: Session) -> list[UnitPublic]:
    """All units, by id."""
    return [_public(session, u) for u in session.scalars(select(Unit).order_by(Unit.id))]


def read_unit(session: Session, unit_id: int) -> UnitPublic:
    """One unit."""
    return _public(session, _get(session, unit_id))


def update_unit(session: Session, unit_id: int, data: UnitUpdate) -> UnitPublic:
    """Change a unit's fields and/or patrol-route assignment."""
    unit = _get(session, unit_id)
    if data.device_id is not None:
        _check_device_free(session, data.device_id, unit_id)
        unit.device_id = data.device_id
    if data.name is not None:
        unit.name = data.name
    if data.kind is not None:
        unit.kind = data.kind
    if data.patrol_route_ids is not None:
        _assign(session, unit_id, data.patrol_route_ids)
    unit.updated_at = utcnow()
    session.flush()
    return _public(session, unit)


def delete_unit(session: Session, unit_id: int) -> None:
    """Remove a unit with its pings, events (and their webhook deliveries) and keys."""
    unit = _get(session, unit_id)
    # Deliveries reference events without a foreign key (events are partitioned by time).
    session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.event_id.in_(select(Event.id).where(Event.unit_id == unit_id))
        )
    )
    session.delete(unit)
    announce_revocation(session)  # its keys went with it


def rotate_secret(session: Session, unit_id: int) -> str:
    """Revoke a unit's device secrets and issue a new one (returned once)."""
    unit = _get(session, unit_id)
    for key in session.scalars(
        select(ApiKey).where(ApiKey.unit_id == unit_id, ApiKey.revoked_at.is_(None))
    ):
        key.revoked_at = utcnow()
    announce_revocation(session)
    _, secret = create_key(
        session, role="tracker", name=f"device {unit.device_id}", unit_id=unit_id
    )
    return secret


def list_assignments(session: Session, unit_id: int) -> list[AssignmentOut]:
    """A unit's patrol-route assignments."""
    _get(session, unit_id)
    rows = session.scalars(
        select(UnitPatrolRoute)
        .where(UnitPatrolRoute.unit_id == unit_id)
        .order_by(UnitPatrolRoute.patrol_route_id)
    )
    return [
        AssignmentOut(
            unit_id=r.unit_id,
            patrol_route_id=r.patrol_route_id,
            shift_start=r.shift_start,
            shift_end=r.shift_end,
        )
        for r in rows
    ]


def assign(session: Session, unit_id: int, data: AssignmentIn) -> AssignmentOut:
    """Assign a unit to a patrol route (or change the assignment's shift)."""
    _get(session, unit_id)
    if session.get(PatrolRoute, data.patrol_route_id) is None:
        raise NotFound(f"patrol route {data.patrol_route_id} not found")
    if (data.shift_start is None) != (data.shift_end is None):
        raise InvalidInput("give both shift_start and shift_end, or neither")
    if data.shift_start is not None and data.shift_start == data.shift_end:
        raise InvalidInput("shift_start and shift_end must differ")
    row = session.get(UnitPatrolRoute, (unit_id, data.patrol_route_id))
    if row is None:
        row = UnitPatrolRoute(unit_id=unit_id, patrol_route_id=data.patrol_route_id)
        session.add(row)
    row.shift_start, row.shift_end = data.shift_start, data.shift_end
    session.flush()
    return AssignmentOut(unit_id=unit_id, **data.model_dump())


def unassign(session: Session, unit_id: int, route_id: int) -> None:
    """Remove a unit's assignment to a patrol route."""
    row = session.get(UnitPatrolRoute, (unit_id, route_id))
    if row is None:
        raise NotFound(f"unit {unit_id} is not assigned to patrol route {route_id}")
    session.delete(row)
