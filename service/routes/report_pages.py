"""HTTP routes under /reports: the printable shift report as an HTML page and as a PDF."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from service.analytics.shift import shift_window
from service.config import Settings
from service.errors import COMMON_ERRORS, error_responses
from service.maps.pdf import PdfPrinter
from service.maps.shift_report import render_shift_report, shift_report_view
from service.routes.deps import PageViewerDep, SettingsDep, StoreDep
from service.routes.security import html_page
from service.store.db import Store

router = APIRouter(prefix="/reports", tags=["reports"], responses=error_responses(*COMMON_ERRORS))

DateQuery = Annotated[str, Query(description="Local date of the shift (display zone), YYYY-MM-DD")]
ShiftQuery = Annotated[
    str,
    Query(
        max_length=11,
        description="`day`, `night` or a span of local times `HH:MM-HH:MM` (ending the next "
        "day when the end is not later than the start)",
    ),
]
DayStartQuery = Annotated[str, Query(max_length=5, description="Start of the day shift, HH:MM")]
NightStartQuery = Annotated[str, Query(max_length=5, description="Start of the night shift, HH:MM")]
LangQuery = Annotated[Literal["id", "en"] | None, Query(description="Report language")]

PDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The shift report as a PDF (A4).",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    },
    503: {
        "description": "No PDF now: Chromium is not installed at PATROLI_CHROMIUM_PATH, every "
        "printer is busy, or printing failed or took too long; print the HTML report from a "
        "browser instead. Also: the database is unavailable.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    },
}


def _page(
    store: Store,
    settings: Settings,
    params: dict[str, str],
    lang: str | None,
) -> str:
    """The report page for the query (the shift is checked before the database is read)."""
    shift = shift_window(
        params["date"], params["shift"], params["day_start"], params["night_start"], settings
    )
    query = {**params, **({"lang": lang} if lang else {})}
    with store.read() as session:
        view = shift_report_view(
            session, settings, shift, lang=lang, pdf_href=f"shift.pdf?{urlencode(query)}"
        )
    return render_shift_report(view)


@router.get("/shift", response_class=HTMLResponse)
async def shift_report(
    store: StoreDep,
    settings: SettingsDep,
    _: PageViewerDep,
    date: DateQuery,
    shift: ShiftQuery = "day",
    day_start: DayStartQuery = "07:00",
    night_start: NightStartQuery = "19:00",
    lang: LangQuery = None,
) -> HTMLResponse:
    """Printable shift report: map, presence per hour, uncovered time, units, alerts."""
    params = {"date": date, "shift": shift, "day_start": day_start, "night_start": night_start}
    page = await run_in_threadpool(_page, store, settings, params, lang)
    return html_page(page)


@router.get("/shift.pdf", response_class=Response, responses=PDF_RESPONSES)
async def shift_report_pdf(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    _: PageViewerDep,
    date: DateQuery,
    shift: ShiftQuery = "day",
    day_start: DayStartQuery = "07:00",
    night_start: NightStartQuery = "19:00",
    lang: LangQuery = None,
) -> Response:
    """The shift report as a PDF printed by headless Chromium (503 where it is not installed)."""
    printer: PdfPrinter = request.app.state.printer
    params = {"date": date, "shift": shift, "day_start": day_start, "night_start": night_start}
    checked = shift_window(date, shift, day_start, night_start, settings)
    printer.check()
    page = await run_in_threadpool(_page, store, settings, params, lang)
    pdf = await printer.print_html(page)
    name = f"shift-report-{checked.date.isoformat()}-{shift.replace(':', '')}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )
