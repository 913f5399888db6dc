"""GPX import and export of unit tracks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response

from service import positions
from service.deps import StoreDep, TrackerDep, ViewerDep, WindowDep, WriterDep
from service.errors import Forbidden, NotFound
from service.protocols.gpx import parse_gpx
from service.schemas import PingBatchResult
from service.store.models import Unit

router = APIRouter(prefix="/api/v1/units", tags=["gpx"])


@router.post("/{unit_id}/gpx")
async def import_gpx(
    unit_id: int,
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
    return PingBatchResult(
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=[r for r in results if r.status != "accepted"],
    )


@router.get("/{unit_id}/track.gpx", response_class=Response)
def export_gpx(unit_id: int, window: WindowDep, store: StoreDep, _: ViewerDep) -> Response:
    """The unit's good fixes in [from, to) as a GPX 1.1 track."""
    with store.read() as session:
        text = positions.track_gpx(session, unit_id, window.start, window.end)
    return Response(
        text,
        media_type="application/gpx+xml",
        headers={"Content-Disposition": f'attachment; filename="unit-{unit_id}.gpx"'},
    )
