"""The QGIS layers (PostGIS only): the coverage table and the settings the views read.

Migration 0007 creates four layers for desktop GIS (README, "Opening the data in QGIS"). Three
are views computed by PostGIS when QGIS reads them; `qgis_coverage_segments` is a table, since
coverage (linear referencing in each route's UTM zone, interpolated visits, loops) is the
Python computation the API answers with. `refresh_qgis` rewrites it for the current shift and
writes the settings row (time zone, max_gap_s, ...) the views read. The scheduler calls it every
`qgis_refresh_s`; with several workers or instances one transaction-scoped advisory lock lets
one of them write, and a refresh made by another within half the interval is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import chain

import numpy as np
import shapely
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.analytics.positions import Fixes, NewFixes, fixes_received
from service.analytics.reports import parse_hhmm, shift_windows
from service.analytics.tracks import located_tracks
from service.areas.index import GeoIndex
from service.config import Settings
from service.geo.coverage import Coverage, CoverageTally
from service.store.models import Unit
from service.window import Window

# The relations QGIS opens, one layer each (deploy/qgis/patroli.qgs).
LAYERS = (
    "qgis_latest_positions",
    "qgis_tracks_today",
    "qgis_coverage_segments",
    "qgis_geofences",
)

_LOCK_KEY = 0x71676973  # one writer of the QGIS tables at a time (PostgreSQL advisory lock)
SEGMENT_ID_BASE = 100_000  # id = route id * this + segment (a route has at most 100,000)
FRESH_S = 30 * 60.0  # as the coverage map: visited this recently is fresh (green)
DEFAULT_REVISIT_S = 60 * 60.0  # stale (amber) up to the route's revisit_s, or this without one
# A ping is committed within this long of being received (its `received_at`): each refresh
# reads the pings received since the previous one, less this. One whose transaction stayed
# open longer is missed by the layer until the next shift (the API still counts it).
SETTLE_S = 60.0


@dataclass(frozen=True)
class Shift:
    """The shift a moment falls in: its name and its [from, to) in UTC."""

    name: str
    window: Window


def current_shift(now: datetime, settings: Settings) -> Shift:
    """The day or night shift (settings `shift_day_start`, `shift_night_start`) holding now."""
    day_start = parse_hhmm(settings.shift_day_start, "shift_day_start")
    night_start = parse_hhmm(settings.shift_night_start, "shift_night_start")
    local: date = now.astimezone(settings.tz).date()
    for day in (local - timedelta(days=1), local):
        for name, window in shift_windows(day, day_start, night_start, settings):
            if window.start <= now < window.end:
                return Shift(name, window)
    raise AssertionError(f"no shift holds {now.isoformat()}")  # the shifts tile every day


class ShiftCoverage:
    """Every patrol route's coverage of the current shift, kept up to date incrementally.

    The first `update` of a shift reads the shift's eligible fixes; later ones read only the
    fixes received since the previous update (less SETTLE_S, by `received_at`) and add them to
    each route's `CoverageTally`, unit by unit. A unit whose new fixes come before its last one
    (device time, then id: a late upload) is read again from the shift start; fixes ahead of
    the clock wait until their time. The result equals computing the shift in one go from the
    fixes stored now. A new shift, a changed route or changed settings starts over.
    """

    def __init__(self, chunk: int = 20_000) -> None:
        self._chunk = chunk  # fixes read at a time: the memory a read takes is bounded by it
        self._key: tuple[object, ...] | None = None
        self._tallies: dict[int, CoverageTally] = {}
        self._last: dict[int, tuple[float, int]] = {}  # (device time, id) of each unit's last fix
        # Ids read and their reception times (epoch s), while the next read can return them.
        self._seen_id = np.zeros(0, dtype=np.int64)
        self._seen_at = np.zeros(0)
        self._ahead: NewFixes | None = None  # fixes later than the last update's `now`
        self._read_at: datetime | None = None

    def update(
        self, session: Session, index: GeoIndex, settings: Settings, start: datetime, now: datetime
    ) -> dict[int, Coverage]:
        """Each route's coverage of [start, now) by the eligible fixes stored now."""
        try:
            return self._update(session, index, settings, start, now)
        except BaseException:
            self._key = None  # half an update is no state to go on from: start over next time
            raise

    def _update(
        self, session: Session, index: GeoIndex, settings: Settings, start: datetime, now: datetime
    ) -> dict[int, Coverage]:
        key = (
            start,
            settings.segment_m,
            settings.max_gap_s,
            *((r.id, r.corridor) for r in index.routes),
        )
        if key != self._key:
            self._key = key
            self._tallies = {
                r.id: CoverageTally(
                    r.corridor.length_m,
                    start.timestamp(),
                    closed=r.corridor.closed,
                    segment_m=settings.segment_m,
                    max_gap_s=settings.max_gap_s,
                )
                for r in index.routes
            }
            self._last, self._ahead, self._read_at = {}, None, None
            self._seen_id, self._seen_at = np.zeros(0, dtype=np.int64), np.zeros(0)
        # `received_at` is the receiving server's clock: the horizon is the clock's too, not
        # `now` (the window's end, which a caller may set elsewhere).
        since = None if self._read_at is None else self._read_at - timedelta(seconds=SETTLE_S)
        self._read_at = datetime.now(UTC)
        units = set(session.scalars(select(Unit.id)))
        for unit in set(self._last) - units:  # deleted, with their pings
            self._forget(unit)
        ahead, self._ahead = self._ahead, None
        again: set[int] = set()
        # Each unit's fixes come in order, piece after piece; those ahead of the clock before
        # are added after the new ones (a unit's new fix before one of them makes it late).
        pieces = (
            self._unseen(piece)
            for piece in fixes_received(session, start, since, None, self._chunk)
        )
        for piece in chain(pieces, [ahead] if ahead is not None else []):
            piece = _take(piece, np.isin(piece.fixes.unit_id, list(units)))
            again |= self._out_of_order(piece, now)
            self._add(_take(piece, ~np.isin(piece.fixes.unit_id, list(again))), index, now)
        if again:  # read again from the start of the shift, alone
            for unit in again:
                self._forget(unit)
            if self._ahead is not None:
                self._ahead = _take(self._ahead, ~np.isin(self._ahead.fixes.unit_id, list(again)))
            for piece in fixes_received(session, start, None, again, self._chunk):
                self._mark_seen(piece)
                self._add(piece, index, now)
        recent = self._seen_at >= self._read_at.timestamp() - SETTLE_S  # the next read's
        self._seen_id, self._seen_at = self._seen_id[recent], self._seen_at[recent]
        return {rid: tally.coverage() for rid, tally in self._tallies.items()}

    def _unseen(self, read: NewFixes) -> NewFixes:
        """The fixes of `read` not read before; they count as read from now on."""
        read = _take(read, ~np.isin(read.id, self._seen_id))
        self._mark_seen(read)
        return read

    def _mark_seen(self, read: NewFixes) -> None:
        self._seen_id = np.concatenate((self._seen_id, read.id))
        self._seen_at = np.concatenate((self._seen_at, read.received))

    def _out_of_order(self, new: NewFixes, now: datetime) -> set[int]:
        """Units with a due fix that comes before their last fix added."""
        due = new.fixes.t < now.timestamp()
        late = set()
        for unit, t, i in zip(
            new.fixes.unit_id[due].tolist(),
            new.fixes.t[due].tolist(),
            new.id[due].tolist(),
            strict=True,
        ):
            last = self._last.get(unit)
            if last is not None and (t, i) <= last:
                late.add(unit)
        return late

    def _forget(self, unit: int) -> None:
        self._last.pop(unit, None)
        for tally in self._tallies.values():
            tally.forget(unit)

    def _add(self, new: NewFixes, index: GeoIndex, now: datetime) -> None:
        """Add the due fixes to every route's tally, each unit's in (device time, id) order;
        keep those ahead of the clock for later."""
        due = new.fixes.t < now.timestamp()
        if not due.all():
            ahead = _take(new, ~due)
            self._ahead = ahead if self._ahead is None else _concat(self._ahead, ahead)
            new = _take(new, due)
        if new.id.size == 0:
            return
        order = np.lexsort((new.id, new.fixes.t, new.fixes.unit_id))
        new = _take(new, order)
        for route in index.routes:
            tally = self._tallies[route.id]
            for unit, track in located_tracks(route.corridor, new.fixes):
                tally.extend(unit, track)
        ends = np.r_[np.flatnonzero(np.diff(new.fixes.unit_id)), new.id.size - 1]
        for k in ends.tolist():
            self._last[int(new.fixes.unit_id[k])] = (float(new.fixes.t[k]), int(new.id[k]))


