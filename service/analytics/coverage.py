"""Patrol-route coverage over a window, from the stored pings."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from service.analytics.positions import Fixes
from service.analytics.tracks import located_tracks, stored_route_coverage, tracks_coverage
from service.areas.features import get_route
from service.areas.index import corridor_from_row
from service.errors import NotFound
from service.geo.corridor import Corridor
from service.geo.coverage import Coverage
from service.schemas import RouteCoverageOut, SegmentOut
from service.store.models import PatrolRoute, Unit
from service.window import Window


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def checked_route(session: Session, route_id: int, unit_id: int | None) -> PatrolRoute:
    """A stored patrol route, or NotFound; NotFound too for a unit given but not stored."""
    row = get_route(session, route_id)
    if unit_id is not None and session.get(Unit, unit_id) is None:
        raise NotFound(f"unit {unit_id} not found")
    return row


def compute_coverage(
    corridor: Corridor, fixes: Fixes, window: Window, segment_m: float, max_gap_s: float
) -> Coverage:
    """Coverage of one patrol route by the given fixes (ordered by unit)."""
    tracks = [track for _, track in located_tracks(corridor, fixes)]
    return tracks_coverage(corridor, tracks, window, segment_m, max_gap_s)


def patrol_route_coverage(
    session: Session,
    route_id: int,
    window: Window,
    segment_m: float,
    max_gap_s: float,
    unit_id: int | None = None,
) -> RouteCoverageOut:
    """Which segments of a patrol route were visited in the window, and when (one unit or all)."""
    row = checked_route(session, route_id, unit_id)
    corridor = corridor_from_row(row)
    result = stored_route_coverage(session, corridor, window, segment_m, max_gap_s, unit_id=unit_id)
    return RouteCoverageOut(
        patrol_route_id=row.id,
        name=row.name,
        unit_id=unit_id,
        window_from=window.start,
        window_to=window.end,
        segment_m=segment_m,
        max_gap_s=max_gap_s,
        length_m=round(result.length_m, 3),
        visited_m=round(result.visited_m, 3),
        coverage_ratio=result.coverage_ratio,
        segments=[
            SegmentOut(
                index=s.index,
                start_m=round(s.start_m, 3),
                end_m=round(s.end_m, 3),
                visited=s.visited,
                visits=s.visits,
                first_visit=_dt(s.first_visit),
                last_visit=_dt(s.last_visit),
            )
            for s in result.segments
        ],
    )
