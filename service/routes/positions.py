"""HTTP routes for latest positions and unit tracks (GeoJSON)."""

from __future__ import annotations

from fastapi import APIRouter

from service.analytics import positions
from service.errors import COMMON_ERRORS, error_responses
from service.fields import Id
from service.routes.deps import StoreDep, ViewerDep, WindowDep
from service.schemas import GeoJSONDict

router = APIRouter(prefix="/api/v1", tags=["positions"], responses=error_responses(*COMMON_ERRORS))


@router.get("/positions/latest")
def read_latest_positions(store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """Each unit's newest fix as a FeatureCollection (one Feature per unit)."""
    with store.read() as session:
        return positions.latest_positions(session)


@router.get("/units/{unit_id}/track", responses=error_responses(404))
def read_unit_track(unit_id: Id, window: WindowDep, store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """A unit's track in [from, to): a LineString of good fixes, then every fix as a Point."""
    with store.read() as session:
        return positions.unit_track(session, unit_id, window.start, window.end)
