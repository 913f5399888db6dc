"""HTTP routes for patrol-route coverage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.analytics import coverage
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
from service.schemas import RouteCoverageOut

router = APIRouter(
    prefix="/api/v1/coverage", tags=["coverage"], responses=error_responses(*COMMON_ERRORS)
)


@router.get(
    "/patrol-routes/{route_id}", response_model_by_alias=True, responses=error_responses(404)
)
def read_patrol_route_coverage(
    route_id: Id,
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: ViewerDep,
    segment_m: SegmentQuery = None,
    max_gap_s: MaxGapQuery = None,
    unit: Annotated[Id | None, Query(description="Only this unit's visits")] = None,
) -> RouteCoverageOut:
    """Share of the route visited in [from, to) and each segment's first/last visit."""
    with store.read() as session:
        return coverage.patrol_route_coverage(
            session,
            route_id,
            window,
            segment_m or settings.segment_m,
            max_gap_s or settings.max_gap_s,
            unit,
        )
