"""Gathers what the coverage map draws from the store."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from service.analytics.coverage import compute_coverage
from service.analytics.positions import Fixes
from service.analytics.presence import fence_presence, min_dwell, read_fixes
from service.areas.index import area_revision
from service.config import Settings
from service.maps.coverage import (
    CoverageMapView,
    PositionLayer,
    RouteLayer,
    SegmentLayer,
    TrackLayer,
    heat_grid,
    render_coverage_map,
)
from service.maps.kit import page_fields, stored_fences, stored_routes
from service.store.models import Ping, Unit
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


def coverage_data_version(session: Session, window: Window, max_gap_s: float) -> tuple[Any, ...]:
    """What the coverage map of `window` depends on, in one query: changes with any new ping,
    any ping removed near the window, any unit, patrol route, geofence or assignment edit."""
    lo = window.start - timedelta(seconds=max_gap_s)
    hi = window.end + timedelta(seconds=max_gap_s)
    pings = select(
        func.max(Ping.id).label("last_id"),
        select(func.count())
        .select_from(Ping)
        .where(Ping.ts >= lo, Ping.ts <= hi)
        .scalar_subquery()
        .label("near"),
    ).subquery()
    units = select(func.count(Unit.id).label("n"), func.max(Unit.updated_at).label("at")).subquery()
    row = session.execute(
        select(pings.c.last_id, pings.c.near, units.c.n, units.c.at).select_from(
            pings.join(units, true())
        )
    ).one()
    return (*row, area_revision(session))


class PageCache:
    """The few most recently rendered pages, by what they were drawn from (thread-safe)."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._pages: OrderedDict[Hashable, str] = OrderedDict()

    def get(self, key: Hashable, render: Callable[[], str]) -> str:
        """The page for `key`, rendered (outside the lock) when it is not kept."""
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
                return page
        page = render()
        with self._lock:
            self._pages[key] = page
            while len(self._pages) > self._keep:
                self._pages.popitem(last=False)
        return page


def coverage_page(
    session: Session,
    settings: Settings,
    window: Window,
    *,
    lang: str | None = None,
    cache: PageCache | None = None,
) -> str:
    """The coverage map page of `window`, rendered again only when its data changed.

    `cache` belongs to one app (one set of settings); without it the page is always drawn.
    """
    if cache is None:
        return render_coverage_map(coverage_map_view(session, settings, window, lang=lang))
    key = (
        lang,
        window.start,
        window.end,
        coverage_data_version(session, window, settings.max_gap_s),
    )
    return cache.get(
        key, lambda: render_coverage_map(coverage_map_view(session, settings, window, lang=lang))
    )
