"""HTTP routes for coverage analytics: revisit compliance and who was near a place."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.analytics import compliance, near
from service.errors import COMMON_ERRORS, error_responses
from service.fields import Id
from service.routes.deps import (
    MaxGapQuery,
    SegmentQuery,
    SettingsDep,
    StoreDep,
    ViewerDep,
    WindowDep,
)

router = APIRouter(prefix="/api/v1", tags=["coverage"], responses=error_responses(*COMMON_ERRORS))


@router.get(
    "/coverage/patrol-routes/{route_id}/compliance",
    response_model_by_alias=True,
    responses=error_responses(404),
)
def read_route_compliance(
    route_id: Id,
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: ViewerDep,
    revisit_s: Annotated[
        float | None,
        Query(gt=0, description="Longest allowed unvisited gap (s). Default: the route's"),
    ] = None,
    segment_m: SegmentQuery = None,
    max_gap_s: MaxGapQuery = None,
    unit: Annotated[Id | None, Query(description="Only this unit's visits")] = None,
) -> compliance.RouteComplianceOut:
    """Whether each segment was visited at least every revisit_s in [from, to)."""
    with store.read() as session:
        return compliance.patrol_route_compliance(
            session,
            route_id,
            window,
            revisit_s,
            segment_m or settings.segment_m,
            max_gap_s or settings.max_gap_s,
            unit,
        )


@router.get("/positions/near", response_model_by_alias=True)
def read_units_near(
    window: WindowDep,
    store: StoreDep,
    _: ViewerDep,
    lat: Annotated[float, Query(ge=-90, le=90, description="Latitude (WGS84)")],
    lon: Annotated[float, Query(ge=-180, le=180, description="Longitude (WGS84)")],
    radius_m: Annotated[float, Query(gt=0, le=near.MAX_RADIUS_M, description="Search radius (m)")],
) -> near.NearOut:
    """Units that were within radius_m of (lat, lon) in [from, to), nearest first."""
    with store.read() as session:
        return near.units_near(session, lon, lat, radius_m, window)
