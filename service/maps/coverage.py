"""Coverage map: routes, corridors, segment ages, geofence presence, heat, tracks and positions."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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

from service.geo.projection import LocalProjection
from service.maps.assets import common_url, offline_map
from service.maps.labels import (
    EN_DASH,
    format_ago,
    format_int,
    format_percent,
    format_time,
    format_window,
    kind_label,
    labels,
    normalize_lang,
    to_local,
)
from service.maps.page import add_feature_info, page_data

DEFAULT_CENTER = (-1.2654, 116.8312)  # Balikpapan
DEFAULT_ZOOM = 13
FIT_MAX_ZOOM = 17

VISITED_COLOR = "#1a9641"
UNVISITED_COLOR = "#d7191c"
FRESH_COLOR = VISITED_COLOR
STALE_COLOR = "#f39c12"
OVERDUE_COLOR = UNVISITED_COLOR
HEAT_COLOR = "#bd0026"
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

FRESH_S = 30 * 60.0  # visited this recently: fresh (green)
DEFAULT_REVISIT_S = 60 * 60.0  # stale (amber) up to the route's revisit_s, or this without one
PRESENCE_GOOD = 0.9  # covered share of the window: green from here
PRESENCE_FAIR = 0.5  # amber from here, red below
HEAT_PANE = "patroliHeat"
HEAT_CELL_M = 50.0
HEAT_MAX_CELLS = 2_500  # the busiest cells are drawn, at most this many
HEAT_LEVELS = (0.15, 0.3, 0.45, 0.6, 0.75)  # fill opacity by (log) count quantile

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
    revisit_s: float | None = None


@dataclass
class FenceLayer:
    """A geofence outline (WGS84) and its kind, e.g. "critical_site"."""

    id: int
    name: str
    kind: str
    outline: Polygon
    covered_ratio: float | None = None  # presence share of the window; None: not computed
    longest_gap: tuple[datetime, datetime] | None = None  # longest uncovered interval (UTC)


@dataclass
class HeatCell:
    """A square grid cell (WGS84 ring, counter-clockwise) and how many fixes fell in it."""

    ring: list[tuple[float, float]]
    count: int


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
    heat: list[HeatCell] | None = None  # None: aggregated from the tracks


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
        # Coarser passes simplify the first pass's result: far fewer points, the same shape.
        line = shapely.linestrings(best)
        # Coarsen until under the cap, then bisect back to use most of the point budget.
        low, high = high, max(high, 1.0 / _M_PER_DEG)
        while len(best := simplified(high)) > limit:
            low, high = high, high * 2
        for _ in range(3):  # within an eighth of the bracket: close enough to the budget
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


def segment_age(last_visit: datetime | None, end: datetime, revisit_s: float | None) -> str:
    """ "fresh", "stale" or "overdue": how long before `end` the segment was last visited."""
    if last_visit is None:
        return "overdue"
    age = (end - last_visit).total_seconds()
    limit = revisit_s if revisit_s is not None and revisit_s > 0 else DEFAULT_REVISIT_S
    if age >= limit:
        return "overdue"
    return "fresh" if age < FRESH_S else "stale"


def presence_level(covered_ratio: float) -> str:
    """ "good", "fair" or "poor" for a geofence's covered share of the window."""
    if covered_ratio >= PRESENCE_GOOD:
        return "good"
    return "fair" if covered_ratio >= PRESENCE_FAIR else "poor"


