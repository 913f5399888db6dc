"""Coverage map: routes, corridors, visited segments, geofences, unit tracks and positions."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
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

from service.maps.assets import offline_map
from service.maps.labels import (
    EN_DASH,
    format_int,
    format_percent,
    format_time,
    format_window,
    kind_label,
    labels,
    normalize_lang,
    to_local,
)

DEFAULT_CENTER = (-1.2654, 116.8312)  # Balikpapan
DEFAULT_ZOOM = 13
FIT_MAX_ZOOM = 17

VISITED_COLOR = "#1a9641"
UNVISITED_COLOR = "#d7191c"
ROUTE_COLOR = "#253494"
CORRIDOR_COLOR = "#3388ff"
FENCE_COLOR = "#7b3294"
CRITICAL_COLOR = "#e66101"
CRITICAL_KIND = "critical_site"

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

TRACK_TOLERANCE_M = 5.0
TRACK_POINT_BUDGET = 40_000
TRACK_MIN_POINTS = 100
TRACK_MAX_POINTS = 5_000
LABELS_ALWAYS_UP_TO = 20  # more positions than this: unit labels only when zoomed in
LABELS_MIN_ZOOM = 16
LEGEND_MAX_UNITS = 12
LEGEND_MAX_ROUTES = 10

_M_PER_DEG = 111_320.0


@dataclass
class SegmentLayer:
    """One coverage segment of a route (WGS84 line, chainage in metres, last visit in UTC)."""

    line: LineString
    start_m: float
    end_m: float
    visited: bool
    last_visit: datetime | None


@dataclass
class RouteLayer:
    """A patrol route with its corridor, centerline and coverage segments (WGS84)."""

    id: int
    name: str
    corridor_m: float
    corridor: Polygon
    centerline: LineString
    segments: list[SegmentLayer]
    coverage_ratio: float


@dataclass
class FenceLayer:
    """A geofence outline (WGS84) and its kind, e.g. "critical_site"."""

    id: int
    name: str
    kind: str
    outline: Polygon


@dataclass
class TrackLayer:
    """A unit's track as (lon, lat) pairs in time order."""

    unit_id: int
    unit_name: str
    coords: list[tuple[float, float]]


@dataclass
class PositionLayer:
    """A unit's latest position (timestamp aware, UTC)."""

    unit_id: int
    unit_name: str
    lon: float
    lat: float
    ts: datetime
    speed_mps: float | None


@dataclass
class CoverageMapView:
    """Everything a coverage map shows, for the window [start, end) in display zone `tz`."""

    routes: list[RouteLayer]
    fences: list[FenceLayer]
    tracks: list[TrackLayer]
    positions: list[PositionLayer]
    start: datetime
    end: datetime
    tz: ZoneInfo
    lang: str
    tile_url: str
    tile_attribution: str
    static_prefix: str = "/static"
    track_tolerance_m: float = TRACK_TOLERANCE_M
    track_point_budget: int = TRACK_POINT_BUDGET


def unit_color(unit_id: int) -> str:
    """Stable colour of a unit's track and marker."""
    return UNIT_PALETTE[unit_id % len(UNIT_PALETTE)]


def thin_track(
    coords: Sequence[tuple[float, float]],
    tolerance_m: float = TRACK_TOLERANCE_M,
    max_points: int = TRACK_MAX_POINTS,
) -> list[tuple[float, float]]:
    """Douglas-Peucker simplified (lon, lat) track with at most `max_points` points."""
    arr = np.asarray(coords, dtype=float).reshape(-1, 2)
    arr = arr[np.isfinite(arr).all(axis=1)]
    if len(arr) <= 2:
        return [(float(x), float(y)) for x, y in arr]
    line = shapely.linestrings(arr)
    limit = max(max_points, 2)

    def simplified(tolerance: float) -> np.ndarray:
        return shapely.get_coordinates(shapely.simplify(line, tolerance, preserve_topology=False))

    low = 0.0
    high = max(tolerance_m, 0.0) / _M_PER_DEG
    best = simplified(high)
    if len(best) > limit:
        # Coarsen until under the cap, then bisect back to use most of the point budget.
        low, high = high, max(high, 1.0 / _M_PER_DEG)
        while len(best := simplified(high)) > limit:
            low, high = high, high * 2
        for _ in range(6):
            mid = (low + high) / 2
            candidate = simplified(mid)
            if len(candidate) <= limit:
                high, best = mid, candidate
            else:
                low = mid
    if len(best) < 2:
        best = arr[[0, -1]]
    return [(float(x), float(y)) for x, y in best]


