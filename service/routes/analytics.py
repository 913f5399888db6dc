"""HTTP routes for critical-site presence and operation reports."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from service.analytics import presence, reports
from service.errors import COMMON_ERRORS, error_responses
from service.fields import Id
from service.routes.deps import MaxGapQuery, SettingsDep, StoreDep, ViewerDep, WindowDep

router = APIRouter(prefix="/api/v1", tags=["analytics"], responses=error_responses(*COMMON_ERRORS))

CSV = "text/csv; charset=utf-8"
GEOJSON = "application/geo+json"
# A report as JSON, CSV or GeoJSON (`format=`).
REPORT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report in the requested format.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/csv": {"schema": {"type": "string"}},
            GEOJSON: {"schema": {"type": "object"}},
        },
    }
}


def _csv(text: str, filename: str) -> Response:
    return Response(
        text, media_type=CSV, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/presence/geofences/{geofence_id}", responses=error_responses(404))
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


@router.get("/reports/units", response_model=None, responses=REPORT_RESPONSE)
def read_units_report(
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: ViewerDep,
    format: Annotated[Literal["json", "csv", "geojson"], Query()] = "json",
) -> Response:
    """Per-unit distance, time on route, time in geofences, stops, first/last fix."""
    with store.read() as session:
        report = reports.units_report(session, window, settings)
    if format == "csv":
        return _csv(report.csv(), "units-report.csv")
    if format == "geojson":
        return JSONResponse(report.geojson(), media_type=GEOJSON)
    return JSONResponse(report.json())


@router.get("/reports/shifts", response_model=None, responses=REPORT_RESPONSE)
def read_shifts_report(
    store: StoreDep,
    settings: SettingsDep,
    _: ViewerDep,
    date: Annotated[str, Query(description="Local date of the day shift, YYYY-MM-DD")],
    day_start: Annotated[str, Query(description="Local start of the day shift, HH:MM")] = "07:00",
    night_start: Annotated[
        str, Query(description="Local start of the night shift, HH:MM")
    ] = "19:00",
    format: Annotated[Literal["json", "csv", "geojson"], Query()] = "json",
) -> Response:
    """Day and night shift reports: units, patrol-route coverage, critical-site coverage."""
    with store.read() as session:
        report = reports.shifts_report(session, date, day_start, night_start, settings)
    if format == "csv":
        return _csv(report.csv(), f"shifts-{date}.csv")
    if format == "geojson":
        return JSONResponse(report.geojson(), media_type=GEOJSON)
    return JSONResponse(report.json())
