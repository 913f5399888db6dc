"""What the coverage, live and replay map pages share: views, base map, layers and page script.

Lower parts: `assets` (offline Leaflet and jQuery, the tile layer) and `page` (the page's JSON
data block). The pages' styles and scripts are static files in `static/`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import folium
import numpy as np
import shapely
from branca.element import MacroElement
from folium.template import Template
from folium.utilities import JsCode
from shapely.geometry import LineString, Polygon, mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.areas.index import corridor_from_row, fence_from_row
from service.config import Settings
from service.geo.corridor import Corridor
from service.geo.fence import Fence
from service.maps.assets import common_url, offline_map, patroli_url
from service.maps.labels import (
    format_int,
    format_percent,
    format_window,
    kind_label,
    labels,
    normalize_lang,
    zone_label,
)
from service.maps.page import add_feature_info, page_data
from service.store.models import Geofence, PatrolRoute
from service.window import Window

DEFAULT_CENTER = (-1.2654, 116.8312)  # Balikpapan
DEFAULT_ZOOM = 13
FIT_MAX_ZOOM = 17
M_PER_DEG = 111_320.0

VISITED_COLOR = "#1a9641"
UNVISITED_COLOR = "#d7191c"
STALE_COLOR = "#f39c12"
OVERDUE_COLOR = UNVISITED_COLOR  # also the live map's overdue stretches
ROUTE_COLOR = "#253494"
CORRIDOR_COLOR = "#3388ff"
FENCE_COLOR = "#7b3294"
CRITICAL_COLOR = "#e66101"
CRITICAL_KIND = "critical_site"
PRESENCE_COLORS = {"good": VISITED_COLOR, "fair": STALE_COLOR, "poor": UNVISITED_COLOR}
PRESENCE_GOOD = 0.9  # covered share of the window: green from here
PRESENCE_FAIR = 0.5  # amber from here, red below

# Distinct from the visited/unvisited/fence colours; cycled by unit id.
UNIT_PALETTE = (
    "#1f78b4",
    "#6a3d9a",
    "#b15928",
    "#01665e",
    "#c51b7d",
    "#2c7fb8",
    "#8c510a",
    "#4d4d4d",
    "#762a83",
    "#35978f",
    "#0868ac",
    "#984ea3",
)


def unit_color(unit_id: int) -> str:
    """Stable colour of a unit's track and marker."""
    return UNIT_PALETTE[unit_id % len(UNIT_PALETTE)]


# ---- views ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class PageView:
    """Display zone, label language and base map tiles of a map page."""

    tz: ZoneInfo
    lang: str
    tile_url: str
    tile_attribution: str
    static_prefix: str = "/static"


@dataclass(kw_only=True)
class WindowView(PageView):
    """A map page of the window [start, end)."""

    start: datetime
    end: datetime


def page_fields(
    settings: Settings, lang: str | None, window: Window | None = None
) -> dict[str, Any]:
    """The PageView (with `window`: WindowView) fields of a page, from the settings."""
    fields: dict[str, Any] = {
        "tz": settings.tz,
        "lang": lang or settings.language,
        "tile_url": settings.tile_url,
        "tile_attribution": settings.tile_attribution,
    }
    if window is not None:
        fields.update(start=window.start, end=window.end)
    return fields


@dataclass
class RouteBase:
    """A patrol route with its corridor and centerline (WGS84)."""

    id: int
    name: str
    corridor_m: float
    corridor: Polygon
    centerline: LineString


@dataclass
class FenceLayer:
    """A geofence outline (WGS84) and its kind, e.g. "critical_site"."""

    id: int
    name: str
    kind: str
    outline: Polygon
    covered_ratio: float | None = None  # presence share of the window; None: not computed
    longest_gap: tuple[datetime, datetime] | None = None  # longest uncovered interval (UTC)


def stored_routes(session: Session) -> Iterable[tuple[PatrolRoute, Corridor, dict[str, Any]]]:
    """Each stored patrol route (by id) with its corridor and its RouteBase fields."""
    for row in session.scalars(select(PatrolRoute).order_by(PatrolRoute.id)):
        corridor = corridor_from_row(row)
        base = {
            "id": row.id,
            "name": row.name,
            "corridor_m": row.corridor_m,
            "corridor": corridor.area,
            "centerline": corridor.line,
        }
        yield row, corridor, base


def stored_fences(session: Session) -> Iterable[tuple[Geofence, Fence, FenceLayer]]:
    """Each stored geofence (by id) with its geometry and its layer (presence not computed)."""
    for row in session.scalars(select(Geofence).order_by(Geofence.id)):
        fence = fence_from_row(row)
        yield row, fence, FenceLayer(row.id, row.name, row.kind, fence.outline)


# ---- GeoJSON layers ---------------------------------------------------------------------


def esc(text: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(text), quote=True)


