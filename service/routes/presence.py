"""HTTP route under /api/v1/presence: who was at a critical site (geofence), and when."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.analytics import presence
from service.errors import COMMON_ERRORS, error_responses
from service.fields import Id
from service.routes.deps import MaxGapQuery, SettingsDep, StoreDep, ViewerDep, WindowDep

router = APIRouter(
    prefix="/api/v1/presence", tags=["analytics"], responses=error_responses(*COMMON_ERRORS)
)


@router.get("/geofences/{geofence_id}", responses=error_responses(404))
def read_geofence_presence(
    geofence_id: Id,
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: ViewerDep,
    max_gap_s: MaxGapQuery = None,
) -> dict[str, Any]:
    """Who was at the geofence in [from, to), when nobody was, visits and sambang, hourly view."""
    with store.read() as session:
        return presence.geofence_presence(
            session, geofence_id, window, max_gap_s or settings.max_gap_s, settings
        )
