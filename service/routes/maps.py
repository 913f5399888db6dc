"""HTTP routes under /maps: the coverage, live and replay map pages, and phone enrolment."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from service.areas.enroll import enrol
from service.areas.units import read_unit
from service.config import Settings
from service.errors import COMMON_ERRORS, Forbidden, NotFound, error_responses
from service.fields import Id
from service.maps.data import coverage_page
from service.maps.enroll import enroll_data, render_enroll_page
from service.maps.live import live_map_view, render_live_map
from service.maps.replay import render_replay_map, replay_map_view
from service.routes.deps import (
    ACK_ROLES,
    AdminDep,
    KeysDep,
    PageViewerDep,
    SettingsDep,
    StoreDep,
    WindowDep,
)
from service.routes.security import html_page, map_page
from service.store.db import Store
from service.store.models import Unit
from service.window import Window

router = APIRouter(prefix="/maps", tags=["maps"], responses=error_responses(*COMMON_ERRORS))

LangQuery = Annotated[Literal["id", "en"] | None, Query(description="Label language")]


@router.get("/coverage", response_class=HTMLResponse)
def coverage_map(
    request: Request,
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: PageViewerDep,
    lang: LangQuery = None,
) -> HTMLResponse:
    """Coverage map of [from, to): segment ages, geofence presence, heat, tracks, units."""
    cache = request.app.state.coverage_pages
    with store.read() as session:
        page = coverage_page(session, settings, window, lang=lang, cache=cache)
    return map_page(page, settings.tile_url)


def _live_page(store: Store, settings: Settings, lang: str | None, can_ack: bool) -> str:
    with store.read() as session:
        view = live_map_view(session, settings, lang=lang, can_ack=can_ack)
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
    store: StoreDep, settings: SettingsDep, principal: PageViewerDep, lang: LangQuery = None
) -> HTMLResponse:
    """Live map: unit markers and board moved by the event stream, trails, alerts, overdue segments.

    Opened with an operator or admin key, its pinned alerts have an Acknowledge button.
    """
    can_ack = principal.role in ACK_ROLES
    page = await run_in_threadpool(_live_page, store, settings, lang, can_ack)
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


@router.get("/enroll/{unit_id}", response_class=HTMLResponse, responses=error_responses(404))
def enroll_page(
    unit_id: Id,
    store: StoreDep,
    settings: SettingsDep,
    principal: PageViewerDep,
    lang: LangQuery = None,
) -> HTMLResponse:
    """Enrolment page of a unit (admin): a form that issues a new device secret and its QR codes."""
    if principal.role != "admin":
        raise Forbidden(f"this needs an admin key; yours is {principal.role}")
    with store.read() as session:
        unit = read_unit(session, unit_id)
    page = render_enroll_page(
        unit.id, unit.name, unit.device_id, configured=bool(settings.public_url), lang=lang
    )
    return html_page(page)


@router.post("/enroll/{unit_id}", responses=error_responses(404, 409))
def enroll_unit(
    unit_id: Id, store: StoreDep, settings: SettingsDep, keys: KeysDep, _: AdminDep
) -> dict[str, Any]:
    """Issue a unit a new device secret (the old one stops working) and its enrolment links.

    Answers the Traccar Client and OwnTracks configuration links with their QR codes (SVG
    `data:` URIs). Needs the admin key as a bearer key: a map session is never enough.
    """
    with store.write() as session:
        enrolment = enrol(session, unit_id, settings)
    keys.clear()
    return enroll_data(enrolment)
