"""Live map: routes, geofences, unit markers moved by the SSE stream, trails and an alerts panel."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import folium
import numpy as np
import shapely
from branca.element import MacroElement
from folium.template import Template
from shapely.geometry import LineString, Polygon
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.analytics.positions import ELIGIBLE
from service.areas.index import corridor_from_row, fence_from_row
from service.config import Settings
from service.events.log import event_dict
from service.events.machine import UnitMachine
from service.maps.assets import common_url, offline_map
from service.maps.coverage import (
    CRITICAL_COLOR,
    CRITICAL_KIND,
    DEFAULT_CENTER,
    DEFAULT_ZOOM,
    FENCE_COLOR,
    UNIT_PALETTE,
    FenceLayer,
    _add_layer,
    _Bounds,
    _esc,
    _feature,
    _rounded_geometry,
    _style,
    add_route_base,
)
from service.maps.labels import kind_label, labels, normalize_lang, zone_label
from service.maps.page import page_data
from service.notify.stream import Cursor, current_cursor
from service.store.models import Event, Geofence, OverdueMark, PatrolRoute, Ping, Unit, UnitState

ASSET_DIR = "patroli"  # served at {static_prefix}/patroli/
TRAIL_LENGTH = 20  # fixes per unit trail, also the most a trail starts with on load
TRAIL_SEED_S = 600.0  # trails start with the good fixes of this many seconds before load
ALERTS_MAX = 50
RECENT_EVENTS_H = 24.0  # events shown in the alerts panel on load
OVERDUE_COLOR = "#d7191c"
FIT_MAX_ZOOM = 17

_LIVE_ID: dict[str, str] = {
    "live_title": "Peta Patroli Langsung",
    "replay_title": "Putar Ulang Patroli",
    "alerts": "Peringatan",
    "no_alerts": "Belum ada peringatan",
    "connected": "Terhubung",
    "connecting": "Menghubungkan…",
    "disconnected": "Terputus",
    "reconnecting": "Terputus, menyambung ulang…",
    "off_route_now": "Keluar rute",
    "offline_now": "Tidak terhubung",
    "overdue": "Segmen terlambat dikunjungi",
    "play": "Putar",
    "pause": "Jeda",
    "speed": "Kecepatan",
    "time": "Waktu",
    "no_data": "Tidak ada data pada periode ini",
    "window": "Periode",
    "route": "Rute",
    "geofence": "Area",
    "segment": "Segmen",
}
_LIVE_EN: dict[str, str] = {
    "live_title": "Live patrol map",
    "replay_title": "Patrol replay",
    "alerts": "Alerts",
    "no_alerts": "No alerts yet",
    "connected": "Connected",
    "connecting": "Connecting…",
    "disconnected": "Disconnected",
    "reconnecting": "Disconnected, reconnecting…",
    "off_route_now": "Off route",
    "offline_now": "Offline",
    "overdue": "Segment overdue for a visit",
    "play": "Play",
    "pause": "Pause",
    "speed": "Speed",
    "time": "Time",
    "no_data": "No data in this window",
    "window": "Window",
    "route": "Route",
    "geofence": "Area",
    "segment": "Segment",
}
_EVENT_ID: dict[str, str] = {
    "geofence_enter": "Masuk area",
    "geofence_exit": "Keluar area",
    "off_route": "Keluar rute",
    "on_route": "Kembali ke rute",
    "stopped": "Berhenti",
    "moving": "Bergerak",
    "overspeed": "Melebihi batas kecepatan",
    "offline": "Tidak terhubung",
    "online": "Terhubung kembali",
    "revisit_overdue": "Terlambat dikunjungi",
    "revisited": "Dikunjungi kembali",
}
_EVENT_EN: dict[str, str] = {
    "geofence_enter": "Entered area",
    "geofence_exit": "Left area",
    "off_route": "Off route",
    "on_route": "Back on route",
    "stopped": "Stopped",
    "moving": "Moving",
    "overspeed": "Overspeed",
    "offline": "Offline",
    "online": "Back online",
    "revisit_overdue": "Overdue for a visit",
    "revisited": "Visited again",
}


def page_labels(lang: str) -> dict[str, str]:
    """Labels of the live and replay pages (coverage labels plus page-specific ones)."""
    code = normalize_lang(lang)
    out = dict(labels(code))
    out.update(_LIVE_ID if code == "id" else _LIVE_EN)
    return out


def event_labels(lang: str) -> dict[str, str]:
    """Display names of event types in `lang`."""
    return dict(_EVENT_ID if normalize_lang(lang) == "id" else _EVENT_EN)


@dataclass
class RouteLine:
    """A patrol route: corridor, centerline and the chainage (m) at each centerline vertex."""

    id: int
    name: str
    corridor_m: float
    corridor: Polygon
    centerline: LineString
    chainage: list[float]


@dataclass
class LiveUnit:
    """A unit's latest position (timestamp aware, UTC)."""

    unit_id: int
    unit_name: str
    lon: float
    lat: float
    ts: datetime
    speed_mps: float | None = None


