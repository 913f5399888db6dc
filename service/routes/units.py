"""HTTP routes under /api/v1/units: units, their assignments, tracks and GPX import/export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile, status
from fastapi.responses import Response

from service.analytics import positions
from service.areas import units
from service.errors import BODY_ERRORS, COMMON_ERRORS, Forbidden, NotFound, error_responses
from service.events.edits import area_edit
from service.fields import Id
from service.ingest.results import answer
from service.protocols.gpx import parse_gpx
from service.routes.deps import (
    AdminDep,
    GeoDep,
    KeysDep,
    SettingsDep,
    StoreDep,
    TrackerDep,
    ViewerDep,
    WindowDep,
    WriterDep,
)
from service.schemas import (
    AssignmentIn,
    AssignmentOut,
    GeoJSONDict,
    PingBatchResult,
    UnitCreate,
    UnitCreated,
    UnitPublic,
    UnitUpdate,
)
from service.store.models import Unit

router = APIRouter(responses=error_responses(*COMMON_ERRORS))
# By OpenAPI tag (gathered in `router` at the end): a unit's track is documented with the
# positions, its GPX import and export apart.
_units = APIRouter(tags=["units"])
_track = APIRouter(tags=["positions"])
_gpx = APIRouter(tags=["gpx"])


@_units.post(
    "", status_code=status.HTTP_201_CREATED, responses=error_responses(*BODY_ERRORS, 404, 409)
)
def create_unit(data: UnitCreate, store: StoreDep, geo: GeoDep, _: AdminDep) -> UnitCreated:
    """Register a unit; the response holds its device secret, shown only this once."""
    with area_edit(store, geo) as session:
        return units.create_unit(session, data)


@_units.get("")
def read_units(store: StoreDep, _: ViewerDep) -> list[UnitPublic]:
    """List units."""
    with store.read() as session:
        return units.list_units(session)


@_units.get("/{unit_id}", responses=error_responses(404))
def read_unit(unit_id: Id, store: StoreDep, _: ViewerDep) -> UnitPublic:
    """One unit."""
    with store.read() as session:
        return units.read_unit(session, unit_id)


@_units.patch("/{unit_id}", responses=error_responses(*BODY_ERRORS, 404, 409))
def update_unit(
    unit_id: Id, data: UnitUpdate, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> UnitPublic:
    """Change a unit (name, device_id, kind, patrol-route assignment)."""
    with area_edit(store, geo, settings) as session:
        return units.update_unit(session, unit_id, data)


@_units.delete("/{unit_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
def delete_unit(unit_id: Id, store: StoreDep, geo: GeoDep, keys: KeysDep, _: AdminDep) -> None:
    """Remove a unit with its pings and keys."""
    with area_edit(store, geo) as session:
        units.delete_unit(session, unit_id)
    keys.clear()


@_units.post("/{unit_id}/secret", responses=error_responses(404))
def rotate_unit_secret(unit_id: Id, store: StoreDep, keys: KeysDep, _: AdminDep) -> dict[str, str]:
    """Issue a new device secret and revoke the old one."""
    with store.write() as session:
        secret = units.rotate_secret(session, unit_id)
    keys.clear()
    return {"device_secret": secret}


@_units.get("/{unit_id}/assignments", responses=error_responses(404))
def read_assignments(unit_id: Id, store: StoreDep, _: ViewerDep) -> list[AssignmentOut]:
    """The unit's patrol-route assignments (with shift windows)."""
    with store.read() as session:
        return units.list_assignments(session, unit_id)


@_units.post("/{unit_id}/assignments", responses=error_responses(*BODY_ERRORS, 404))
def create_assignment(
    unit_id: Id,
    data: AssignmentIn,
    store: StoreDep,
    geo: GeoDep,
    settings: SettingsDep,
    _: AdminDep,
) -> AssignmentOut:
    """Assign the unit to a patrol route, optionally for a daily shift (e.g. 19:00 to 07:00)."""
    with area_edit(store, geo, settings) as session:
        return units.assign(session, unit_id, data)


@_units.delete(
    "/{unit_id}/assignments/{route_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
def delete_assignment(
    unit_id: Id, route_id: Id, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> None:
    """Unassign the unit from a patrol route."""
    with area_edit(store, geo, settings) as session:
        units.unassign(session, unit_id, route_id)


@_track.get("/{unit_id}/track", responses=error_responses(404))
def read_unit_track(unit_id: Id, window: WindowDep, store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """A unit's track in [from, to): a LineString of good fixes, then every fix as a Point."""
    with store.read() as session:
        return positions.unit_track(session, unit_id, window.start, window.end)


@_gpx.post("/{unit_id}/gpx", responses=error_responses(*BODY_ERRORS, 404))
async def import_gpx(
    unit_id: Id,
    file: Annotated[UploadFile, File(description="A GPX 1.0 or 1.1 file")],
    store: StoreDep,
    writer: WriterDep,
    principal: TrackerDep,
) -> PingBatchResult:
    """Import every track point of a GPX file as pings of the unit (duplicates are skipped).

    The result lists only the points that were not accepted.
    """
    if principal.role == "tracker" and principal.unit_id != unit_id:
        raise Forbidden(f"this tracker key may only import for unit {principal.unit_id}")
    with store.read() as session:
        if session.get(Unit, unit_id) is None:
            raise NotFound(f"unit {unit_id} not found")
    pings = parse_gpx(await file.read(), unit_id=unit_id, segments=True)
    return answer(
        await writer.store(principal, list(enumerate(pings)), source="gpx", detail=False), "gpx"
    )


@_gpx.get(
    "/{unit_id}/track.gpx",
    response_class=Response,
    responses={
        200: {
            "description": "A GPX 1.1 document.",
            "content": {"application/gpx+xml": {"schema": {"type": "string"}}},
        },
        **error_responses(404),
    },
)
def export_gpx(
    unit_id: Id, window: WindowDep, store: StoreDep, settings: SettingsDep, _: ViewerDep
) -> Response:
    """The unit's good fixes in [from, to) as GPX 1.1 tracks, split at gaps and imported segments.

    A segment ends where fixes are more than PATROLI_MAX_GAP_S apart or where an imported file's
    segment ended. Speed and course are in Garmin's TrackPointExtension v2, battery in
    `<patroli:battery>` (namespace `urn:patroli:gpx:1`).
    """
    with store.read() as session:
        text = positions.track_gpx(session, unit_id, window.start, window.end, settings.max_gap_s)
    return Response(
        text,
        media_type="application/gpx+xml",
        headers={"Content-Disposition": f'attachment; filename="unit-{unit_id}.gpx"'},
    )


for _part in (_units, _track, _gpx):
    router.include_router(_part, prefix="/api/v1/units")
