"""Revisit compliance of a patrol route over a window, from the stored pings."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from service.analytics.coverage import checked_route
from service.analytics.tracks import check_segments, unit_tracks
from service.areas.index import corridor_from_row
from service.errors import InvalidInput
from service.geo.compliance import revisit_compliance
from service.geo.coverage import visit_runs
from service.schemas import RouteWindowOut
from service.window import Window


class ComplianceSegmentOut(BaseModel):
    """One stretch of a patrol route: its visits and longest unvisited gap in the window."""

    index: int
    start_m: float
    end_m: float
    visits: int
    first_visit: datetime | None
    last_visit: datetime | None
    longest_gap_s: float
    complies: bool
    overdue_now: bool


class OverdueSegmentOut(BaseModel):
    """A segment not visited within revisit_s before the window end."""

    index: int
    start_m: float
    end_m: float
    last_visit: datetime | None
    overdue_since: datetime | None  # None: not visited at all in the window


class GapOut(BaseModel):
    """A stretch of time in which no unit visited a segment."""

    index: int
    gap_from: datetime = Field(serialization_alias="from")
    gap_to: datetime = Field(serialization_alias="to")
    gap_s: float


class RouteComplianceOut(RouteWindowOut):
    """Revisit compliance of a patrol route over a window [from, to)."""

    revisit_s: float
    segment_m: float
    max_gap_s: float
    length_m: float
    visited_m: float
    coverage_ratio: float
    compliant_m: float
    compliance_ratio: float
    segments: list[ComplianceSegmentOut]
    overdue_now: list[OverdueSegmentOut]
    longest_gaps: list[GapOut]


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _opt_dt(t: float | None) -> datetime | None:
    return None if t is None else _dt(t)


def patrol_route_compliance(
    session: Session,
    route_id: int,
    window: Window,
    revisit_s: float | None,
    segment_m: float,
    max_gap_s: float,
    unit_id: int | None = None,
) -> RouteComplianceOut:
    """Which segments of a patrol route were revisited often enough in the window."""
    row = checked_route(session, route_id, unit_id)
    revisit = revisit_s if revisit_s is not None else row.revisit_s
    if revisit is None:
        raise InvalidInput("revisit_s is required: this patrol route has no revisit_s set")
    corridor = corridor_from_row(row)
    check_segments(corridor, segment_m)
    start, end = window.start.timestamp(), window.end.timestamp()
    tracks = [t for _, t in unit_tracks(session, corridor, window, unit_id)]
    runs = visit_runs(
        corridor.length_m,
        tracks,
        start,
        end,
        closed=corridor.closed,
        segment_m=segment_m,
        max_gap_s=max_gap_s,
    )
    result = revisit_compliance(runs, corridor.length_m, start, end, revisit)
    return RouteComplianceOut(
        patrol_route_id=row.id,
        name=row.name,
        unit_id=unit_id,
        window_from=window.start,
        window_to=window.end,
        revisit_s=revisit,
        segment_m=segment_m,
        max_gap_s=max_gap_s,
        length_m=round(result.length_m, 3),
        visited_m=round(result.visited_m, 3),
        coverage_ratio=result.coverage_ratio,
        compliant_m=round(result.compliant_m, 3),
        compliance_ratio=result.compliance_ratio,
        segments=[
            ComplianceSegmentOut(
                index=s.index,
                start_m=round(s.start_m, 3),
                end_m=round(s.end_m, 3),
                visits=s.visits,
                first_visit=_opt_dt(s.first_visit),
                last_visit=_opt_dt(s.last_visit),
                longest_gap_s=round(s.longest_gap_s, 3),
                complies=s.complies,
                overdue_now=s.overdue_now,
            )
            for s in result.segments
        ],
        overdue_now=[
            OverdueSegmentOut(
                index=s.index,
                start_m=round(s.start_m, 3),
                end_m=round(s.end_m, 3),
                last_visit=_opt_dt(s.last_visit),
                overdue_since=_opt_dt(None if s.last_visit is None else s.last_visit + revisit),
            )
            for s in result.segments
            if s.overdue_now
        ],
        longest_gaps=[
            GapOut(
                index=g.segment,
                gap_from=_dt(g.start),
                gap_to=_dt(g.end),
                gap_s=round(g.seconds, 3),
            )
            for g in result.longest_gaps
        ],
    )