@dataclass
class OverdueSegment:
    """A route stretch currently overdue for a visit."""

    patrol_route_id: int
    segment: int
    start_m: float
    end_m: float
    since: datetime


@dataclass
class LiveMapView:
    """Everything the live map shows on load, and where its stream is."""

    routes: list[RouteLine]
    fences: list[FenceLayer]
    units: list[LiveUnit]
    events: list[dict[str, Any]]
    off_route: dict[int, list[int]]
    overdue: list[OverdueSegment]
    cursor: str
    tz: ZoneInfo
    lang: str
    tile_url: str
    tile_attribution: str
    offline: list[int] = field(default_factory=list)
    trails: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    static_prefix: str = "/static"
    stream_path: str = "/api/v1/stream"
    trail_length: int = TRAIL_LENGTH
    alerts_max: int = ALERTS_MAX
    extra: dict[str, Any] = field(default_factory=dict)


def route_lines(session: Session) -> list[RouteLine]:
    """Every stored patrol route with corridor, centerline and vertex chainage."""
    out = []
    for row in session.scalars(select(PatrolRoute).order_by(PatrolRoute.id)):
        corridor = corridor_from_row(row)
        metric = shapely.get_coordinates(corridor.metric_line)
        steps = np.hypot(np.diff(metric[:, 0]), np.diff(metric[:, 1]))
        chainage = np.concatenate(([0.0], np.cumsum(steps)))
        out.append(
            RouteLine(
                id=row.id,
                name=row.name,
                corridor_m=row.corridor_m,
                corridor=corridor.area,
                centerline=corridor.line,
                chainage=[round(float(c), 1) for c in chainage],
            )
        )
    return out


def fence_layers(session: Session) -> list[FenceLayer]:
    """Every stored geofence outline."""
    return [
        FenceLayer(id=f.id, name=f.name, kind=f.kind, outline=fence_from_row(f).outline)
        for f in session.scalars(select(Geofence).order_by(Geofence.id))
    ]


def _latest_units(session: Session) -> list[LiveUnit]:
    """Units that have reported, at their newest analytics-eligible fix."""
    # The stream only carries good fixes; a marker left on a flagged one (inaccurate, a
    # teleport) would jump when the next good fix arrives.
    newest = (
        select(Ping.id)
        .where(Ping.unit_id == Unit.id, ELIGIBLE)
        .order_by(Ping.ts.desc(), Ping.id.desc())
        .limit(1)
        .correlate(Unit)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Unit.id, Unit.name, Ping.lon, Ping.lat, Ping.ts, Ping.speed_mps)
        .join(Ping, Ping.id == newest)
        .order_by(Unit.id)
    )
    return [
        LiveUnit(
            unit_id=unit_id,
            unit_name=name,
            lon=float(lon),
            lat=float(lat),
            ts=ts,
            speed_mps=speed,
        )
        for unit_id, name, lon, lat, ts, speed in rows
        if math.isfinite(lon) and math.isfinite(lat)
    ]


def _unit_states(session: Session, route_ids: set[int]) -> tuple[dict[int, list[int]], list[int]]:
    """Routes each unit is off of now, and the units offline now, from their event machines."""
    off_route: dict[int, list[int]] = {}
    offline: list[int] = []
    rows = session.execute(
        select(UnitState.unit_id, UnitState.machine)
        .where(UnitState.machine.is_not(None))
        .order_by(UnitState.unit_id)
    )
    for unit_id, saved in rows:
        try:
            machine = UnitMachine.from_dict(saved)
        except (KeyError, TypeError, ValueError):
            continue  # a state this version cannot read: shown as on route and online
        off = sorted(r for r, st in machine.routes.items() if st.off and r in route_ids)
        if off:
            off_route[unit_id] = off
        if machine.offline:
            offline.append(unit_id)
    return off_route, offline


def _recent_events(session: Session, since: datetime, cursor: Cursor) -> list[dict[str, Any]]:
    """The newest ALERTS_MAX events since `since` up to the cursor, oldest first."""
    rows = session.execute(
        select(Event, Unit.name)
        .outerjoin(Unit, Unit.id == Event.unit_id)
        .where(Event.ts >= since, Event.id <= cursor.event_id)
        .order_by(Event.id.desc())
        .limit(ALERTS_MAX)
    ).all()
    return [event_dict(event, name) for event, name in reversed(rows)]


