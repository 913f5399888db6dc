"""Coverage map: routes, corridors, segment ages, geofence presence, heat, tracks and positions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import folium
import numpy as np
import shapely
from shapely.geometry import LineString

from service.geo.projection import LocalProjection
from service.maps.kit import (
    CORRIDOR_COLOR,
    CRITICAL_COLOR,
    FENCE_COLOR,
    FIT_MAX_ZOOM,
    M_PER_DEG,
    OVERDUE_COLOR,
    PRESENCE_COLORS,
    ROUTE_COLOR,
    STALE_COLOR,
    UNIT_PALETTE,
    VISITED_COLOR,
    Bounds,
    FenceLayer,
    RouteBase,
    WindowView,
    add_fence_layer,
    add_layer,
    add_page_script,
    add_route_base,
    base_map,
    esc,
    feature,
    rounded_geometry,
    style,
    unit_color,
)
from service.maps.labels import (
    EN_DASH,
    format_ago,
    format_int,
    format_percent,
    format_time,
    format_window,
    labels,
    normalize_lang,
    to_local,
)
from service.maps.page import page_data

FRESH_COLOR = VISITED_COLOR
HEAT_COLOR = "#bd0026"

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
HEAT_PANE = "patroliHeat"
HEAT_CELL_M = 50.0
HEAT_MAX_CELLS = 2_500  # the busiest cells are drawn, at most this many
HEAT_LEVELS = (0.15, 0.3, 0.45, 0.6, 0.75)  # fill opacity by (log) count quantile


@dataclass
class SegmentLayer:
    """One coverage segment of a route (WGS84 line, chainage in metres, last visit in UTC)."""

    line: LineString
    start_m: float
    end_m: float
    visited: bool
    last_visit: datetime | None


@dataclass
class RouteLayer(RouteBase):
    """A patrol route with its coverage segments (WGS84)."""

    segments: list[SegmentLayer]
    coverage_ratio: float
    revisit_s: float | None = None


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
class CoverageMapView(WindowView):
    """Everything a coverage map shows, for the window [start, end) in display zone `tz`."""

    routes: list[RouteLayer]
    fences: list[FenceLayer]
    tracks: list[TrackLayer]
    positions: list[PositionLayer]
    track_tolerance_m: float = TRACK_TOLERANCE_M
    track_point_budget: int = TRACK_POINT_BUDGET
    heat: list[HeatCell] | None = None  # None: aggregated from the tracks


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
    high = max(tolerance_m, 0.0) / M_PER_DEG
    best = simplified(high)
    if len(best) > limit:
        # Coarser passes simplify the first pass's result: far fewer points, the same shape.
        line = shapely.linestrings(best)
        # Coarsen until under the cap, then bisect back to use most of the point budget.
        low, high = high, max(high, 1.0 / M_PER_DEG)
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
        f"<h2>{esc(t['legend'])}</h2>",
        _swatch_row("patroli-sw-fresh", FRESH_COLOR, esc(t["seg_fresh"])),
        _swatch_row("patroli-sw-stale", STALE_COLOR, esc(t["seg_stale"]) + "*"),
        _swatch_row("patroli-sw-overdue", OVERDUE_COLOR, esc(t["seg_overdue"])),
        f'<div class="patroli-note">* {esc(t["revisit_note"])}</div>',
        _swatch_row("patroli-sw-halo", ROUTE_COLOR, esc(t["route"])),
        _swatch_row("patroli-sw-area", CORRIDOR_COLOR, esc(t["corridor"])),
        _swatch_row("patroli-sw-area patroli-sw-dashed", fence_color, esc(t["geofence"])),
        _swatch_row("patroli-sw-area", critical_color, esc(t["critical_site"])),
    ]
    if presence:
        for level in ("good", "fair", "poor"):
            rows.append(
                _swatch_row("patroli-sw-area", PRESENCE_COLORS[level], esc(t[f"presence_{level}"]))
            )
    rows += [
        _swatch_row("patroli-sw-area patroli-sw-heat", HEAT_COLOR, esc(t["heat"])),
        _swatch_row("patroli-sw-thin", UNIT_PALETTE[0], esc(t["track"])),
        _swatch_row("patroli-sw-dot", UNIT_PALETTE[0], esc(t["position"])),
    ]
    if view.routes:
        rows.append(f"<h3>{esc(t['coverage'])}</h3>")
        for route in view.routes[:LEGEND_MAX_ROUTES]:
            pct = format_percent(route.coverage_ratio, view.lang)
            rows.append(f'<div class="patroli-row">{esc(route.name)}: <b>{pct}</b></div>')
        if len(view.routes) > LEGEND_MAX_ROUTES:
            extra = len(view.routes) - LEGEND_MAX_ROUTES
            rows.append(f'<div class="patroli-row">+{extra} {esc(t["more"])}</div>')
    units: dict[int, str] = {}
    for track in view.tracks:
        units.setdefault(track.unit_id, track.unit_name)
    for pos in view.positions:
        units.setdefault(pos.unit_id, pos.unit_name)
    if units:
        rows.append(f"<h3>{esc(t['units'])}</h3>")
        cells = [
            _swatch_row("patroli-sw-dot", unit_color(unit_id), esc(name))
            for unit_id, name in list(units.items())[:LEGEND_MAX_UNITS]
        ]
        if len(units) > LEGEND_MAX_UNITS:
            extra = len(units) - LEGEND_MAX_UNITS
            cells.append(f'<div class="patroli-row">+{extra} {esc(t["more"])}</div>')
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
        f"<h1>{esc(t['title'])}</h1>",
        f'<div class="patroli-window">{esc(t["window"])}: {esc(window)}</div>',
    ]
    if empty:
        parts.append(f'<div class="patroli-empty">{esc(t["no_data"])}</div>')
    parts.append(_window_form(view))
    return "".join(parts)


def _window_form(view: CoverageMapView) -> str:
    """Form picking a new window in the display zone (submitted by the page script)."""
    t = labels(view.lang)
    fields = []
    for name, ts in (("from", view.start), ("to", view.end)):
        value = to_local(ts, view.tz).strftime("%Y-%m-%dT%H:%M")
        fields.append(
            f'<label>{esc(t[name])}<input type="datetime-local" name="{name}" '
            f'value="{value}" required></label>'
        )
    return (
        f'<form id="patroli-window" autocomplete="off">{"".join(fields)}'
        f'<button type="submit">{esc(t["show"])}</button></form>'
    )


_AGE_COLORS = {"fresh": FRESH_COLOR, "stale": STALE_COLOR, "overdue": OVERDUE_COLOR}


def _route_layers(fmap: folium.Map, view: CoverageMapView, bounds: Bounds) -> None:
    """Corridor, centerline and segment overlays of all routes."""
    t = labels(view.lang)
    lang = normalize_lang(view.lang)
    add_route_base(
        fmap,
        view.routes,
        t,
        bounds,
        width=lambda m: format_int(m, lang),
        note=lambda r: f"<br>{esc(t['coverage'])}: {format_percent(r.coverage_ratio, lang)}",
        route_weight=10,
        route_opacity=0.35,
    )
    by_age: dict[str, list[dict[str, Any]]] = {"fresh": [], "stale": [], "overdue": []}
    seg_styles: dict[str, dict[str, Any]] = {}
    for route in view.routes:
        name = esc(route.name)
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
                f"<b>{name}</b><br>{esc(t['segment'])} {chainage}<br>"
                f"{esc(t['last_visited'])}: {esc(last)}"
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
            seg_styles[fid] = style(
                _AGE_COLORS[age], f"patroli-segment patroli-{age} {seen}", weight=5, opacity=0.95
            )
            by_age[age].append(feature(rounded_geometry(seg.line, 6), fid, tip=tip, data=data))
    for age, features in by_age.items():
        styles = {str(f["id"]): seg_styles[str(f["id"])] for f in features}
        add_layer(fmap, features, t[f"seg_{age}"], style_by_id=styles)


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
        styles[fid] = style(
            HEAT_COLOR,
            "patroli-heat",
            stroke=False,
            fill=True,
            fillColor=HEAT_COLOR,
            fillOpacity=HEAT_LEVELS[level],
            interactive=False,
        )
        ring = [[round(x, 5), round(y, 5)] for x, y in cell.ring]
        features.append(feature({"type": "Polygon", "coordinates": [ring]}, fid))
    # Its own pane keeps the squares under every other overlay whenever they are shown.
    folium.map.CustomPane(HEAT_PANE, z_index=350, pointer_events=False).add_to(fmap)
    add_layer(fmap, features, t["heat"], style_by_id=styles, show=False, pane=HEAT_PANE)


def _track_layer(fmap: folium.Map, view: CoverageMapView, bounds: Bounds) -> None:
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
        styles[fid] = style(color, "patroli-track", weight=3, opacity=0.75)
        geometry = {
            "type": "LineString",
            "coordinates": [[round(x, 5), round(y, 5)] for x, y in pts],
        }
        tip = f"<b>{esc(t['track'])}: {esc(track.unit_name)}</b>"
        features.append(
            feature(
                geometry,
                fid,
                tip=tip,
                data={"unit-id": track.unit_id, "points": len(track.coords)},
            )
        )
    add_layer(fmap, features, t["track"], style_by_id=styles)


def _position_layer(fmap: folium.Map, view: CoverageMapView, bounds: Bounds) -> None:
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
        styles[fid] = style(
            "#ffffff",
            "patroli-unit",
            weight=2,
            opacity=1,
            fill=True,
            fillColor=color,
            fillOpacity=0.95,
        )
        name = esc(pos.unit_name)
        popup = f"<b>{name}</b><br>{esc(t['position'])}: {esc(format_time(pos.ts, view.tz))}"
        if pos.speed_mps is not None and math.isfinite(pos.speed_mps):
            speed = format_int(pos.speed_mps * 3.6, view.lang)
            popup += f"<br>{esc(t['speed'])}: {speed} {kmh}"
        features.append(
            feature(
                {"type": "Point", "coordinates": [round(pos.lon, 6), round(pos.lat, 6)]},
                fid,
                tip=f"{name} · {esc(_short_time(pos.ts, view))}",
                label=True,
                popup=popup,
                data={"unit-id": pos.unit_id, "ts": to_local(pos.ts, view.tz).isoformat()},
            )
        )
    add_layer(
        fmap,
        features,
        t["position"],
        style_by_id=styles,
        marker=folium.CircleMarker(radius=7),
    )


def build_coverage_map(view: CoverageMapView) -> folium.Map:
    """The folium Map for `view` (offline assets, all overlays, legend and title)."""
    fmap = base_map(view, _title_text(view))
    bounds = Bounds()
    _heat_layer(fmap, view)
    # Tracks go under the route segments, so the segments' colours (the point of the map) show.
    _track_layer(fmap, view, bounds)
    _route_layers(fmap, view, bounds)
    add_fence_layer(fmap, view.fences, view, labels(view.lang), bounds, fill_opacity=(0.2, 0.1))
    _position_layer(fmap, view, bounds)
    fit = bounds.fit()
    if fit is not None:
        (south, west), (north, east) = fit
        fmap.location = [(south + north) / 2, (west + east) / 2]
    page_data(fmap)["chrome"] = {
        "title": _title_html(view, empty=fit is None),
        "legend": _legend_html(view),
        "zone": str(getattr(view.tz, "key", None) or "UTC"),
    }
    offset = to_local(view.end, view.tz).utcoffset() or timedelta(0)
    config = {
        "manyUnits": len(view.positions) > LABELS_ALWAYS_UP_TO,
        "labelsMinZoom": LABELS_MIN_ZOOM,
        "bounds": fit,
        "maxZoom": FIT_MAX_ZOOM,
        "offsetMin": offset.total_seconds() / 60,
    }
    add_page_script(fmap, view.static_prefix, "coverage", "PatroliCoverage.start", config)
    folium.LayerControl(collapsed=True).add_to(fmap)
    return fmap


def render_coverage_map(view: CoverageMapView) -> str:
    """The coverage map for `view` as a complete, self-contained HTML page."""
    return str(build_coverage_map(view).get_root().render())
