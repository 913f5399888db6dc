"""Live map: routes, geofences, unit markers moved by the SSE stream, trails and an alerts panel."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import folium
import numpy as np
import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.analytics.positions import ELIGIBLE
from service.config import Settings
from service.events.log import event_dict
from service.events.machine import UnitMachine
from service.events.types import PINNED_TYPES
from service.maps.kit import (
    OVERDUE_COLOR,
    Bounds,
    FenceLayer,
    PageView,
    RouteBase,
    add_fence_layer,
    add_page_script,
    add_route_base,
    base_map,
    page_config,
    page_fields,
    stored_fences,
    stored_routes,
)
from service.maps.labels import event_labels, page_labels
from service.notify.stream import Cursor, current_cursor
from service.store.models import (
    Event,
    OverdueMark,
    PatrolRoute,
    Ping,
    Unit,
    UnitPatrolRoute,
    UnitState,
)

TRAIL_LENGTH = 20  # fixes per unit trail, also the most a trail starts with on load
TRAIL_SEED_S = 600.0  # trails start with the good fixes of this many seconds before load
ALERTS_MAX = 50
PINNED_MAX = 200  # unacknowledged high-priority alerts read on load
RECENT_EVENTS_H = 24.0  # events shown in the alerts panel on load


@dataclass
class RouteLine(RouteBase):
    """A patrol route with the chainage (m) at each centerline vertex."""

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
    heading: float | None = None
    battery: float | None = None


@dataclass
class RosterUnit:
    """A unit as the unit board lists it: name, kind, assigned routes with shifts."""

    unit_id: int
    unit_name: str
    kind: str
    routes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class OverdueSegment:
    """A route stretch currently overdue for a visit."""

    patrol_route_id: int
    segment: int
    start_m: float
    end_m: float
    since: datetime


@dataclass
class LiveMapView(PageView):
    """Everything the live map shows on load, and where its stream is."""

    routes: list[RouteLine]
    fences: list[FenceLayer]
    units: list[LiveUnit]
    events: list[dict[str, Any]]
    off_route: dict[int, list[int]]
    overdue: list[OverdueSegment]
    cursor: str
    offline: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    roster: list[RosterUnit] = field(default_factory=list)
    pinned: list[dict[str, Any]] = field(default_factory=list)
    can_ack: bool = False
    ack_path: str = "/api/v1/events/{id}/ack"
    trails: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    stream_path: str = "/api/v1/stream"
    trail_length: int = TRAIL_LENGTH
    alerts_max: int = ALERTS_MAX
    extra: dict[str, Any] = field(default_factory=dict)


def route_lines(session: Session) -> list[RouteLine]:
    """Every stored patrol route with corridor, centerline and vertex chainage."""
    out = []
    for _, corridor, base in stored_routes(session):
        metric = shapely.get_coordinates(corridor.metric_line)
        steps = np.hypot(np.diff(metric[:, 0]), np.diff(metric[:, 1]))
        chainage = np.concatenate(([0.0], np.cumsum(steps)))
        out.append(RouteLine(**base, chainage=[round(float(c), 1) for c in chainage]))
    return out


def fence_layers(session: Session) -> list[FenceLayer]:
    """Every stored geofence outline."""
    return [layer for _, _, layer in stored_fences(session)]


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
        select(
            Unit.id,
            Unit.name,
            Ping.lon,
            Ping.lat,
            Ping.ts,
            Ping.speed_mps,
            Ping.heading,
            Ping.battery,
        )
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
            heading=heading,
            battery=battery,
        )
        for unit_id, name, lon, lat, ts, speed, heading, battery in rows
        if math.isfinite(lon) and math.isfinite(lat)
    ]


def _roster(session: Session) -> list[RosterUnit]:
    """Every unit with its kind and assigned patrol routes (with their daily shifts)."""
    units = {
        uid: RosterUnit(uid, name, kind)
        for uid, name, kind in session.execute(
            select(Unit.id, Unit.name, Unit.kind).order_by(Unit.id)
        )
    }
    rows = session.execute(
        select(
            UnitPatrolRoute.unit_id,
            PatrolRoute.id,
            PatrolRoute.name,
            UnitPatrolRoute.shift_start,
            UnitPatrolRoute.shift_end,
        )
        .join(PatrolRoute, PatrolRoute.id == UnitPatrolRoute.patrol_route_id)
        .order_by(UnitPatrolRoute.unit_id, PatrolRoute.id)
    )
    for uid, route_id, name, start, end in rows:
        if uid in units:
            units[uid].routes.append(
                {"id": route_id, "name": name, "shift_start": start, "shift_end": end}
            )
    return list(units.values())


def _unit_states(
    session: Session, route_ids: set[int]
) -> tuple[dict[int, list[int]], list[int], list[int]]:
    """Routes each unit is off of now, and the units offline and stopped now (event machines)."""
    off_route: dict[int, list[int]] = {}
    offline: list[int] = []
    stopped: list[int] = []
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
        if machine.stop.stopped:
            stopped.append(unit_id)
    return off_route, offline, stopped


def _recent_events(session: Session, since: datetime, cursor: Cursor) -> list[dict[str, Any]]:
    """The newest ALERTS_MAX events (by event time) since `since` up to the cursor, oldest first.

    Acknowledgements are not alerts: they only change the alerts they acknowledge.
    """
    rows = session.execute(
        select(Event, Unit.name)
        .outerjoin(Unit, Unit.id == Event.unit_id)
        .where(Event.ts >= since, Event.id <= cursor.event_id, Event.type != "ack")
        .order_by(Event.ts.desc(), Event.id.desc())
        .limit(ALERTS_MAX)
    ).all()
    return [event_dict(event, name) for event, name in reversed(rows)]


def _pinned_events(session: Session, since: datetime, cursor: Cursor) -> list[dict[str, Any]]:
    """Unacknowledged high-priority events since `since` up to the cursor, newest first."""
    rows = session.execute(
        select(Event, Unit.name)
        .outerjoin(Unit, Unit.id == Event.unit_id)
        .where(
            Event.ts >= since,
            Event.id <= cursor.event_id,
            Event.type.in_(PINNED_TYPES),
            Event.acked_at.is_(None),
        )
        .order_by(Event.ts.desc(), Event.id.desc())
        .limit(PINNED_MAX)
    ).all()
    return [event_dict(event, name) for event, name in rows]


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
    session: Session,
    settings: Settings,
    *,
    lang: str | None = None,
    now: datetime | None = None,
    can_ack: bool = False,
) -> LiveMapView:
    """What the live map shows on load: geometry, latest positions, recent events, stream cursor."""
    now = now or datetime.now(UTC)
    # The cursor is read first: whatever is stored after it reaches the page through the stream.
    cursor = current_cursor(session)
    routes = route_lines(session)
    since = now - timedelta(hours=RECENT_EVENTS_H)
    off_route, offline, stopped = _unit_states(session, {r.id for r in routes})
    trail_since = now - timedelta(seconds=TRAIL_SEED_S)
    return LiveMapView(
        routes=routes,
        fences=fence_layers(session),
        units=_latest_units(session),
        events=_recent_events(session, since, cursor),
        off_route=off_route,
        offline=offline,
        stopped=stopped,
        roster=_roster(session),
        pinned=_pinned_events(session, since, cursor),
        can_ack=can_ack,
        trails=_recent_trails(session, trail_since, cursor, TRAIL_LENGTH),
        overdue=_overdue_segments(session, routes, settings.segment_m),
        cursor=str(cursor),
        **page_fields(settings, lang),
    )


def add_base_layers(
    fmap: folium.Map,
    view: PageView,
    routes: list[RouteLine],
    fences: list[FenceLayer],
    t: Mapping[str, str],
) -> Bounds:
    """Corridors, centerlines and geofences (critical sites distinct); returns their bounds."""
    bounds = Bounds()
    add_route_base(
        fmap,
        routes,
        t,
        bounds,
        width=lambda m: str(round(m)),
        route_weight=6,
        route_opacity=0.5,
    )
    add_fence_layer(fmap, fences, view, t, bounds, fill_opacity=(0.12, 0.06))
    return bounds


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


def live_config(view: LiveMapView, bounds: Bounds) -> dict[str, Any]:
    """The JSON the live page script starts from."""
    positions = {
        str(u.unit_id): {
            "unit_id": u.unit_id,
            "unit_name": u.unit_name,
            "lon": round(u.lon, 7),
            "lat": round(u.lat, 7),
            "ts": u.ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "speed_mps": u.speed_mps,
            "heading": u.heading,
            "battery": u.battery,
        }
        for u in view.units
    }
    for u in view.units:
        bounds.add(u.lon, u.lat, u.lon, u.lat)
    return {
        **page_config(view, page_labels(view.lang), bounds),
        "eventLabels": event_labels(view.lang),
        "streamPath": view.stream_path,
        "cursor": view.cursor,
        "positions": positions,
        "events": view.events,
        "offRoute": {str(k): v for k, v in view.off_route.items()},
        "offline": view.offline,
        "stopped": view.stopped,
        "roster": [
            {"unit_id": u.unit_id, "unit_name": u.unit_name, "kind": u.kind, "routes": u.routes}
            for u in view.roster
        ],
        "pinned": view.pinned,
        "pinnedTypes": list(PINNED_TYPES),
        "canAck": view.can_ack,
        "ackPath": view.ack_path,
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
        "overdueColor": OVERDUE_COLOR,
        "trailLength": view.trail_length,
        "alertsMax": view.alerts_max,
        **view.extra,
    }


def build_live_map(view: LiveMapView) -> folium.Map:
    """The folium Map of the live page."""
    t = page_labels(view.lang)
    fmap = base_map(view, t["live_title"])
    bounds = add_base_layers(fmap, view, view.routes, view.fences, t)
    add_page_script(
        fmap, view.static_prefix, "live", "PatroliLive.start", live_config(view, bounds)
    )
    folium.LayerControl(collapsed=True, position="bottomleft").add_to(fmap)
    return fmap


def render_live_map(view: LiveMapView) -> str:
    """The live map for `view` as a complete HTML page."""
    return str(build_live_map(view).get_root().render())
