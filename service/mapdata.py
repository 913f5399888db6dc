"""Gathers what the coverage map draws from the store."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.coverage import compute_coverage
from service.deps import Window
from service.evaluate import corridor_from_row, fence_from_row
from service.maps.coverage import (
    CoverageMapView,
    FenceLayer,
    PositionLayer,
    RouteLayer,
    SegmentLayer,
    TrackLayer,
)
from service.positions import eligible_fixes
from service.store.models import Geofence, PatrolRoute, Unit


def coverage_map_view(
    session: Session, settings: Settings, window: Window, *, lang: str | None = None
) -> CoverageMapView:
    """Routes with coloured segments, geofences, tracks and latest positions for a window."""
    fixes = eligible_fixes(session, window.start, window.end)
    segment_m, max_gap_s = settings.segment_m, settings.max_gap_s

    routes = []
    for row in session.scalars(select(PatrolRoute).order_by(PatrolRoute.id)):
        corridor = corridor_from_row(row)
        cov = compute_coverage(corridor, fixes, window, segment_m, max_gap_s)
        lines = corridor.segment_lines(segment_m)
        routes.append(
            RouteLayer(
                id=row.id,
                name=row.name,
                corridor_m=row.corridor_m,
                corridor=corridor.area,
                centerline=corridor.line,
                coverage_ratio=cov.coverage_ratio,
                segments=[
                    SegmentLayer(
                        line=line,
                        start_m=s.start_m,
                        end_m=s.end_m,
                        visited=s.visited,
                        last_visit=(
                            None
                            if s.last_visit is None
                            else datetime.fromtimestamp(s.last_visit, UTC)
                        ),
                    )
                    for s, line in zip(cov.segments, lines, strict=True)
                ],
            )
        )

    fences = [
        FenceLayer(id=f.id, name=f.name, kind=f.kind, outline=fence_from_row(f).outline)
        for f in session.scalars(select(Geofence).order_by(Geofence.id))
    ]

    names: dict[int, str] = {uid: name for uid, name in session.execute(select(Unit.id, Unit.name))}
    tracks, positions = [], []
    for uid in np.unique(fixes.unit_id):
        mask = fixes.unit_id == uid
        lons, lats, times = fixes.lon[mask], fixes.lat[mask], fixes.t[mask]
        name = names.get(int(uid), f"unit {uid}")
        coords = list(zip(lons.tolist(), lats.tolist(), strict=True))
        tracks.append(TrackLayer(unit_id=int(uid), unit_name=name, coords=coords))
        # The map shows where each unit was last seen within the window.
        positions.append(
            PositionLayer(
                unit_id=int(uid),
                unit_name=name,
                lon=float(lons[-1]),
                lat=float(lats[-1]),
                ts=datetime.fromtimestamp(float(times[-1]), UTC),
                speed_mps=None,
            )
        )

    return CoverageMapView(
        routes=routes,
        fences=fences,
        tracks=tracks,
        positions=positions,
        start=window.start,
        end=window.end,
        tz=settings.tz,
        lang=lang or settings.language,
        tile_url=settings.tile_url,
        tile_attribution=settings.tile_attribution,
    )