def _recent_trails(
    session: Session, since: datetime, cursor: Cursor, per_unit: int
) -> dict[int, list[tuple[float, float]]]:
    """Each unit's newest `per_unit` analytics-eligible fixes since `since`, oldest first."""
    rank = (
        func.row_number()
        .over(partition_by=Ping.unit_id, order_by=(Ping.ts.desc(), Ping.id.desc()))
        .label("rank")
    )
    recent = (
        select(Ping.unit_id, Ping.ts, Ping.id, Ping.lon, Ping.lat, rank)
        .where(
            Ping.ts >= since,
            Ping.id <= cursor.ping_id,
            ELIGIBLE,
        )
        .subquery()
    )
    rows = session.execute(
        select(recent.c.unit_id, recent.c.lon, recent.c.lat)
        .where(recent.c.rank <= per_unit)
        .order_by(recent.c.unit_id, recent.c.ts, recent.c.id)
    )
    out: dict[int, list[tuple[float, float]]] = {}
    for unit_id, lon, lat in rows:
        if math.isfinite(lon) and math.isfinite(lat):
            out.setdefault(int(unit_id), []).append((round(lon, 7), round(lat, 7)))
    return out


def _overdue_segments(
    session: Session, routes: list[RouteLine], segment_m: float
) -> list[OverdueSegment]:
    """Route segments with an open overdue mark, as chainage ranges."""
    lengths = {r.id: r.chainage[-1] for r in routes}
    out = []
    for mark in session.scalars(
        select(OverdueMark).where(
            OverdueMark.patrol_route_id.is_not(None), OverdueMark.segment.is_not(None)
        )
    ):
        route_id, segment = mark.patrol_route_id, mark.segment
        if route_id is None or segment is None or route_id not in lengths:
            continue
        start = segment * segment_m
        end = min(start + segment_m, lengths[route_id])
        if start < end:
            out.append(OverdueSegment(route_id, segment, start, end, mark.since))
    return out


def live_map_view(
    session: Session, settings: Settings, *, lang: str | None = None, now: datetime | None = None
) -> LiveMapView:
    """What the live map shows on load: geometry, latest positions, recent events, stream cursor."""
    now = now or datetime.now(UTC)
    # The cursor is read first: whatever is stored after it reaches the page through the stream.
    cursor = current_cursor(session)
    routes = route_lines(session)
    since = now - timedelta(hours=RECENT_EVENTS_H)
    off_route, offline = _unit_states(session, {r.id for r in routes})
    trail_since = now - timedelta(seconds=TRAIL_SEED_S)
    return LiveMapView(
        routes=routes,
        fences=fence_layers(session),
        units=_latest_units(session),
        events=_recent_events(session, since, cursor),
        off_route=off_route,
        offline=offline,
        trails=_recent_trails(session, trail_since, cursor, TRAIL_LENGTH),
        overdue=_overdue_segments(session, routes, settings.segment_m),
        cursor=str(cursor),
        tz=settings.tz,
        lang=lang or settings.language,
        tile_url=settings.tile_url,
        tile_attribution=settings.tile_attribution,
    )


