"""HTML map pages."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from service.errors import COMMON_ERRORS, error_responses
from service.maps.coverage import render_coverage_map
from service.maps.data import coverage_map_view
from service.routes.deps import PageViewerDep, SettingsDep, StoreDep, WindowDep
from service.routes.security import map_page

router = APIRouter(prefix="/maps", tags=["maps"], responses=error_responses(*COMMON_ERRORS))


@router.get("/coverage", response_class=HTMLResponse)
def coverage_map(
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: PageViewerDep,
    lang: Annotated[Literal["id", "en"] | None, Query(description="Label language")] = None,
) -> HTMLResponse:
    """Coverage map of [from, to): segment ages, geofence presence, heat, tracks, units."""
    with store.read() as session:
        view = coverage_map_view(session, settings, window, lang=lang)
    return map_page(render_coverage_map(view), settings.tile_url)
