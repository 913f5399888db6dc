"""Offline map assets: Leaflet and jQuery served by the service itself, and maps that use them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fastapi_offline
import folium
import xstatic.pkg.jquery as xs_jquery
import xstatic.pkg.leaflet as xs_leaflet
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.maps.page import Verbatim, json_for_script

LEAFLET_DIR: str = xs_leaflet.BASE_DIR
JQUERY_DIR: str = xs_jquery.BASE_DIR
PATROLI_DIR: str = str(Path(__file__).resolve().parent / "static")
# Swagger UI and ReDoc, as the fastapi-offline package ships them.
DOCS_DIR: str = str(Path(fastapi_offline.__file__).resolve().parent / "static")
DOCS_PREFIX = "/static/docs"


def _clean_prefix(prefix: str) -> str:
    """`prefix` with exactly one leading and no trailing slash ("" for the root)."""
    stripped = prefix.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def mount_assets(app: FastAPI, prefix: str = "/static") -> None:
    """Serve Leaflet, jQuery, the map pages' scripts and styles and the API docs' assets.

    At `{prefix}/leaflet/`, `{prefix}/jquery/`, `{prefix}/patroli/` and `{prefix}/docs/`.
    """
    base = _clean_prefix(prefix)
    app.mount(f"{base}/leaflet", StaticFiles(directory=LEAFLET_DIR), name="static-leaflet")
    app.mount(f"{base}/jquery", StaticFiles(directory=JQUERY_DIR), name="static-jquery")
    app.mount(f"{base}/patroli", StaticFiles(directory=PATROLI_DIR), name="static-patroli")
    app.mount(f"{base}/docs", StaticFiles(directory=DOCS_DIR), name="static-docs")


def asset_urls(
    static_prefix: str = "/static",
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (name, url) lists of local scripts and stylesheets a map page loads."""
    base = _clean_prefix(static_prefix)
    js = [
        ("leaflet", f"{base}/leaflet/leaflet.js"),
        ("jquery", f"{base}/jquery/jquery.min.js"),
    ]
    css = [("leaflet_css", f"{base}/leaflet/leaflet.css")]
    return js, css


def patroli_url(static_prefix: str, filename: str) -> str:
    """URL of one of the map pages' own static files (scripts, stylesheet)."""
    return f"{_clean_prefix(static_prefix)}/patroli/{filename}"


def common_url(static_prefix: str = "/static") -> str:
    """URL of the map pages' shared script (PatroliCommon: page data, feature binding)."""
    return patroli_url(static_prefix, "common.js")


def _camel(name: str) -> str:
    """`max_zoom` as Leaflet spells it: `maxZoom`."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


class _TileLayer(folium.TileLayer):
    """A tile layer whose URL and attribution are data in its script, never template source."""

    def render(self, **kwargs: Any) -> None:  # type: ignore[override]
        """Add the layer's script to the page, written out verbatim."""
        options = {_camel(k): v for k, v in self.options.items()}
        script = (
            f"var {self.get_name()} = L.tileLayer("
            f"{json_for_script(self.tiles)}, {json_for_script(options)});"
            f"{self._parent.get_name()}.addLayer({self.get_name()});"  # type: ignore[union-attr]
        )
        self.get_root().script.add_child(Verbatim(script), name=self.get_name())  # type: ignore[attr-defined]


def offline_map(
    location: Sequence[float] | None,
    zoom_start: int,
    tiles_url: str,
    attribution: str,
    static_prefix: str = "/static",
    *,
    tile_name: str | None = None,
    max_zoom: int = 19,
    **kw: Any,
) -> folium.Map:
    """A folium Map that loads Leaflet/jQuery from `static_prefix` and tiles from `tiles_url`."""
    fmap = folium.Map(location=location, zoom_start=zoom_start, tiles=None, **kw)
    js, css = asset_urls(static_prefix)
    # Instance attributes: the class-level lists (CDN links) are shared by every Map.
    fmap.default_js = js
    fmap.default_css = css
    _TileLayer(
        tiles=tiles_url,
        attr=attribution,
        name=tile_name or "tiles",
        max_zoom=max_zoom,
        control=tile_name is not None,
    ).add_to(fmap)
    return fmap


_SCRIPT_SRC = re.compile(r"<script\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)", re.IGNORECASE)
_LINK_HREF = re.compile(r"<link\b[^>]*?\bhref\s*=\s*[\"']([^\"']+)", re.IGNORECASE)


def referenced_assets(page: str) -> Iterator[str]:
    """URLs of the scripts and stylesheets a rendered page loads (for offline checks)."""
    yield from _SCRIPT_SRC.findall(page)
    yield from _LINK_HREF.findall(page)
