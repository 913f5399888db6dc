"""Gathers what the coverage map draws from the store."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.analytics.coverage import compute_coverage
from service.analytics.positions import Fixes
from service.analytics.presence import fence_presence, min_dwell, read_fixes
from service.config import Settings
from service.maps.coverage import (
    CoverageMapView,
    PositionLayer,
    RouteLayer,
    SegmentLayer,
    TrackLayer,
    heat_grid,
)
from service.maps.kit import page_fields, stored_fences, stored_routes
from service.store.models import Unit
from service.window import Window


def _utc(t: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)


def _within(fixes: Fixes, start: float, end: float) -> Fixes:
    """The fixes with start <= t < end."""
    keep = (fixes.t >= start) & (fixes.t < end)
    return Fixes(fixes.unit_id[keep], fixes.t[keep], fixes.lon[keep], fixes.lat[keep])


def coverage_map_view(
    session: Session, settings: Settings, window: Window, *, lang: str | None = None
) -> CoverageMapView:
    """Routes with segment ages, geofence presence, heat, tracks and latest positions."""
    segment_m, max_gap_s = settings.segment_m, settings.max_gap_s
    start, end = window.start.timestamp(), window.end.timestamp()
    # One read: presence needs max_gap_s beyond the window; everything else uses the window.
    around = read_fixes(session, window, max_gap_s)
    fixes = _within(around, start, end)

    routes = []
    for row, corridor, base in stored_routes(session):
        cov = compute_coverage(corridor, fixes, window, segment_m, max_gap_s)
        lines = corridor.segment_lines(segment_m)
        segments = [
            SegmentLayer(
                line=line,
                start_m=s.start_m,
                end_m=s.end_m,
                visited=s.visited,
                last_visit=None if s.last_visit is None else _utc(s.last_visit),
            )
            for s, line in zip(cov.segments, lines, strict=True)
        ]
        routes.append(
            RouteLayer(
                **base,
                segments=segments,
                coverage_ratio=cov.coverage_ratio,
                revisit_s=row.revisit_s,
            )
        )

    fences = []
    for f, fence, layer in stored_fences(session):
        presence = fence_presence(fence, around, start, end, max_gap_s, min_dwell(f, settings))
        layer.covered_ratio = presence.coverage_ratio
        if presence.uncovered.shape[0]:
            lo, hi = presence.uncovered[int(np.argmax(np.diff(presence.uncovered, axis=1)))]
            layer.longest_gap = (_utc(float(lo)), _utc(float(hi)))
        fences.append(layer)

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
                ts=_utc(float(times[-1])),
                speed_mps=None,
            )
        )

    return CoverageMapView(
        routes=routes,
        fences=fences,
        tracks=tracks,
        positions=positions,
        heat=heat_grid(fixes.lon, fixes.lat),
        **page_fields(settings, lang, window),
    )