def _take(new: NewFixes, which: np.ndarray) -> NewFixes:
    f = new.fixes
    return NewFixes(
        Fixes(f.unit_id[which], f.t[which], f.lon[which], f.lat[which]),
        new.id[which],
        new.received[which],
    )


def _concat(a: NewFixes, b: NewFixes) -> NewFixes:
    return NewFixes(
        Fixes(
            *(
                np.concatenate((x, y))
                for x, y in zip(_columns(a.fixes), _columns(b.fixes), strict=True)
            )
        ),
        np.concatenate((a.id, b.id)),
        np.concatenate((a.received, b.received)),
    )


def _columns(f: Fixes) -> tuple[np.ndarray, ...]:
    return (f.unit_id, f.t, f.lon, f.lat)


def segment_status(last_visit: float | None, now: float, revisit_s: float | None) -> str:
    """ "fresh", "stale" or "overdue", by time since the last visit, as on the coverage map."""
    if last_visit is None:
        return "overdue"
    age = now - last_visit
    limit = revisit_s if revisit_s is not None and revisit_s > 0 else DEFAULT_REVISIT_S
    if age >= limit:
        return "overdue"
    return "fresh" if age < FRESH_S else "stale"


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


_INSERT = text(
    """
    INSERT INTO qgis_coverage_segments (
        id, patrol_route_id, route_name, segment, start_m, end_m, covered, visits,
        first_visit, last_visit, last_visit_local, status, shift, shift_from, shift_to, as_of, geom
    )
    SELECT :id, :route_id, :route_name, :segment, :start_m, :end_m, :covered, :visits,
           :first_visit, :last_visit,
           to_char(CAST(:last_visit AS timestamptz) AT TIME ZONE :tz, 'YYYY-MM-DD HH24:MI:SS'),
           :status, :shift, :shift_from, :shift_to, :as_of, ST_GeomFromWKB(:wkb, 4326)
    -- A route deleted since the index was read is left out.
    WHERE EXISTS (SELECT 1 FROM patrol_routes WHERE id = :route_id)
    """
)

