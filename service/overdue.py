"""`revisit_overdue`: route segments and critical sites left unvisited longer than revisit_s.

Each segment (or geofence) fires once when it becomes overdue; an overdue mark remembers that
until a unit visits it again. The reference time of a never-visited segment is the route's last
edit, so creating or editing a route does not fire a burst of events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.config import Settings
from service.coverage import compute_coverage
from service.deps import Window
from service.evaluate import FenceEntry, GeoIndex, RouteEntry
from service.positions import Fixes, eligible_fixes
from service.store.models import Event as EventRow
from service.store.models import Geofence, OverdueMark, PatrolRoute

_LOCK_KEY = 0x70617472  # one worker at a time computes overdue marks (PostgreSQL advisory lock)

Key = tuple[int | None, int | None, int | None]  # (patrol_route_id, segment, geofence_id)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def lookback_start(index: GeoIndex, settings: Settings, now: datetime) -> datetime | None:
    """Oldest fix time the overdue check needs (None when nothing has a revisit_s)."""
    intervals = [r.revisit_s for r in index.routes if r.revisit_s]
    intervals += [f.revisit_s for f in index.fences if f.revisit_s]
    if not intervals:
        return None
    return now - timedelta(seconds=2 * max(intervals) + settings.max_gap_s)


def overdue_events(
    session: Session,
    index: GeoIndex,
    settings: Settings,
    now: datetime,
    fixes: Fixes | None = None,
) -> list[EventRow]:
    """Fire revisit_overdue for what became overdue; clear marks of what was visited again.

    `fixes` (from `lookback_start` to now) may be read beforehand, outside the write transaction.
    """
    routes = [r for r in index.routes if r.revisit_s]
    fences = [f for f in index.fences if f.revisit_s]
    start = lookback_start(index, settings, now)
    if start is None:
        return []
    if (
        session.get_bind().dialect.name == "postgresql"
        and not session.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}
        ).scalar_one()
    ):
        return []  # another worker is on it
    if fixes is None:
        fixes = eligible_fixes(session, start, now)
    marks: dict[Key, OverdueMark] = {
        (m.patrol_route_id, m.segment, m.geofence_id): m
        for m in session.scalars(select(OverdueMark).with_for_update())
    }
    edited = {
        ("r", rid): ts.timestamp()
        for rid, ts in session.execute(select(PatrolRoute.id, PatrolRoute.updated_at))
    }
    edited |= {
        ("g", gid): ts.timestamp()
        for gid, ts in session.execute(select(Geofence.id, Geofence.updated_at))
    }
    events: list[EventRow] = []
    for route in routes:
        events += _route(session, route, fixes, Window(start, now), settings, marks, edited)
    for fence in fences:
        events += _fence(session, fence, fixes, now, marks, edited)
    return events


def _due(
    session: Session,
    key: Key,
    last: float,
    revisit_s: float,
    now: float,
    marks: dict[Key, OverdueMark],
) -> datetime | None:
    """The time the thing became overdue, if it just did (None otherwise); updates marks."""
    if now - last <= revisit_s:
        mark = marks.pop(key, None)
        if mark is not None:
            session.delete(mark)  # visited again: the next lapse fires anew
        return None
    if key in marks:
        return None  # already fired for this lapse
    since = datetime.fromtimestamp(last + revisit_s, UTC)
    mark = OverdueMark(patrol_route_id=key[0], segment=key[1], geofence_id=key[2], since=since)
    session.add(mark)
    marks[key] = mark
    return since


def _route(
    session: Session,
    route: RouteEntry,
    fixes: Fixes,
    window: Window,
    settings: Settings,
    marks: dict[Key, OverdueMark],
    edited: dict[tuple[str, int], float],
) -> list[EventRow]:
    assert route.revisit_s is not None
    cov = compute_coverage(route.corridor, fixes, window, settings.segment_m, settings.max_gap_s)
    now, ref = window.end.timestamp(), edited[("r", route.id)]
    events = []
    for seg in cov.segments:
        last = max(seg.last_visit or ref, ref)
        since = _due(session, (route.id, seg.index, None), last, route.revisit_s, now, marks)
        if since is None:
            continue
        lon, lat = route.corridor.point_at((seg.start_m + seg.end_m) / 2)
        events.append(
            EventRow(
                type="revisit_overdue",
                ts=since,
                lon=lon,
                lat=lat,
                patrol_route_id=route.id,
                details={
                    "segment": seg.index,
                    "start_m": round(seg.start_m, 1),
                    "end_m": round(seg.end_m, 1),
                    "last_visit": _iso(seg.last_visit),
                    "revisit_s": route.revisit_s,
                },
            )
        )
    return events


def _fence(
    session: Session,
    fence: FenceEntry,
    fixes: Fixes,
    now_dt: datetime,
    marks: dict[Key, OverdueMark],
    edited: dict[tuple[str, int], float],
) -> list[EventRow]:
    assert fence.revisit_s is not None
    inside = fence.fence.contains_many(fixes.lon, fixes.lat) if fixes.t.size else np.zeros(0, bool)
    seen = float(fixes.t[inside].max()) if inside.any() else None
    ref = edited[("g", fence.id)]
    last = max(seen or ref, ref)
    since = _due(session, (None, None, fence.id), last, fence.revisit_s, now_dt.timestamp(), marks)
    if since is None:
        return []
    lon, lat = fence.fence.centroid
    return [
        EventRow(
            type="revisit_overdue",
            ts=since,
            lon=lon,
            lat=lat,
            geofence_id=fence.id,
            details={"last_presence": _iso(seen), "revisit_s": fence.revisit_s},
        )
    ]