def rounded_geometry(geom: BaseGeometry, ndigits: int = 6) -> dict[str, Any]:
    """GeoJSON geometry dict of `geom` with coordinates rounded to `ndigits` decimals."""
    rounded = shapely.transform(geom, lambda xy: np.round(xy, ndigits))
    return dict(mapping(rounded))


def feature(geometry: dict[str, Any], fid: str, **properties: Any) -> dict[str, Any]:
    """A GeoJSON Feature with an explicit unique id."""
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": properties}


def style(color: str, class_name: str, **extra: Any) -> dict[str, Any]:
    """A Leaflet path style with a CSS class hook."""
    return {"color": color, "className": class_name, **extra}


# Binds each feature's tooltip, popup and data-* attributes from the page data (common.js).
_ON_EACH_FEATURE = JsCode("PatroliCommon.bindFeature")


def add_layer(
    fmap: folium.Map,
    features: list[dict[str, Any]],
    name: str,
    fixed_style: dict[str, Any] | None = None,
    *,
    style_by_id: dict[str, dict[str, Any]] | None = None,
    marker: folium.CircleMarker | None = None,
    show: bool = True,
    pane: str | None = None,
) -> None:
    """Add a GeoJSON overlay (skipped when empty) styled uniformly or per feature id."""
    if not features:
        return
    options: dict[str, Any] = {"pane": pane} if pane else {}
    styles = style_by_id or {}
    default = next(iter(styles.values())) if styles else (fixed_style or {})

    def style_function(item: dict[str, Any]) -> dict[str, Any]:
        return dict(styles.get(str(item.get("id")), default))

    folium.GeoJson(
        {"type": "FeatureCollection", "features": add_feature_info(fmap, features)},
        name=name,
        style_function=style_function,
        on_each_feature=_ON_EACH_FEATURE,
        marker=marker,
        show=show,
        **options,
    ).add_to(fmap)


class Bounds:
    """Running lon/lat bounding box."""

    def __init__(self) -> None:
        self.box: list[float] | None = None

    def add(self, minx: float, miny: float, maxx: float, maxy: float) -> None:
        """Grow the box to include the given extent (NaN extents are ignored)."""
        if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
            return
        lows, highs = [minx, miny], [maxx, maxy]
        if self.box is not None:
            lows = [min(a, b) for a, b in zip(self.box[:2], lows, strict=True)]
            highs = [max(a, b) for a, b in zip(self.box[2:], highs, strict=True)]
        self.box = [*lows, *highs]

    def add_geometry(self, geom: BaseGeometry | None) -> None:
        """Grow the box to include `geom`."""
        if geom is not None and not geom.is_empty:
            self.add(*geom.bounds)

    def fit(self) -> list[list[float]] | None:
        """Leaflet [[south, west], [north, east]] of the box, or None when empty."""
        if self.box is None:
            return None
        minx, miny, maxx, maxy = self.box
        return [[miny, minx], [maxy, maxx]]


def base_map(view: PageView, title: str) -> folium.Map:
    """An offline folium Map of `view`'s tiles, titled `title`."""
    fmap = offline_map(
        DEFAULT_CENTER,
        DEFAULT_ZOOM,
        view.tile_url,
        view.tile_attribution,
        view.static_prefix,
        tile_name=labels(view.lang)["base_map"],
        zoom_control="bottomleft",
        prefer_canvas=False,
    )
    fmap.get_root().title = esc(title)  # type: ignore[attr-defined]
    return fmap


def add_route_base(
    fmap: folium.Map,
    routes: Iterable[RouteBase],
    t: Mapping[str, str],
    bounds: Bounds,
    *,
    width: Callable[[float], str],
    note: Callable[[Any], str] = lambda route: "",
    route_weight: float,
    route_opacity: float,
) -> None:
    """Corridor and centerline layers of `routes` (`width` formats metres, `note` ends a tip)."""
    corridors: list[dict[str, Any]] = []
    centerlines: list[dict[str, Any]] = []
    for route in routes:
        name = esc(route.name)
        data = {"route-id": route.id}
        if route.corridor is not None and not route.corridor.is_empty:
            bounds.add_geometry(route.corridor)
            tip = f"<b>{name}</b><br>{esc(t['corridor'])} ±{width(route.corridor_m)} m"
            corridors.append(
                feature(rounded_geometry(route.corridor), f"c{len(corridors)}", tip=tip, data=data)
            )
        if route.centerline is not None and not route.centerline.is_empty:
            bounds.add_geometry(route.centerline)
            tip = f"<b>{esc(t['route'])}: {name}</b>{note(route)}"
            centerlines.append(
                feature(
                    rounded_geometry(route.centerline), f"r{len(centerlines)}", tip=tip, data=data
                )
            )
    corridor_style = style(
        CORRIDOR_COLOR,
        "patroli-corridor",
        weight=1,
        opacity=0.5,
        fill=True,
        fillColor=CORRIDOR_COLOR,
        fillOpacity=0.1,
    )
    add_layer(fmap, corridors, t["corridor"], corridor_style)
    route_style = style(
        ROUTE_COLOR, "patroli-route", weight=route_weight, opacity=route_opacity, lineCap="butt"
    )
    add_layer(fmap, centerlines, t["route"], route_style)


