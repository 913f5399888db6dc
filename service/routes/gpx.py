"""GPX import and export of unit tracks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response

from service.analytics import positions
from service.errors import (
    BODY_ERRORS,
    COMMON_ERRORS,
    Forbidden,
    InvalidInput,
    NotFound,
    error_responses,
)
from service.fields import Id
from service.protocols.gpx import parse_gpx
from service.routes.deps import StoreDep, TrackerDep, ViewerDep, WindowDep, WriterDep
from service.schemas import PingBatchResult
from service.store.models import Unit

router = APIRouter(prefix="/api/v1/units", tags=["gpx"], responses=error_responses(*COMMON_ERRORS))


@router.post("/{unit_id}/gpx", responses=error_responses(*BODY_ERRORS, 404))
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
    pings = parse_gpx(await file.read(), unit_id=unit_id)
    outcome = await writer.store(principal, list(enumerate(pings)), source="gpx")
    results = outcome.pings
    rejected = [r for r in results if r.status == "rejected"]
    if len(rejected) == len(results):
        # Nothing in the file could be stored: say why, as a refused batch of pings does.
        shown = "; ".join(f"point {r.index + 1}: {r.reason}" for r in rejected[:5])
        more = f"; and {len(rejected) - 5} more" if len(rejected) > 5 else ""
        raise InvalidInput(f"no track point was stored: {shown}{more}")
    return PingBatchResult(
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=len(rejected),
        results=[r for r in results if r.status != "accepted"],
    )


@router.get(
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
def export_gpx(unit_id: Id, window: WindowDep, store: StoreDep, _: ViewerDep) -> Response:
    """The unit's good fixes in [from, to) as a GPX 1.1 track."""
    with store.read() as session:
        text = positions.track_gpx(session, unit_id, window.start, window.end)
    return Response(
        text,
        media_type="application/gpx+xml",
        headers={"Content-Disposition": f'attachment; filename="unit-{unit_id}.gpx"'},
    )
