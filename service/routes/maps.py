"""HTTP routes under /maps: the coverage, live and replay map pages."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from service.config import Settings
from service.errors import COMMON_ERRORS, NotFound, error_responses
from service.fields import Id
from service.maps.coverage import render_coverage_map
from service.maps.data import coverage_map_view
from service.maps.live import live_map_view, render_live_map
from service.maps.replay import render_replay_map, replay_map_view
from service.routes.deps import PageViewerDep, SettingsDep, StoreDep, WindowDep
from service.routes.security import map_page
from service.store.db import Store
from service.store.models import Unit
from service.window import Window

router = APIRouter(prefix="/maps", tags=["maps"], responses=error_responses(*COMMON_ERRORS))

LangQuery = Annotated[Literal["id", "en"] | None, Query(description="Label language")]


@router.get("/coverage", response_class=HTMLResponse)
def coverage_map(
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: PageViewerDep,
    lang: LangQuery = None,
) -> HTMLResponse:
    """Coverage map of [from, to): segment ages, geofence presence, heat, tracks, units."""
    with store.read() as session:
        view = coverage_map_view(session, settings, window, lang=lang)
    return map_page(render_coverage_map(view), settings.tile_url)


def _live_page(store: Store, settings: Settings, lang: str | None) -> str:
    with store.read() as session:
        view = live_map_view(session, settings, lang=lang)
    return render_live_map(view)


def _replay_page(
    store: Store, settings: Settings, window: Window, unit: int | None, lang: str | None
) -> str:
    with store.read() as session:
        if unit is not None and session.get(Unit, unit) is None:
            raise NotFound(f"unit {unit} not found")
        view = replay_map_view(session, settings, window, unit_id=unit, lang=lang)
    return render_replay_map(view)


@router.get("/live", response_class=HTMLResponse)
async def live_map(
    store: StoreDep, settings: SettingsDep, _: PageViewerDep, lang: LangQuery = None
) -> HTMLResponse:
    """Live map: unit markers moved by the event stream, trails, alerts and overdue segments."""
    page = await run_in_threadpool(_live_page, store, settings, lang)
    return map_page(page, settings.tile_url)


@router.get("/replay", response_class=HTMLResponse, responses=error_responses(404))
async def replay_map(
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: PageViewerDep,
    unit: Annotated[Id | None, Query(description="Only this unit's track")] = None,
    lang: LangQuery = None,
) -> HTMLResponse:
    """Replay of [from, to): unit tracks and a time slider that moves the units' markers."""
    page = await run_in_threadpool(_replay_page, store, settings, window, unit, lang)
    return map_page(page, settings.tile_url)