def presence_level(covered_ratio: float) -> str:
    """ "good", "fair" or "poor" for a geofence's covered share of the window."""
    if covered_ratio >= PRESENCE_GOOD:
        return "good"
    return "fair" if covered_ratio >= PRESENCE_FAIR else "poor"


def _presence(fence: FenceLayer, t: Mapping[str, str], lang: str, tz: ZoneInfo) -> str:
    """Tooltip lines of a fence's presence in the window: covered share and longest gap."""
    gap = t["none"]
    if fence.longest_gap is not None:
        lo, hi = fence.longest_gap
        minutes = format_int((hi - lo).total_seconds() / 60, lang)
        gap = f"{format_window(lo, hi, tz)} ({minutes} {t['minutes']})"
    pct = format_percent(fence.covered_ratio or 0.0, lang)
    return f"<br>{esc(t['presence'])}: {pct}<br>{esc(t['longest_gap'])}: {esc(gap)}"


def add_fence_layer(
    fmap: folium.Map,
    fences: Iterable[FenceLayer],
    view: PageView,
    t: Mapping[str, str],
    bounds: Bounds,
    *,
    fill_opacity: tuple[float, float],
) -> None:
    """Geofence outlines (critical sites distinct), coloured by presence when it is known.

    `fill_opacity`: of critical sites and of other geofences.
    """
    lang = normalize_lang(view.lang)
    features: list[dict[str, Any]] = []
    styles: dict[str, dict[str, Any]] = {}
    for fence in fences:
        if fence.outline is None or fence.outline.is_empty:
            continue
        bounds.add_geometry(fence.outline)
        fid = f"f{len(features)}"
        critical = fence.kind == CRITICAL_KIND
        color = CRITICAL_COLOR if critical else FENCE_COLOR
        css = "patroli-geofence patroli-critical" if critical else "patroli-geofence"
        tip = f"<b>{esc(fence.name)}</b><br>{esc(kind_label(fence.kind, view.lang))}"
        data: dict[str, Any] = {"fence-id": fence.id, "kind": fence.kind}
        if fence.covered_ratio is not None:
            level = presence_level(fence.covered_ratio)
            color = PRESENCE_COLORS[level]
            css += f" patroli-presence-{level}"
            tip += _presence(fence, t, lang, view.tz)
            data["presence"] = level
            data["covered"] = round(fence.covered_ratio, 4)
        styles[fid] = style(
            color,
            css,
            weight=3 if critical else 2,
            dashArray=None if critical else "6 4",
            fill=True,
            fillColor=color,
            fillOpacity=fill_opacity[0] if critical else fill_opacity[1],
        )
        features.append(feature(rounded_geometry(fence.outline), fid, tip=tip, data=data))
    add_layer(fmap, features, t["geofence"], style_by_id=styles)


# ---- page script ------------------------------------------------------------------------


class PageScript(MacroElement):
    """Loads the pages' stylesheet and scripts and starts one with the map and the page's config.

    The config (with every name in it) is in the page data, not in this element's script.
    """

    _template = Template(
        """
{% macro header(this, kwargs) %}
<link rel="stylesheet" href="{{ this.css_url }}"/>
{%- for url in this.js_urls %}
<script src="{{ url }}"></script>
{%- endfor %}
{% endmacro %}
{% macro script(this, kwargs) %}
{{ this.starter }}({{ this._parent.get_name() }}, PatroliCommon.data().config);
{% endmacro %}
"""
    )

    def __init__(self, static_prefix: str, name: str, starter: str) -> None:
        super().__init__()
        self._name = "PatroliPageScript"
        self.js_urls = [common_url(static_prefix), patroli_url(static_prefix, f"{name}.js")]
        self.css_url = patroli_url(static_prefix, "patroli.css")
        self.starter = starter


def add_page_script(
    fmap: folium.Map, static_prefix: str, name: str, starter: str, config: dict[str, Any]
) -> None:
    """Start page script `name` on `fmap` with `config` (kept in the page data)."""
    page_data(fmap)["config"] = config
    PageScript(static_prefix, name, starter).add_to(fmap)


def page_config(view: PageView, t: Mapping[str, str], bounds: Bounds) -> dict[str, Any]:
    """The config keys the live and replay page scripts share."""
    return {
        "lang": normalize_lang(view.lang),
        "tz": view.tz.key,
        "zone": zone_label(view.tz),
        "labels": t,
        "palette": list(UNIT_PALETTE),
        "bounds": bounds.fit(),
        "maxZoom": FIT_MAX_ZOOM,
    }
