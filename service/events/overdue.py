"""`revisit_overdue`: route segments and critical sites left unvisited longer than revisit_s.

Each segment (or geofence) fires once when it becomes overdue; an overdue mark remembers that
until a unit visits it again, which fires `revisited` and clears the mark. The reference time of
a never-visited segment is the route's last edit, so creating or editing a route does not fire a
burst of events; an edit also clears open marks, silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.analytics.coverage import compute_coverage
from service.analytics.positions import Fixes, eligible_fixes
from service.areas.index import FenceEntry, GeoIndex, RouteEntry
from service.config import Settings
from service.store.models import Event as EventRow
from service.store.models import Geofence, OverdueMark, PatrolRoute
from service.window import Window

_LOCK_KEY = 0x70617472  # one worker at a time computes overdue marks (PostgreSQL advisory lock)

Key = tuple[int | None, int | None, int | None]  # (patrol_route_id, segment, geofence_id)
# Marks store `since` at microsecond precision: a reference this much later is a real edit.
_EDIT_EPS_S = 1e-3


@dataclass(frozen=True)
class _Change:
    """A segment or geofence that just became overdue, or whose lapse a visit just ended."""

    since: datetime  # when the lapse began
    revisited: bool = False  # False: it just became overdue


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
    """Fire revisit_overdue for what became overdue, revisited for what was visited again.

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
    seen: float | None,
    ref: float,
    revisit_s: float,
    now: float,
    marks: dict[Key, OverdueMark],
) -> _Change | None:
    """What changed for one segment or geofence since the last pass, if anything; updates marks.

    `seen` is its latest visit in the lookback window, `ref` the last edit of its route/geofence.
    """
    last = max(seen or ref, ref)
    if now - last <= revisit_s:
        mark = marks.pop(key, None)
        if mark is None:
            return None
        session.delete(mark)  # the next lapse fires anew
        # When the mark was set, `ref` was at most since - revisit_s. A later reference means
        # the route/geofence was edited since, and edits fire nothing: the mark goes quietly.
        # Otherwise `ref` alone cannot make it fresh again (now > since), so a visit did.
        if seen is None or ref > mark.since.timestamp() - revisit_s + _EDIT_EPS_S:
            return None
        return _Change(since=mark.since, revisited=True)
    if key in marks:
        return None  # already fired for this lapse
    since = datetime.fromtimestamp(last + revisit_s, UTC)
    mark = OverdueMark(patrol_route_id=key[0], segment=key[1], geofence_id=key[2], since=since)
    session.add(mark)
    marks[key] = mark
    return _Change(since=since)


def _event(
    change: _Change, seen: float | None, lon: float, lat: float, details: dict[str, Any]
) -> EventRow:
    """The revisit_overdue or revisited event of a change; callers set its route or geofence."""
    if not change.revisited:
        return EventRow(type="revisit_overdue", ts=change.since, lon=lon, lat=lat, details=details)
    assert seen is not None
    # Same details as the revisit_overdue of this lapse, the latest visit now being the one that
    # ended it; the lapse's start lets a consumer match the two.
    details["overdue_since"] = _iso(change.since.timestamp())
    return EventRow(
        type="revisited", ts=datetime.fromtimestamp(seen, UTC), lon=lon, lat=lat, details=details
    )


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
        key = (route.id, seg.index, None)
        change = _due(session, key, seg.last_visit, ref, route.revisit_s, now, marks)
        if change is None:
            continue
        lon, lat = route.corridor.point_at((seg.start_m + seg.end_m) / 2)
        details = {
            "segment": seg.index,
            "start_m": round(seg.start_m, 1),
            "end_m": round(seg.end_m, 1),
            "last_visit": _iso(seg.last_visit),
            "revisit_s": route.revisit_s,
        }
        event = _event(change, seg.last_visit, lon, lat, details)
        event.patrol_route_id = route.id
        events.append(event)
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
    ref, now = edited[("g", fence.id)], now_dt.timestamp()
    change = _due(session, (None, None, fence.id), seen, ref, fence.revisit_s, now, marks)
    if change is None:
        return []
    lon, lat = fence.fence.centroid
    details = {"last_presence": _iso(seen), "revisit_s": fence.revisit_s}
    event = _event(change, seen, lon, lat, details)
    event.geofence_id = fence.id
    return [event]
