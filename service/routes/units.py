"""HTTP routes for units."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.areas import units
from service.errors import BODY_ERRORS, COMMON_ERRORS, error_responses
from service.events.runner import reconcile_units
from service.fields import Id
from service.routes.deps import AdminDep, GeoDep, KeysDep, SettingsDep, StoreDep, ViewerDep
from service.schemas import (
    AssignmentIn,
    AssignmentOut,
    UnitCreate,
    UnitCreated,
    UnitPublic,
    UnitUpdate,
)

router = APIRouter(
    prefix="/api/v1/units", tags=["units"], responses=error_responses(*COMMON_ERRORS)
)


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=error_responses(*BODY_ERRORS, 404, 409)
)
def create_unit(data: UnitCreate, store: StoreDep, geo: GeoDep, _: AdminDep) -> UnitCreated:
    """Register a unit; the response holds its device secret, shown only this once."""
    with store.write() as session:
        result = units.create_unit(session, data)
    geo.invalidate()
    return result


@router.get("")
def read_units(store: StoreDep, _: ViewerDep) -> list[UnitPublic]:
    """List units."""
    with store.read() as session:
        return units.list_units(session)


@router.get("/{unit_id}", responses=error_responses(404))
def read_unit(unit_id: Id, store: StoreDep, _: ViewerDep) -> UnitPublic:
    """One unit."""
    with store.read() as session:
        return units.read_unit(session, unit_id)


@router.patch("/{unit_id}", responses=error_responses(*BODY_ERRORS, 404, 409))
def update_unit(
    unit_id: Id, data: UnitUpdate, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> UnitPublic:
    """Change a unit (name, device_id, kind, patrol-route assignment)."""
    with store.write() as session:
        result = units.update_unit(session, unit_id, data)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
    return result


@router.delete("/{unit_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
def delete_unit(unit_id: Id, store: StoreDep, geo: GeoDep, keys: KeysDep, _: AdminDep) -> None:
    """Remove a unit with its pings and keys."""
    with store.write() as session:
        units.delete_unit(session, unit_id)
    keys.clear()
    geo.invalidate()


@router.post("/{unit_id}/secret", responses=error_responses(404))
def rotate_unit_secret(unit_id: Id, store: StoreDep, keys: KeysDep, _: AdminDep) -> dict[str, str]:
    """Issue a new device secret and revoke the old one."""
    with store.write() as session:
        secret = units.rotate_secret(session, unit_id)
    keys.clear()
    return {"device_secret": secret}


@router.get("/{unit_id}/assignments", responses=error_responses(404))
def read_assignments(unit_id: Id, store: StoreDep, _: ViewerDep) -> list[AssignmentOut]:
    """The unit's patrol-route assignments (with shift windows)."""
    with store.read() as session:
        return units.list_assignments(session, unit_id)


@router.post("/{unit_id}/assignments", responses=error_responses(*BODY_ERRORS, 404))
def create_assignment(
    unit_id: Id,
    data: AssignmentIn,
    store: StoreDep,
    geo: GeoDep,
    settings: SettingsDep,
    _: AdminDep,
) -> AssignmentOut:
    """Assign the unit to a patrol route, optionally for a daily shift (e.g. 19:00 to 07:00)."""
    with store.write() as session:
        result = units.assign(session, unit_id, data)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
    return result


@router.delete(
    "/{unit_id}/assignments/{route_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
def delete_assignment(
    unit_id: Id, route_id: Id, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> None:
    """Unassign the unit from a patrol route."""
    with store.write() as session:
        units.unassign(session, unit_id, route_id)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
