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

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.analytics.running import RunningCoverage
from service.areas.index import FenceEntry, GeoIndex, RouteEntry
from service.config import Settings
from service.geo.coverage import Coverage
from service.store.models import Event as EventRow
from service.store.models import Geofence, OverdueMark, PatrolRoute

_LOCK_KEY = 0x70617472  # one worker at a time computes overdue marks (PostgreSQL advisory lock)

Key = tuple[int | None, int | None, int | None]  # (patrol_route_id, segment, geofence_id)
# Marks store `since` at microsecond precision: a reference this much later is a real edit.
_EDIT_EPS_S = 1e-3


@dataclass(frozen=True)
class Visits:
    """The latest visits of the places with a revisit_s: each route's coverage (its segments'
    `last_visit`) and each geofence's last presence (epoch s, None when none)."""

    routes: dict[int, Coverage]
    fences: dict[int, float | None]


@dataclass(frozen=True)
class _Change:
    """A segment or geofence that just became overdue, or whose lapse a visit just ended."""

    since: datetime  # when the lapse began
    revisited: bool = False  # False: it just became overdue


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def lookback_start(index: GeoIndex, settings: Settings, now: datetime) -> datetime | None:
    """Oldest fix time the overdue check needs (None when nothing has a revisit_s)."""
    longest = _longest_revisit(index)
    return None if longest is None else now - 2 * longest - timedelta(seconds=settings.max_gap_s)


def _longest_revisit(index: GeoIndex) -> timedelta | None:
    intervals = [r.revisit_s for r in index.routes if r.revisit_s]
    intervals += [f.revisit_s for f in index.fences if f.revisit_s]
    return timedelta(seconds=max(intervals)) if intervals else None


def read_visits(
    session: Session,
    index: GeoIndex,
    settings: Settings,
    now: datetime,
    running: RunningCoverage,
) -> Visits | None:
    """The latest visits up to `now` (None when nothing has a revisit_s).

    They count from a start kept in `running` between `lookback_start` and one longest
    revisit_s before it, so that a pass reads only the fixes received since the last one; a
    start that falls behind that is moved up to `lookback_start`, which reads it all again.
    """
    start, longest = lookback_start(index, settings, now), _longest_revisit(index)
    if start is None or longest is None:
        return None
    kept = running.start
    if kept is None or kept > start or start - kept > longest:
        kept = start
    routes = [r for r in index.routes if r.revisit_s]
    fences = [f for f in index.fences if f.revisit_s]
    coverage = running.update(session, routes, fences, settings, kept, now)
    return Visits(coverage, running.last_presence())


def overdue_events(
    session: Session,
    index: GeoIndex,
    settings: Settings,
    now: datetime,
    visits: Visits | None = None,
) -> list[EventRow]:
    """Fire revisit_overdue for what became overdue, revisited for what was visited again.

    `visits` (`read_visits`) may be read beforehand, outside the write transaction.
    """
    routes = [r for r in index.routes if r.revisit_s]
    fences = [f for f in index.fences if f.revisit_s]
    if not routes and not fences:
        return []
    if (
        session.get_bind().dialect.name == "postgresql"
        and not session.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}
        ).scalar_one()
    ):
        return []  # another worker is on it
    if visits is None:
        visits = read_visits(session, index, settings, now, RunningCoverage())
        assert visits is not None
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
    end = now.timestamp()
    events: list[EventRow] = []
    for route in routes:
        events += _route(session, route, visits.routes[route.id], end, marks, edited)
    for fence in fences:
        events += _fence(session, fence, visits.fences[fence.id], end, marks, edited)
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
    cov: Coverage,
    now: float,
    marks: dict[Key, OverdueMark],
    edited: dict[tuple[str, int], float],
) -> list[EventRow]:
    assert route.revisit_s is not None
    ref = edited[("r", route.id)]
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
    seen: float | None,
    now: float,
    marks: dict[Key, OverdueMark],
    edited: dict[tuple[str, int], float],
) -> list[EventRow]:
    assert fence.revisit_s is not None
    ref = edited[("g", fence.id)]
    change = _due(session, (None, None, fence.id), seen, ref, fence.revisit_s, now, marks)
    if change is None:
        return []
    lon, lat = fence.fence.centroid
    details = {"last_presence": _iso(seen), "revisit_s": fence.revisit_s}
    event = _event(change, seen, lon, lat, details)
    event.geofence_id = fence.id
    return [event]
