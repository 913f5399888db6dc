"""HTTP routes under /api/v1/positions: each unit's latest fix, and who was near a place."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.analytics import near, positions
from service.errors import COMMON_ERRORS, error_responses
from service.routes.deps import StoreDep, ViewerDep, WindowDep
from service.schemas import GeoJSONDict

router = APIRouter(prefix="/api/v1/positions", responses=error_responses(*COMMON_ERRORS))


@router.get("/latest", tags=["positions"])
def read_latest_positions(store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """Each unit's newest fix as a FeatureCollection (one Feature per unit)."""
    with store.read() as session:
        return positions.latest_positions(session)


@router.get("/near", tags=["coverage"], response_model_by_alias=True)
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
