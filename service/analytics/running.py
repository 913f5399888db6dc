"""Coverage and presence from a start time to now, kept up to date as pings arrive.

The scheduler's periodic work (the QGIS coverage layer, the overdue check) needs the same
answer again and again over a window that only grows at its end. `RunningCoverage` reads the
window once, then only what was received since, so each pass costs what arrived, not what the
window holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.analytics.positions import Fixes, NewFixes, fixes_received
from service.analytics.tracks import located_tracks
from service.areas.index import FenceEntry, RouteEntry
from service.config import Settings
from service.geo.coverage import Coverage, CoverageTally
from service.store.models import Unit

# A ping is committed within this long of being received (its `received_at`): each update
# reads the pings received since the previous one, less this. One whose transaction stayed
# open longer is missed until the start time changes (the API still counts it).
SETTLE_S = 60.0


class RunningCoverage:
    """Routes' coverage and geofences' last presence from `start` to now, kept up to date.

    The first `update` from a start time reads its eligible fixes; later ones read only the
    fixes received since the previous update (less SETTLE_S, by `received_at`) and add them to
    each route's `CoverageTally` and each geofence's latest presence, unit by unit. A unit whose
    new fixes come before its last one (device time, then id: a late upload) is read again from
    the start; fixes ahead of the clock wait until their time. The result equals computing the
    window in one go from the fixes stored now. A new start time, a changed route or geofence,
    or changed settings starts over.
    """

    def __init__(self, chunk: int = 20_000) -> None:
        self._chunk = chunk  # fixes read at a time: the memory a read takes is bounded by it
        self._key: tuple[object, ...] | None = None
        self._tallies: dict[int, CoverageTally] = {}
        self._inside: dict[int, dict[int, float]] = {}  # fence -> unit -> last fix inside
        self._last: dict[int, tuple[float, int]] = {}  # (device time, id) of each unit's last fix
        # Ids read and their reception times (epoch s), while the next read can return them.
        self._seen_id = np.zeros(0, dtype=np.int64)
        self._seen_at = np.zeros(0)
        self._ahead: NewFixes | None = None  # fixes later than the last update's `now`
        self._read_at: datetime | None = None
        self._start: datetime | None = None
        self._routes: Sequence[RouteEntry] = ()
        self._fences: Sequence[FenceEntry] = ()

    @property
    def start(self) -> datetime | None:
        """The start time of the last update (None before the first, or after a failed one)."""
        return None if self._key is None else self._start

    def update(
        self,
        session: Session,
        routes: Sequence[RouteEntry],
        fences: Sequence[FenceEntry],
        settings: Settings,
        start: datetime,
        now: datetime,
    ) -> dict[int, Coverage]:
        """Each route's coverage of [start, now) by the eligible fixes stored now."""
        key = (
            start,
            settings.segment_m,
            settings.max_gap_s,
            tuple((r.id, r.corridor) for r in routes),
            tuple((f.id, f.fence) for f in fences),
        )
        if key != self._key:
            self._routes, self._fences = tuple(routes), tuple(fences)
            self._tallies = {
                r.id: CoverageTally(
                    r.corridor.length_m,
                    start.timestamp(),
                    closed=r.corridor.closed,
                    segment_m=settings.segment_m,
                    max_gap_s=settings.max_gap_s,
                )
                for r in routes
            }
            self._inside = {f.id: {} for f in fences}
            self._last, self._ahead, self._read_at = {}, None, None
            self._seen_id, self._seen_at = np.zeros(0, dtype=np.int64), np.zeros(0)
            self._key, self._start = key, start
        try:
            self._catch_up(session, start, now)
        except BaseException:
            self._key = None  # half an update is no state to go on from: start over next time
            raise
        return {rid: tally.coverage() for rid, tally in self._tallies.items()}

    def last_presence(self) -> dict[int, float | None]:
        """Each geofence's latest eligible fix inside it (epoch s), as of the last update."""
        return {
            fid: max(by_unit.values()) if by_unit else None for fid, by_unit in self._inside.items()
        }

    def _catch_up(self, session: Session, start: datetime, now: datetime) -> None:
        """Add the fixes stored since the last update (all from `start` after a restart)."""
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
            self._add(_take(piece, ~np.isin(piece.fixes.unit_id, list(again))), now)
        if again:  # read again from the start, alone
            for unit in again:
                self._forget(unit)
            if self._ahead is not None:
                self._ahead = _take(self._ahead, ~np.isin(self._ahead.fixes.unit_id, list(again)))
            for piece in fixes_received(session, start, None, again, self._chunk):
                self._mark_seen(piece)
                self._add(piece, now)
        recent = self._seen_at >= self._read_at.timestamp() - SETTLE_S  # the next read's
        self._seen_id, self._seen_at = self._seen_id[recent], self._seen_at[recent]

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
        unit, t, ids = new.fixes.unit_id[due], new.fixes.t[due], new.id[due]
        known = np.isin(unit, list(self._last))
        if not known.any():
            return set()
        unit, t, ids = unit[known], t[known], ids[known]
        last = [self._last[u] for u in unit.tolist()]
        last_t = np.array([lt for lt, _ in last])
        last_id = np.array([li for _, li in last], dtype=np.int64)
        late = (t < last_t) | ((t == last_t) & (ids <= last_id))
        return set(unit[late].tolist())

    def _forget(self, unit: int) -> None:
        self._last.pop(unit, None)
        for tally in self._tallies.values():
            tally.forget(unit)
        for by_unit in self._inside.values():
            by_unit.pop(unit, None)

    def _add(self, new: NewFixes, now: datetime) -> None:
        """Add the due fixes to every route's tally and geofence's presence, each unit's in
        (device time, id) order; keep those ahead of the clock for later."""
        due = new.fixes.t < now.timestamp()
        if not due.all():
            ahead = _take(new, ~due)
            self._ahead = ahead if self._ahead is None else _concat(self._ahead, ahead)
            new = _take(new, due)
        if new.id.size == 0:
            return
        order = np.lexsort((new.id, new.fixes.t, new.fixes.unit_id))
        new = _take(new, order)
        fixes = new.fixes
        for route in self._routes:
            tally = self._tallies[route.id]
            for unit, track in located_tracks(route.corridor, fixes):
                tally.extend(unit, track)
        for fence in self._fences:
            inside = fence.fence.contains_many(fixes.lon, fixes.lat)
            who, when = fixes.unit_id[inside], fixes.t[inside]
            if who.size:  # ordered by unit then time: each unit's last fix inside is its latest
                last = np.r_[np.flatnonzero(np.diff(who)), who.size - 1]
                latest = zip(who[last].tolist(), when[last].tolist(), strict=True)
                self._inside[fence.id].update(latest)
        ends = np.r_[np.flatnonzero(np.diff(fixes.unit_id)), new.id.size - 1]
        for k in ends.tolist():
            self._last[int(fixes.unit_id[k])] = (float(fixes.t[k]), int(new.id[k]))


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