class PageScript(MacroElement):
    """Loads a page script and stylesheet and starts it with the map and the page's config.

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
        base = "/" + static_prefix.strip("/") if static_prefix.strip("/") else ""
        self.js_urls = [common_url(static_prefix), f"{base}/{ASSET_DIR}/{name}.js"]
        self.css_url = f"{base}/{ASSET_DIR}/patroli.css"
        self.starter = starter


def add_page_script(
    fmap: folium.Map, static_prefix: str, name: str, starter: str, config: dict[str, Any]
) -> None:
    """Start page script `name` on `fmap` with `config` (kept in the page data)."""
    page_data(fmap)["config"] = config
    PageScript(static_prefix, name, starter).add_to(fmap)


def add_base_layers(
    fmap: folium.Map, routes: list[RouteLine], fences: list[FenceLayer], lang: str
) -> _Bounds:
    """Corridors, centerlines and geofences (critical sites distinct); returns their bounds."""
    t = page_labels(lang)
    bounds = _Bounds()
    corridors: list[dict[str, Any]] = []
    centerlines: list[dict[str, Any]] = []
    for route in routes:
        name = _esc(route.name)
        if route.corridor is not None and not route.corridor.is_empty:
            bounds.add_geometry(route.corridor)
            corridors.append(
                _feature(
                    _rounded_geometry(route.corridor, 6),
                    f"c{len(corridors)}",
                    tip=f"<b>{name}</b><br>{_esc(t['corridor'])} ±{round(route.corridor_m)} m",
                    data={"route-id": route.id},
                )
            )
        if route.centerline is not None and not route.centerline.is_empty:
            bounds.add_geometry(route.centerline)
            centerlines.append(
                _feature(
                    _rounded_geometry(route.centerline, 6),
                    f"r{len(centerlines)}",
                    tip=f"<b>{_esc(t['route'])}: {name}</b>",
                    data={"route-id": route.id},
                )
            )
    add_route_base(fmap, corridors, centerlines, t, route_weight=6, route_opacity=0.5)
    features: list[dict[str, Any]] = []
    styles: dict[str, dict[str, Any]] = {}
    for fence in fences:
        if fence.outline is None or fence.outline.is_empty:
            continue
        bounds.add_geometry(fence.outline)
        fid = f"f{len(features)}"
        critical = fence.kind == CRITICAL_KIND
        color = CRITICAL_COLOR if critical else FENCE_COLOR
        styles[fid] = _style(
            color,
            "patroli-geofence patroli-critical" if critical else "patroli-geofence",
            weight=3 if critical else 2,
            dashArray=None if critical else "6 4",
            fill=True,
            fillColor=color,
            fillOpacity=0.12 if critical else 0.06,
        )
        features.append(
            _feature(
                _rounded_geometry(fence.outline, 6),
                fid,
                tip=f"<b>{_esc(fence.name)}</b><br>{_esc(kind_label(fence.kind, lang))}",
                data={"fence-id": fence.id, "kind": fence.kind},
            )
        )
    _add_layer(fmap, features, t["geofence"], style_by_id=styles)
    return bounds


def base_map(
    tile_url: str, tile_attribution: str, static_prefix: str, lang: str, title: str
) -> folium.Map:
    """An offline folium Map with the page title set."""
    fmap = offline_map(
        DEFAULT_CENTER,
        DEFAULT_ZOOM,
        tile_url,
        tile_attribution,
        static_prefix,
        tile_name=page_labels(lang)["base_map"],
        zoom_control="bottomleft",
        prefer_canvas=False,
    )
    fmap.get_root().title = _esc(title)  # type: ignore[attr-defined]
    return fmap


def fit_bounds(bounds: _Bounds) -> list[list[float]] | None:
    """Leaflet [[south, west], [north, east]] of `bounds`, or None when empty."""
    if bounds.box is None:
        return None
    minx, miny, maxx, maxy = bounds.box
    return [[miny, minx], [maxy, maxx]]


def _route_chainage(routes: list[RouteLine]) -> dict[str, Any]:
    """Per route id: centerline [lon, lat] vertices and the chainage (m) at each."""
    return {
        str(r.id): {
            "name": r.name,
            "coords": np.round(shapely.get_coordinates(r.centerline), 6).tolist(),
            "chainage": r.chainage,
        }
        for r in routes
    }


def live_config(view: LiveMapView, bounds: _Bounds) -> dict[str, Any]:
    """The JSON the live page script starts from."""
    lang = normalize_lang(view.lang)
    positions = {
        str(u.unit_id): {
            "unit_id": u.unit_id,
            "unit_name": u.unit_name,
            "lon": round(u.lon, 7),
            "lat": round(u.lat, 7),
            "ts": u.ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "speed_mps": u.speed_mps,
        }
        for u in view.units
    }
    for u in view.units:
        bounds.add(u.lon, u.lat, u.lon, u.lat)
    return {
        "lang": lang,
        "tz": view.tz.key,
        "zone": zone_label(view.tz),
        "labels": page_labels(lang),
        "eventLabels": event_labels(lang),
        "streamPath": view.stream_path,
        "cursor": view.cursor,
        "positions": positions,
        "events": view.events,
        "offRoute": {str(k): v for k, v in view.off_route.items()},
        "offline": view.offline,
        "trails": {str(k): [[lon, lat] for lon, lat in v] for k, v in view.trails.items()},
        "overdue": [
            {
                "patrol_route_id": o.patrol_route_id,
                "segment": o.segment,
                "start_m": o.start_m,
                "end_m": o.end_m,
            }
            for o in view.overdue
        ],
        "routes": _route_chainage(view.routes),
        "fences": {str(f.id): f.name for f in view.fences},
        "palette": list(UNIT_PALETTE),
        "overdueColor": OVERDUE_COLOR,
        "trailLength": view.trail_length,
        "alertsMax": view.alerts_max,
        "bounds": fit_bounds(bounds),
        "maxZoom": FIT_MAX_ZOOM,
        **view.extra,
    }


def build_live_map(view: LiveMapView) -> folium.Map:
    """The folium Map of the live page."""
    t: Mapping[str, str] = page_labels(view.lang)
    fmap = base_map(
        view.tile_url, view.tile_attribution, view.static_prefix, view.lang, t["live_title"]
    )
    bounds = add_base_layers(fmap, view.routes, view.fences, view.lang)
    config = live_config(view, bounds)
    add_page_script(fmap, view.static_prefix, "live", "PatroliLive.start", config)
    folium.LayerControl(collapsed=True, position="bottomleft").add_to(fmap)
    return fmap


def render_live_map(view: LiveMapView) -> str:
    """The live map for `view` as a complete HTML page."""
    return str(build_live_map(view).get_root().render())
