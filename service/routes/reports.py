"""HTTP routes under /api/v1/reports: unit and shift reports as JSON, CSV or GeoJSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from service.analytics import reports
from service.errors import COMMON_ERRORS, error_responses
from service.routes.deps import SettingsDep, StoreDep, ViewerDep, WindowDep

router = APIRouter(
    prefix="/api/v1/reports", tags=["analytics"], responses=error_responses(*COMMON_ERRORS)
)

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
FormatQuery = Annotated[Literal["json", "csv", "geojson"], Query()]


def _report(report: reports.Report | reports.ShiftReport, format: str, filename: str) -> Response:
    """The report in `format`; CSV as an attachment named `filename`."""
    if format == "csv":
        return Response(
            report.csv(),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    if format == "geojson":
        return JSONResponse(report.geojson(), media_type=GEOJSON)
    return JSONResponse(report.json())


@router.get("/units", response_model=None, responses=REPORT_RESPONSE)
def read_units_report(
    window: WindowDep,
    store: StoreDep,
    settings: SettingsDep,
    _: ViewerDep,
    format: FormatQuery = "json",
) -> Response:
    """Per-unit distance, time on route, time in geofences, stops, first/last fix."""
    with store.read() as session:
        report = reports.units_report(session, window, settings)
    return _report(report, format, "units-report.csv")


@router.get("/shifts", response_model=None, responses=REPORT_RESPONSE)
def read_shifts_report(
    store: StoreDep,
    settings: SettingsDep,
    _: ViewerDep,
    date: Annotated[str, Query(description="Local date of the day shift, YYYY-MM-DD")],
    day_start: Annotated[str, Query(description="Local start of the day shift, HH:MM")] = "07:00",
    night_start: Annotated[
        str, Query(description="Local start of the night shift, HH:MM")
    ] = "19:00",
    format: FormatQuery = "json",
) -> Response:
    """Day and night shift reports: units, patrol-route coverage, critical-site coverage."""
    with store.read() as session:
        report = reports.shifts_report(session, date, day_start, night_start, settings)
    return _report(report, format, f"shifts-{date}.csv")