def heat_grid(
    lons: Any, lats: Any, cell_m: float = HEAT_CELL_M, max_cells: int = HEAT_MAX_CELLS
) -> list[HeatCell]:
    """Fix counts on a square grid of `cell_m` metres (local UTM), busiest `max_cells` cells."""
    lon = np.asarray(lons, dtype=np.float64).ravel()
    lat = np.asarray(lats, dtype=np.float64).ravel()
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90.0)
    lon, lat = lon[ok], lat[ok]
    if lon.size == 0 or max_cells <= 0:
        return []
    proj = LocalProjection.for_point(float(np.median(lon)), float(np.median(lat)))
    x, y = proj.xy(lon, lat)
    ix = np.floor(x / cell_m).astype(np.int64)
    iy = np.floor(y / cell_m).astype(np.int64)
    ix0, iy0 = int(ix.min()), int(iy.min())
    height = int(iy.max()) - iy0 + 1
    keys, counts = np.unique((ix - ix0) * height + (iy - iy0), return_counts=True)
    if keys.size > max_cells:
        top = np.argpartition(counts, -max_cells)[-max_cells:]
        keys, counts = keys[top], counts[top]
    cx = (keys // height + ix0).astype(np.float64) * cell_m
    cy = (keys % height + iy0).astype(np.float64) * cell_m
    corner_x = np.column_stack((cx, cx + cell_m, cx + cell_m, cx, cx))
    corner_y = np.column_stack((cy, cy, cy + cell_m, cy + cell_m, cy))
    clon, clat = proj.lonlat(corner_x.ravel(), corner_y.ravel())
    clon, clat = clon.reshape(-1, 5), clat.reshape(-1, 5)
    order = np.argsort(-counts, kind="stable")
    return [
        HeatCell(
            ring=list(zip(clon[i].tolist(), clat[i].tolist(), strict=True)), count=int(counts[i])
        )
        for i in order
    ]


def _track_heat(view: CoverageMapView) -> list[HeatCell]:
    """Heat cells of the view: given, or aggregated from every track point."""
    if view.heat is not None:
        return view.heat
    arrays = [np.asarray(t.coords, dtype=np.float64).reshape(-1, 2) for t in view.tracks]
    if not arrays:
        return []
    pts = np.concatenate(arrays)
    return heat_grid(pts[:, 0], pts[:, 1])


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


# Binds each feature's tooltip, popup and data-* attributes from the page data (common.js).
_ON_EACH_FEATURE = JsCode("PatroliCommon.bindFeature")

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
.patroli-sw-heat { border: none; background: currentColor; opacity: 0.5; }
.patroli-note { font-size: 11px; color: #555; margin: 0 0 2px 29px; }
.patroli-sw-dot { width: 11px; height: 11px; border-radius: 50%; border: 2px solid #fff;
  background: currentColor; box-shadow: 0 0 0 1px #555; margin: 0 5px 0 4px; }
#patroli-window { display: flex; flex-wrap: wrap; align-items: flex-end; gap: 4px 6px;
  margin-top: 4px; font-size: 11px; }
#patroli-window label { display: flex; flex-direction: column; color: #444; }
#patroli-window input { font: 12px system-ui, sans-serif; padding: 1px 2px; }
#patroli-window button { font: 12px system-ui, sans-serif; padding: 2px 8px; cursor: pointer; }
#patroli-window.patroli-invalid input { outline: 2px solid #d7191c; }
.leaflet-tooltip.patroli-label { font-size: 11px; padding: 1px 5px; font-weight: 600; }
.patroli-hide-labels .leaflet-tooltip.patroli-label { display: none; }
"""


class _MapChrome(MacroElement):
    """Title box, legend box, page styles and unit-label toggling for a coverage map."""

    _template = Template(
        r"""
{% macro header(this, kwargs) %}
<style>{{ this.css }}</style>
<script src="{{ this.common_url }}"></script>
{% endmacro %}
{% macro script(this, kwargs) %}
(function () {
    var map = {{ this._parent.get_name() }};
    // Title and legend are HTML made by the server with every name escaped; like all text
    // from users they come from the page data, never from this script's source.
    var chrome = PatroliCommon.data().chrome;
    function box(position, id, content) {
        var ctl = L.control({position: position});
        ctl.onAdd = function () {
            var div = L.DomUtil.create("div", "patroli-box");
            div.id = id;
            div.innerHTML = content;
            PatroliCommon.paint(div);
            L.DomEvent.disableClickPropagation(div);
            L.DomEvent.disableScrollPropagation(div);
            return div;
        };
        ctl.addTo(map);
    }
    box("topleft", "patroli-title", chrome.title);
    box("bottomright", "patroli-legend", chrome.legend);
    var form = document.getElementById("patroli-window");
    var zone = chrome.zone;
    var fallbackOffset = {{ this.offset_min|tojson }};
    function offsetMin(ms) {
        // Minutes the display zone is ahead of UTC at instant ms.
        try {
            var v = {};
            new Intl.DateTimeFormat("en-US", {timeZone: zone, hourCycle: "h23",
                year: "numeric", month: "2-digit", day: "2-digit",
                hour: "2-digit", minute: "2-digit", second: "2-digit"})
                .formatToParts(new Date(ms))
                .forEach(function (p) { v[p.type] = Number(p.value); });
            return (Date.UTC(v.year, v.month - 1, v.day, v.hour % 24, v.minute, v.second) - ms)
                / 60000;
        } catch (e) {
            return fallbackOffset;
        }
    }
    function toUtc(value) {
        // A datetime-local value in the display zone as ISO 8601 UTC.
        var m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?/
            .exec(value || "");
        if (!m) { return null; }
        var naive = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
        var ms = naive - offsetMin(naive) * 60000;
        ms = naive - offsetMin(ms) * 60000;
        return new Date(ms).toISOString().replace(".000Z", "Z");
    }
    if (form) {
        form.addEventListener("submit", function (ev) {
            ev.preventDefault();
            var from = toUtc(form.elements["from"].value);
            var to = toUtc(form.elements["to"].value);
            if (!from || !to || from >= to) {
                form.classList.add("patroli-invalid");
                return;
            }
            var here = new URLSearchParams(window.location.search);
            var next = new URLSearchParams();
            next.set("from", from);
            next.set("to", to);
            ["key", "lang"].forEach(function (k) {
                if (here.has(k)) { next.set(k, here.get(k)); }
            });
            window.location.assign(window.location.pathname + "?" + next.toString());
        });
    }
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
        common_url: str,
        many_units: bool,
        bounds: list[list[float]] | None,
        offset_min: float,
    ) -> None:
        super().__init__()
        self._name = "PatroliMapChrome"
        self.css = _CSS
        self.common_url = common_url
        self.many_units = many_units
        self.labels_min_zoom = LABELS_MIN_ZOOM
        self.bounds = bounds
        self.max_zoom = FIT_MAX_ZOOM
        self.offset_min = offset_min


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


def add_route_base(
    fmap: folium.Map,
    corridors: list[dict[str, Any]],
    centerlines: list[dict[str, Any]],
    t: Mapping[str, str],
    *,
    route_weight: float,
    route_opacity: float,
) -> None:
    """Add the corridor polygons and route centerlines layers (shared by the map pages)."""
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
        _style(
            ROUTE_COLOR, "patroli-route", weight=route_weight, opacity=route_opacity, lineCap="butt"
        ),
    )


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
        f'<div class="patroli-row"><span class="patroli-sw {css}" data-color="{color}">'
        f"</span><span>{text}</span></div>"
    )


def _legend_html(view: CoverageMapView) -> str:
    """Legend box content in the view's language."""
    t = labels(view.lang)
    presence = any(f.covered_ratio is not None for f in view.fences)
    fence_color = "#555555" if presence else FENCE_COLOR
    critical_color = "#555555" if presence else CRITICAL_COLOR
    rows = [
        f"<h2>{_esc(t['legend'])}</h2>",
        _swatch_row("patroli-sw-fresh", FRESH_COLOR, _esc(t["seg_fresh"])),
        _swatch_row("patroli-sw-stale", STALE_COLOR, _esc(t["seg_stale"]) + "*"),
        _swatch_row("patroli-sw-overdue", OVERDUE_COLOR, _esc(t["seg_overdue"])),
        f'<div class="patroli-note">* {_esc(t["revisit_note"])}</div>',
        _swatch_row("patroli-sw-halo", ROUTE_COLOR, _esc(t["route"])),
        _swatch_row("patroli-sw-area", CORRIDOR_COLOR, _esc(t["corridor"])),
        _swatch_row("patroli-sw-area patroli-sw-dashed", fence_color, _esc(t["geofence"])),
        _swatch_row("patroli-sw-area", critical_color, _esc(t["critical_site"])),
    ]
    if presence:
        for level in ("good", "fair", "poor"):
            rows.append(
                _swatch_row(
                    "patroli-sw-area", _PRESENCE_COLORS[level], _esc(t[f"presence_{level}"])
                )
            )
    rows += [
        _swatch_row("patroli-sw-area patroli-sw-heat", HEAT_COLOR, _esc(t["heat"])),
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
    parts.append(_window_form(view))
    return "".join(parts)


def _window_form(view: CoverageMapView) -> str:
    """Form picking a new window in the display zone (submitted by the page script)."""
    t = labels(view.lang)
    fields = []
    for name, ts in (("from", view.start), ("to", view.end)):
        value = to_local(ts, view.tz).strftime("%Y-%m-%dT%H:%M")
        fields.append(
            f'<label>{_esc(t[name])}<input type="datetime-local" name="{name}" '
            f'value="{value}" required></label>'
        )
    return (
        f'<form id="patroli-window" autocomplete="off">{"".join(fields)}'
        f'<button type="submit">{_esc(t["show"])}</button></form>'
    )


def _add_layer(
    fmap: folium.Map,
    features: list[dict[str, Any]],
    name: str,
    style: dict[str, Any] | None = None,
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
        _collection(add_feature_info(fmap, features)),
        name=name,
        style_function=style_function,
        on_each_feature=_ON_EACH_FEATURE,
        marker=marker,
        show=show,
        **options,
    ).add_to(fmap)


_AGE_COLORS = {"fresh": FRESH_COLOR, "stale": STALE_COLOR, "overdue": OVERDUE_COLOR}
_PRESENCE_COLORS = {"good": FRESH_COLOR, "fair": STALE_COLOR, "poor": OVERDUE_COLOR}


def _route_layers(fmap: folium.Map, view: CoverageMapView, bounds: _Bounds) -> None:
    """Corridor, centerline and segment overlays of all routes."""
    t = labels(view.lang)
    lang = normalize_lang(view.lang)
    corridors: list[dict[str, Any]] = []
    centerlines: list[dict[str, Any]] = []
    by_age: dict[str, list[dict[str, Any]]] = {"fresh": [], "stale": [], "overdue": []}
    seg_styles: dict[str, dict[str, Any]] = {}
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
            last = t["never"]
            if seg.last_visit is not None:
                ago = format_ago((view.end - seg.last_visit).total_seconds(), lang)
                last = f"{format_time(seg.last_visit, view.tz)} ({ago})"
            tip = (
                f"<b>{name}</b><br>{_esc(t['segment'])} {chainage}<br>"
                f"{_esc(t['last_visited'])}: {_esc(last)}"
            )
            age = segment_age(seg.last_visit if seg.visited else None, view.end, route.revisit_s)
            data: dict[str, Any] = {
                "route-id": route.id,
                "start-m": round(seg.start_m, 1),
                "end-m": round(seg.end_m, 1),
                "age": age,
            }
            if seg.last_visit is not None:
                data["last-visit"] = to_local(seg.last_visit, view.tz).isoformat()
            fid = f"s{sum(len(v) for v in by_age.values())}"
            seen = "patroli-visited" if seg.visited else "patroli-unvisited"
            seg_styles[fid] = _style(
                _AGE_COLORS[age], f"patroli-segment patroli-{age} {seen}", weight=5, opacity=0.95
            )
            by_age[age].append(_feature(_rounded_geometry(seg.line, 6), fid, tip=tip, data=data))
    add_route_base(fmap, corridors, centerlines, t, route_weight=10, route_opacity=0.35)
    for age, features in by_age.items():
        styles = {str(f["id"]): seg_styles[str(f["id"])] for f in features}
        _add_layer(fmap, features, t[f"seg_{age}"], style_by_id=styles)


def _fence_layer(fmap: folium.Map, view: CoverageMapView, bounds: _Bounds) -> None:
    """Geofence outlines, coloured by presence in the window when it is known."""
    t = labels(view.lang)
    lang = normalize_lang(view.lang)
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
        tip = f"<b>{_esc(fence.name)}</b><br>{_esc(kind_label(fence.kind, view.lang))}"
        data: dict[str, Any] = {"fence-id": fence.id, "kind": fence.kind}
        if fence.covered_ratio is not None:
            level = presence_level(fence.covered_ratio)
            color = _PRESENCE_COLORS[level]
            css += f" patroli-presence-{level}"
            pct = format_percent(fence.covered_ratio, lang)
            tip += f"<br>{_esc(t['presence'])}: {pct}"
            gap = t["none"]
            if fence.longest_gap is not None:
                lo, hi = fence.longest_gap
                minutes = format_int((hi - lo).total_seconds() / 60, lang)
                gap = f"{format_window(lo, hi, view.tz)} ({minutes} {t['minutes']})"
            tip += f"<br>{_esc(t['longest_gap'])}: {_esc(gap)}"
            data["presence"] = level
            data["covered"] = round(fence.covered_ratio, 4)
        styles[fid] = _style(
            color,
            css,
            weight=3 if critical else 2,
            dashArray=None if critical else "6 4",
            fill=True,
            fillColor=color,
            fillOpacity=0.2 if critical else 0.1,
        )
        features.append(_feature(_rounded_geometry(fence.outline, 6), fid, tip=tip, data=data))
    _add_layer(fmap, features, t["geofence"], style_by_id=styles)


def _heat_layer(fmap: folium.Map, view: CoverageMapView) -> None:
    """Fix density as one layer of grid squares, hidden until picked in the layer control."""
    t = labels(view.lang)
    cells = _track_heat(view)
    if not cells:
        return
    logs = np.log1p(np.array([c.count for c in cells], dtype=np.float64))
    top = float(logs.max())
    features: list[dict[str, Any]] = []
    styles: dict[str, dict[str, Any]] = {}
    for cell, value in zip(cells, logs.tolist(), strict=True):
        fid = f"h{len(features)}"
        share = value / top if top > 0 else 1.0
        level = min(int(share * len(HEAT_LEVELS)), len(HEAT_LEVELS) - 1)
        styles[fid] = _style(
            HEAT_COLOR,
            "patroli-heat",
            stroke=False,
            fill=True,
            fillColor=HEAT_COLOR,
            fillOpacity=HEAT_LEVELS[level],
            interactive=False,
        )
        ring = [[round(x, 5), round(y, 5)] for x, y in cell.ring]
        features.append(_feature({"type": "Polygon", "coordinates": [ring]}, fid))
    # Its own pane keeps the squares under every other overlay whenever they are shown.
    folium.map.CustomPane(HEAT_PANE, z_index=350, pointer_events=False).add_to(fmap)
    _add_layer(fmap, features, t["heat"], style_by_id=styles, show=False, pane=HEAT_PANE)


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
    _heat_layer(fmap, view)
    # Tracks go under the route segments, so the segments' colours (the point of the map) show.
    _track_layer(fmap, view, bounds)
    _route_layers(fmap, view, bounds)
    _fence_layer(fmap, view, bounds)
    _position_layer(fmap, view, bounds)
    fit: list[list[float]] | None = None
    if bounds.box is not None:
        minx, miny, maxx, maxy = bounds.box
        fmap.location = [(miny + maxy) / 2, (minx + maxx) / 2]
        fit = [[miny, minx], [maxy, maxx]]
    page_data(fmap)["chrome"] = {
        "title": _title_html(view, empty=fit is None),
        "legend": _legend_html(view),
        "zone": str(getattr(view.tz, "key", None) or "UTC"),
    }
    _MapChrome(
        common_url(view.static_prefix),
        many_units=len(view.positions) > LABELS_ALWAYS_UP_TO,
        bounds=fit,
        offset_min=(to_local(view.end, view.tz).utcoffset() or timedelta(0)).total_seconds() / 60,
    ).add_to(fmap)
    folium.LayerControl(collapsed=True).add_to(fmap)
    return fmap


def render_coverage_map(view: CoverageMapView) -> str:
    """The coverage map for `view` as a complete, self-contained HTML page."""
    return str(build_coverage_map(view).get_root().render())
