"""HTTP routes under /api/v1/coverage: patrol-route coverage and revisit compliance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.analytics import compliance, coverage
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

UnitQuery = Annotated[Id | None, Query(description="Only this unit's visits")]


@router.get(
    "/patrol-routes/{route_id}/compliance",
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
    unit: UnitQuery = None,
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
    unit: UnitQuery = None,
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