def track_point_cap(n_tracks: int, budget: int = TRACK_POINT_BUDGET) -> int:
    """Most points drawn per track so that all tracks together stay near `budget`."""
    if n_tracks <= 0:
        return TRACK_MAX_POINTS
    return max(TRACK_MIN_POINTS, min(TRACK_MAX_POINTS, budget // n_tracks))


def _rounded_geometry(geom: BaseGeometry, ndigits: int) -> dict[str, Any]:
    """GeoJSON geometry dict of `geom` with coordinates rounded to `ndigits` decimals."""
    rounded = shapely.transform(geom, lambda xy: np.round(xy, ndigits))
    return dict(mapping(rounded))


def _feature(geometry: dict[str, Any], fid: str, **properties: Any) -> dict[str, Any]:
    """A GeoJSON Feature with an explicit unique id."""
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": properties}


def _collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "features": features}


def _esc(text: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(text), quote=True)


# Binds tooltip/popup text and data-* attributes carried in each feature's properties.
_ON_EACH_FEATURE = JsCode(
    """function (feature, layer) {
    var p = feature.properties || {};
    if (p.tip) {
        layer.bindTooltip(p.tip, p.label
            ? {permanent: true, direction: "right", offset: [8, 0], className: "patroli-label"}
            : {sticky: true, className: "patroli-tip"});
    }
    if (p.popup) { layer.bindPopup(p.popup); }
    if (p.data) {
        layer.on("add", function () {
            var el = layer.getElement ? layer.getElement() : null;
            if (!el) { return; }
            Object.keys(p.data).forEach(function (k) { el.setAttribute("data-" + k, p.data[k]); });
        });
    }
}"""
)

_CSS = """
.patroli-box { background: rgba(255, 255, 255, 0.93); color: #222; padding: 6px 10px;
  border-radius: 5px; box-shadow: 0 1px 5px rgba(0, 0, 0, 0.4);
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
#patroli-title h1 { font-size: 16px; margin: 0 0 2px 0; }
#patroli-title .patroli-window { font-size: 12px; color: #444; }
#patroli-title .patroli-empty { font-size: 12px; color: #a00; margin-top: 2px; }
#patroli-legend { max-height: 55vh; overflow-y: auto; min-width: 170px; }
#patroli-legend h2 { font-size: 13px; margin: 0 0 4px 0; }
#patroli-legend h3 { font-size: 12px; margin: 6px 0 2px 0; color: #444; }
.patroli-grid { display: grid; grid-template-columns: auto auto; column-gap: 10px; }
.patroli-units .patroli-row { overflow: hidden; text-overflow: ellipsis; max-width: 160px; }
.patroli-row { display: flex; align-items: center; gap: 7px; white-space: nowrap; }
.patroli-sw { display: inline-block; flex: none; width: 22px; height: 0;
  border-top: 4px solid currentColor; }
.patroli-sw-halo { border-top-width: 8px; opacity: 0.4; }
.patroli-sw-thin { border-top-width: 3px; opacity: 0.8; }
.patroli-sw-area { width: 16px; height: 11px; border: 2px solid currentColor;
  background: rgba(0, 0, 0, 0.06); margin: 0 3px 0 1px; }
.patroli-sw-dashed { border-style: dashed; }
.patroli-sw-dot { width: 11px; height: 11px; border-radius: 50%; border: 2px solid #fff;
  background: currentColor; box-shadow: 0 0 0 1px #555; margin: 0 5px 0 4px; }
.leaflet-tooltip.patroli-label { font-size: 11px; padding: 1px 5px; font-weight: 600; }
.patroli-hide-labels .leaflet-tooltip.patroli-label { display: none; }
"""


class _MapChrome(MacroElement):
    """Title box, legend box, page styles and unit-label toggling for a coverage map."""

    _template = Template(
        """
{% macro header(this, kwargs) %}
<style>{{ this.css }}</style>
{% endmacro %}
{% macro script(this, kwargs) %}
(function () {
    var map = {{ this._parent.get_name() }};
    function box(position, id, content) {
        var ctl = L.control({position: position});
        ctl.onAdd = function () {
            var div = L.DomUtil.create("div", "patroli-box");
            div.id = id;
            div.innerHTML = content;
            L.DomEvent.disableClickPropagation(div);
            L.DomEvent.disableScrollPropagation(div);
            return div;
        };
        ctl.addTo(map);
    }
    box("topleft", "patroli-title", {{ this.title_html|tojson }});
    box("bottomright", "patroli-legend", {{ this.legend_html|tojson }});
    var manyUnits = {{ this.many_units|tojson }};
    function toggleLabels() {
        var hide = manyUnits && map.getZoom() < {{ this.labels_min_zoom|tojson }};
        map.getContainer().classList.toggle("patroli-hide-labels", hide);
    }
    map.on("zoomend", toggleLabels);
    L.control.scale({position: "bottomleft", imperial: false}).addTo(map);
    {%- if this.bounds %}
    // Fit the data, keeping it clear of the title (top left) and legend (bottom right).
    var size = map.getSize();
    var title = document.getElementById("patroli-title");
    var legend = document.getElementById("patroli-legend");
    var top = Math.min(title.offsetHeight + 20, size.y / 4);
    var right = Math.min(legend.offsetWidth + 20, size.x / 3);
    map.fitBounds({{ this.bounds|tojson }}, {
        paddingTopLeft: [20, top],
        paddingBottomRight: [right, 20],
        maxZoom: {{ this.max_zoom|tojson }},
        animate: false
    });
    {%- endif %}
    toggleLabels();
})();
{% endmacro %}
"""
    )

    def __init__(
        self,
        title_html: str,
        legend_html: str,
        many_units: bool,
        bounds: list[list[float]] | None,
    ) -> None:
        super().__init__()
        self._name = "PatroliMapChrome"
        self.css = _CSS
        self.title_html = title_html
        self.legend_html = legend_html
        self.many_units = many_units
        self.labels_min_zoom = LABELS_MIN_ZOOM
        self.bounds = bounds
        self.max_zoom = FIT_MAX_ZOOM


class _Bounds:
    """Running lon/lat bounding box."""

    def __init__(self) -> None:
        self.box: list[float] | None = None

    def add(self, minx: float, miny: float, maxx: float, maxy: float) -> None:
        """Grow the box to include the given extent (NaN extents are ignored)."""
        if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
            return
        if self.box is None:
            self.box = [minx, miny, maxx, maxy]
        else:
            b = self.box
            self.box = [min(b[0], minx), min(b[1], miny), max(b[2], maxx), max(b[3], maxy)]

    def add_geometry(self, geom: BaseGeometry | None) -> None:
        """Grow the box to include `geom`."""
        if geom is not None and not geom.is_empty:
            self.add(*geom.bounds)


def _style(color: str, class_name: str, **extra: Any) -> dict[str, Any]:
    """A Leaflet path style with a CSS class hook."""
    return {"color": color, "className": class_name, **extra}


def _short_time(ts: datetime, view: CoverageMapView) -> str:
    """Time of `ts` as HH:MM, with the date when it is not the window's last local day."""
    local = to_local(ts, view.tz)
    if local.date() == to_local(view.end, view.tz).date():
        return local.strftime("%H:%M")
    return local.strftime("%d-%m %H:%M")


def _swatch_row(css: str, color: str, text: str) -> str:
    """One legend row: a coloured swatch and its (already escaped) text."""
    return (
        f'<div class="patroli-row"><span class="patroli-sw {css}" style="color:{color}">'
        f"</span><span>{text}</span></div>"
    )


def _legend_html(view: CoverageMapView) -> str:
    """Legend box content in the view's language."""
    t = labels(view.lang)
    rows = [
        f"<h2>{_esc(t['legend'])}</h2>",
        _swatch_row("", VISITED_COLOR, _esc(t["visited"])),
        _swatch_row("", UNVISITED_COLOR, _esc(t["unvisited"])),
        _swatch_row("patroli-sw-halo", ROUTE_COLOR, _esc(t["route"])),
        _swatch_row("patroli-sw-area", CORRIDOR_COLOR, _esc(t["corridor"])),
        _swatch_row("patroli-sw-area patroli-sw-dashed", FENCE_COLOR, _esc(t["geofence"])),
        _swatch_row("patroli-sw-area", CRITICAL_COLOR, _esc(t["critical_site"])),
        _swatch_row("patroli-sw-thin", UNIT_PALETTE[0], _esc(t["track"])),
        _swatch_row("patroli-sw-dot", UNIT_PALETTE[0], _esc(t["position"])),
    ]
    if view.routes:
        rows.append(f"<h3>{_esc(t['coverage'])}</h3>")
        for route in view.routes[:LEGEND_MAX_ROUTES]:
            pct = format_percent(route.coverage_ratio, view.lang)
            rows.append(f'<div class="patroli-row">{_esc(route.name)}: <b>{pct}</b></div>')
        if len(view.routes) > LEGEND_MAX_ROUTES:
            extra = len(view.routes) - LEGEND_MAX_ROUTES
            rows.append(f'<div class="patroli-row">+{extra} {_esc(t["more"])}</div>')
    units: dict[int, str] = {}
    for track in view.tracks:
        units.setdefault(track.unit_id, track.unit_name)
    for pos in view.positions:
        units.setdefault(pos.unit_id, pos.unit_name)
    if units:
        rows.append(f"<h3>{_esc(t['units'])}</h3>")
        cells = [
            _swatch_row("patroli-sw-dot", unit_color(unit_id), _esc(name))
            for unit_id, name in list(units.items())[:LEGEND_MAX_UNITS]
        ]
        if len(units) > LEGEND_MAX_UNITS:
            extra = len(units) - LEGEND_MAX_UNITS
            cells.append(f'<div class="patroli-row">+{extra} {_esc(t["more"])}</div>')
        grid = " patroli-grid" if len(cells) > 4 else ""
        rows.append(f'<div class="patroli-units{grid}">{"".join(cells)}</div>')
    return "".join(rows)


def _title_text(view: CoverageMapView) -> str:
    """Plain-text page title with the window in the display zone."""
    t = labels(view.lang)
    return f"{t['title']} · {format_window(view.start, view.end, view.tz)}"


def _title_html(view: CoverageMapView, empty: bool) -> str:
    """Title box content: map title and the window in the display zone."""
    t = labels(view.lang)
    window = format_window(view.start, view.end, view.tz)
    parts = [
        f"<h1>{_esc(t['title'])}</h1>",
        f'<div class="patroli-window">{_esc(t["window"])}: {_esc(window)}</div>',
    ]
    if empty:
        parts.append(f'<div class="patroli-empty">{_esc(t["no_data"])}</div>')
    return "".join(parts)


def _add_layer(
    fmap: folium.Map,
    features: list[dict[str, Any]],
    name: str,
    style: dict[str, Any] | None = None,
    *,
    style_by_id: dict[str, dict[str, Any]] | None = None,
    marker: folium.CircleMarker | None = None,
) -> None:
    """Add a GeoJSON overlay (skipped when empty) styled uniformly or per feature id."""
    if not features:
        return
    if style_by_id is not None:
        styles = style_by_id
        default = next(iter(styles.values()))

        def style_function(feature: dict[str, Any]) -> dict[str, Any]:
            return dict(styles.get(str(feature.get("id")), default))
    else:
        fixed = style or {}

        def style_function(feature: dict[str, Any]) -> dict[str, Any]:
            return dict(fixed)

    folium.GeoJson(
        _collection(features),
        name=name,
        style_function=style_function,
        on_each_feature=_ON_EACH_FEATURE,
        marker=marker,
    ).add_to(fmap)


def _route_layers(fmap: folium.Map, view: CoverageMapView, bounds: _Bounds) -> None:
    """Corridor, centerline and segment overlays of all routes."""
    t = labels(view.lang)
    lang = normalize_lang(view.lang)
    corridors: list[dict[str, Any]] = []
    centerlines: list[dict[str, Any]] = []
    visited: list[dict[str, Any]] = []
    unvisited: list[dict[str, Any]] = []
    for route in view.routes:
        name = _esc(route.name)
        if route.corridor is not None and not route.corridor.is_empty:
            bounds.add_geometry(route.corridor)
            tip = f"<b>{name}</b><br>{_esc(t['corridor'])} ±{format_int(route.corridor_m, lang)} m"
            corridors.append(
                _feature(
                    _rounded_geometry(route.corridor, 6),
                    f"c{len(corridors)}",
                    tip=tip,
                    data={"route-id": route.id},
                )
            )
        if route.centerline is not None and not route.centerline.is_empty:
            bounds.add_geometry(route.centerline)
            pct = format_percent(route.coverage_ratio, lang)
            tip = f"<b>{_esc(t['route'])}: {name}</b><br>{_esc(t['coverage'])}: {pct}"
            centerlines.append(
                _feature(
                    _rounded_geometry(route.centerline, 6),
                    f"r{len(centerlines)}",
                    tip=tip,
                    data={"route-id": route.id},
                )
            )
        for seg in route.segments:
            if seg.line is None or seg.line.is_empty:
                continue
            bounds.add_geometry(seg.line)
            chainage = f"{format_int(seg.start_m, lang)}{EN_DASH}{format_int(seg.end_m, lang)} m"
            last = format_time(seg.last_visit, view.tz) if seg.last_visit else t["never"]
            tip = (
                f"<b>{name}</b><br>{_esc(t['segment'])} {chainage}<br>"
                f"{_esc(t['last_visited'])}: {_esc(last)}"
            )
            data: dict[str, Any] = {
                "route-id": route.id,
                "start-m": round(seg.start_m, 1),
                "end-m": round(seg.end_m, 1),
            }
            if seg.last_visit is not None:
                data["last-visit"] = to_local(seg.last_visit, view.tz).isoformat()
            target = visited if seg.visited else unvisited
            prefix = "v" if seg.visited else "u"
            target.append(
                _feature(
                    _rounded_geometry(seg.line, 6), f"{prefix}{len(target)}", tip=tip, data=data
                )
            )
    _add_layer(
        fmap,
        corridors,
        t["corridor"],
        _style(
            CORRIDOR_COLOR,
            "patroli-corridor",
            weight=1,
            opacity=0.5,
            fill=True,
            fillColor=CORRIDOR_COLOR,
            fillOpacity=0.1,
        ),
    )
    _add_layer(
        fmap,
        centerlines,
        t["route"],
        _style(ROUTE_COLOR, "patroli-route", weight=10, opacity=0.35, lineCap="butt"),
    )
    _add_layer(
        fmap,
        visited,
        t["visited"],
        _style(VISITED_COLOR, "patroli-segment patroli-visited", weight=5, opacity=0.95),
    )
    _add_layer(
        fmap,
        unvisited,
        t["unvisited"],
        _style(UNVISITED_COLOR, "patroli-segment patroli-unvisited", weight=5, opacity=0.95),
    )


def _fence_layer(fmap: folium.Map, view: CoverageMapView, bounds: _Bounds) -> None:
    """Geofence outlines; critical sites in their own colour."""
    t = labels(view.lang)
    features: list[dict[str, Any]] = []
    styles: dict[str, dict[str, Any]] = {}
    for fence in view.fences:
        if fence.outline is None or fence.outline.is_empty:
            continue
        bounds.add_geometry(fence.outline)
        fid = f"f{len(features)}"
        critical = fence.kind == CRITICAL_KIND
        color = CRITICAL_COLOR if critical else FENCE_COLOR
        css = "patroli-geofence patroli-critical" if critical else "patroli-geofence"
        styles[fid] = _style(
            color,
            css,
            weight=3 if critical else 2,
            dashArray=None if critical else "6 4",
            fill=True,
            fillColor=color,
            fillOpacity=0.12 if critical else 0.06,
        )
        tip = f"<b>{_esc(fence.name)}</b><br>{_esc(kind_label(fence.kind, view.lang))}"
        features.append(
            _feature(
                _rounded_geometry(fence.outline, 6),
                fid,
                tip=tip,
                data={"fence-id": fence.id, "kind": fence.kind},
            )
        )
    _add_layer(fmap, features, t["geofence"], style_by_id=styles)


def _track_layer(fmap: folium.Map, view: CoverageMapView, bounds: _Bounds) -> None:
    """Unit tracks, simplified to keep the page light."""
    t = labels(view.lang)
    cap = track_point_cap(len(view.tracks), view.track_point_budget)
    features: list[dict[str, Any]] = []
    styles: dict[str, dict[str, Any]] = {}
    for track in view.tracks:
        pts = thin_track(track.coords, view.track_tolerance_m, cap)
        if len(pts) < 2:
            continue
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        bounds.add(min(xs), min(ys), max(xs), max(ys))
        fid = f"t{len(features)}"
        color = unit_color(track.unit_id)
        styles[fid] = _style(color, "patroli-track", weight=3, opacity=0.75)
        geometry = {
            "type": "LineString",
            "coordinates": [[round(x, 5), round(y, 5)] for x, y in pts],
        }
        tip = f"<b>{_esc(t['track'])}: {_esc(track.unit_name)}</b>"
        features.append(
            _feature(
                geometry,
                fid,
                tip=tip,
                data={"unit-id": track.unit_id, "points": len(track.coords)},
            )
        )
    _add_layer(fmap, features, t["track"], style_by_id=styles)


def _position_layer(fmap: folium.Map, view: CoverageMapView, bounds: _Bounds) -> None:
    """Latest positions as circle markers with a unit label."""
    t = labels(view.lang)
    kmh = "km/jam" if normalize_lang(view.lang) == "id" else "km/h"
    features: list[dict[str, Any]] = []
    styles: dict[str, dict[str, Any]] = {}
    for pos in view.positions:
        if not (math.isfinite(pos.lon) and math.isfinite(pos.lat)):
            continue
        bounds.add(pos.lon, pos.lat, pos.lon, pos.lat)
        fid = f"p{len(features)}"
        color = unit_color(pos.unit_id)
        styles[fid] = _style(
            "#ffffff",
            "patroli-unit",
            weight=2,
            opacity=1,
            fill=True,
            fillColor=color,
            fillOpacity=0.95,
        )
        name = _esc(pos.unit_name)
        popup = f"<b>{name}</b><br>{_esc(t['position'])}: {_esc(format_time(pos.ts, view.tz))}"
        if pos.speed_mps is not None and math.isfinite(pos.speed_mps):
            speed = format_int(pos.speed_mps * 3.6, view.lang)
            popup += f"<br>{_esc(t['speed'])}: {speed} {kmh}"
        features.append(
            _feature(
                {"type": "Point", "coordinates": [round(pos.lon, 6), round(pos.lat, 6)]},
                fid,
                tip=f"{name} · {_esc(_short_time(pos.ts, view))}",
                label=True,
                popup=popup,
                data={"unit-id": pos.unit_id, "ts": to_local(pos.ts, view.tz).isoformat()},
            )
        )
    _add_layer(
        fmap,
        features,
        t["position"],
        style_by_id=styles,
        marker=folium.CircleMarker(radius=7),
    )


def build_coverage_map(view: CoverageMapView) -> folium.Map:
    """The folium Map for `view` (offline assets, all overlays, legend and title)."""
    t = labels(view.lang)
    fmap = offline_map(
        DEFAULT_CENTER,
        DEFAULT_ZOOM,
        view.tile_url,
        view.tile_attribution,
        view.static_prefix,
        tile_name=t["base_map"],
        zoom_control="bottomleft",
        prefer_canvas=False,
    )
    fmap.get_root().title = _esc(_title_text(view))  # type: ignore[attr-defined]
    bounds = _Bounds()
    _route_layers(fmap, view, bounds)
    _fence_layer(fmap, view, bounds)
    _track_layer(fmap, view, bounds)
    _position_layer(fmap, view, bounds)
    fit: list[list[float]] | None = None
    if bounds.box is not None:
        minx, miny, maxx, maxy = bounds.box
        fmap.location = [(miny + maxy) / 2, (minx + maxx) / 2]
        fit = [[miny, minx], [maxy, maxx]]
    _MapChrome(
        _title_html(view, empty=fit is None),
        _legend_html(view),
        many_units=len(view.positions) > LABELS_ALWAYS_UP_TO,
        bounds=fit,
    ).add_to(fmap)
    folium.LayerControl(collapsed=True).add_to(fmap)
    return fmap


def render_coverage_map(view: CoverageMapView) -> str:
    """The coverage map for `view` as a complete, self-contained HTML page."""
    return str(build_coverage_map(view).get_root().render())