_SETTINGS = text(
    """
    INSERT INTO qgis_settings (
        id, timezone, max_gap_s, offline_after_s, default_min_dwell_s,
        shift, shift_from, shift_to, refreshed_at
    ) VALUES (1, :tz, :max_gap_s, :offline_after_s, :min_dwell_s, :shift, :start, :end, :now)
    ON CONFLICT (id) DO UPDATE SET
        timezone = EXCLUDED.timezone, max_gap_s = EXCLUDED.max_gap_s,
        offline_after_s = EXCLUDED.offline_after_s,
        default_min_dwell_s = EXCLUDED.default_min_dwell_s, shift = EXCLUDED.shift,
        shift_from = EXCLUDED.shift_from, shift_to = EXCLUDED.shift_to,
        refreshed_at = EXCLUDED.refreshed_at
    """
)


def refresh_qgis(
    session: Session,
    index: GeoIndex,
    settings: Settings,
    now: datetime,
    *,
    force: bool = False,
    coverage: ShiftCoverage | None = None,
) -> int | None:
    """Rewrite the QGIS coverage table for the shift holding `now`; the rows written.

    None when skipped: not PostgreSQL, another worker holds the lock, or (unless `force`) a
    refresh less than half of `qgis_refresh_s` old is already there. Pass the same
    `coverage` each time to read only what is new (a fresh one reads the whole shift).
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar():
        return None
    last = session.execute(text("SELECT refreshed_at FROM qgis_settings WHERE id = 1")).scalar()
    if (
        not force
        and last is not None
        and abs((now - last).total_seconds()) < (settings.qgis_refresh_s / 2)
    ):
        return None
    shift = current_shift(now, settings)
    coverage = coverage or ShiftCoverage()
    by_route = coverage.update(session, index, settings, shift.window.start, now)
    end = now.timestamp()
    rows = []
    for route in index.routes:
        corridor = route.corridor
        cov = by_route[route.id]
        lines = corridor.segment_lines(settings.segment_m)
        for seg, line in zip(cov.segments, lines, strict=True):
            rows.append(
                {
                    "id": route.id * SEGMENT_ID_BASE + seg.index,
                    "route_id": route.id,
                    "route_name": route.name,
                    "segment": seg.index,
                    "start_m": round(seg.start_m, 3),
                    "end_m": round(seg.end_m, 3),
                    "covered": seg.visited,
                    "visits": seg.visits,
                    "first_visit": _dt(seg.first_visit),
                    "last_visit": _dt(seg.last_visit),
                    "tz": settings.timezone,
                    "status": segment_status(
                        seg.last_visit if seg.visited else None, end, route.revisit_s
                    ),
                    "shift": shift.name,
                    "shift_from": shift.window.start,
                    "shift_to": shift.window.end,
                    "as_of": now,
                    "wkb": shapely.to_wkb(line),
                }
            )
    session.execute(text("DELETE FROM qgis_coverage_segments"))
    if rows:
        session.execute(_INSERT, rows)
    session.execute(
        _SETTINGS,
        {
            "tz": settings.timezone,
            "max_gap_s": settings.max_gap_s,
            "offline_after_s": settings.offline_after_s,
            "min_dwell_s": settings.default_min_dwell_s,
            "shift": shift.name,
            "start": shift.window.start,
            "end": shift.window.end,
            "now": now,
        },
    )
    return len(rows)
