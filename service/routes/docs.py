"""The API description and its documentation pages (Swagger UI, ReDoc) from local assets.

All three need a viewer key (bearer, `?key=`, or a map session) unless PATROLI_OPEN_READ, like
every other read; the pages load nothing from outside the service.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from service.maps.assets import DOCS_PREFIX
from service.routes.deps import MapViewerDep, PageViewerDep
from service.routes.security import html_page

router = APIRouter(include_in_schema=False)

OPENAPI_PATH = "/openapi.json"


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _page(request: Request, name: str) -> dict[str, Any]:
    """The OpenAPI document's URL and the title of the documentation page `name`."""
    return {
        "openapi_url": f"{_root(request)}{OPENAPI_PATH}",
        "title": f"{request.app.title} - {name}",
    }


def _asset(request: Request, name: str) -> str:
    """The URL of an asset of the documentation pages (served from local files)."""
    return f"{_root(request)}{DOCS_PREFIX}/{name}"


@router.get(OPENAPI_PATH)
def openapi(request: Request, _: MapViewerDep) -> JSONResponse:
    """The OpenAPI document of the API."""
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request, _: PageViewerDep) -> HTMLResponse:
    """Swagger UI: the API, browsable and callable with a key."""
    page = get_swagger_ui_html(
        **_page(request, "Swagger UI"),
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon.png"),
        swagger_ui_parameters=request.app.swagger_ui_parameters,
    )
    return html_page(bytes(page.body).decode())


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request, _: PageViewerDep) -> HTMLResponse:
    """ReDoc: the API reference."""
    page = get_redoc_html(
        **_page(request, "ReDoc"),
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon.png"),
        with_google_fonts=False,
    )
    # ReDoc's styled components write <style> elements at run time.
    return html_page(bytes(page.body).decode(), style_inline=True)
