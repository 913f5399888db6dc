"""Route coverage: which segments of a route patrol units visited in a time window, and when.

Semantics (shared by `route_coverage` and `visit_runs`):

* The route (length L) is cut into consecutive segments of `segment_m` metres, the last one
  possibly shorter. Segment k spans [start_k, end_k); the last one also includes L.
* Per unit (one `Track` each), pings are sorted by device time (stable) and only those with
  start <= t < end are kept. Chainage is clamped to [0, L]; a non-finite chainage counts as
  off route.
* Two consecutive kept pings of a unit are *linked* when both are on route and
  t2 - t1 <= max_gap_s. The unit is assumed to move from chainage c1 to c2 at constant speed
  during [t1, t2]; on a closed route it goes the shorter way round, through chainage 0/L when
  that is shorter (an exact tie goes the direct way). Every segment holding part of that
  chainage interval is *occupied* during the time the unit spends in the segment's part
  (entry and exit interpolated linearly in time). A unit that did not move occupies its
  segment for the whole of [t1, t2].
* An on-route ping linked to neither neighbour occupies its own segment at the instant t.
* A *visit* is a maximal run of time during which one unit continuously occupies one segment:
  occupancy intervals of the same unit and segment that touch (exit == next entry, e.g. at a
  ping inside the segment) merge into one visit. Leaving and re-entering (a U-turn beyond the
  segment, an off-route ping, a gap longer than max_gap_s) starts a new visit. Visits of
  different units are counted separately, even when simultaneous.
* first_visit / last_visit are the earliest entry and latest exit over all visits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.errors import InvalidInput
from service.geo.segments import segment_edges, segment_of

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass
class Track:
    """One unit's analytics-eligible pings: device time (epoch s), chainage (m), on route."""

    t: FloatArray
    chainage_m: FloatArray
    on_route: NDArray[np.bool_]

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64).ravel()
        self.chainage_m = np.asarray(self.chainage_m, dtype=np.float64).ravel()
        self.on_route = np.asarray(self.on_route, dtype=np.bool_).ravel()
        if not (self.t.size == self.chainage_m.size == self.on_route.size):
            raise InvalidInput(
                f"track arrays differ in length: t={self.t.size}, "
                f"chainage_m={self.chainage_m.size}, on_route={self.on_route.size}"
            )


@dataclass(frozen=True)
class SegmentCoverage:
    """Coverage of one route segment in the window."""

    index: int
    start_m: float
    end_m: float
    visited: bool
    first_visit: float | None
    last_visit: float | None
    visits: int


@dataclass(frozen=True)
class Coverage:
    """Coverage of a whole route in the window."""

    length_m: float
    visited_m: float
    coverage_ratio: float
    segments: list[SegmentCoverage]


@dataclass(frozen=True)
class VisitRuns:
    """Every visit as parallel arrays, sorted by (segment, entry, unit)."""

    bounds: FloatArray  # (n_segments, 2) start/end chainage
    segment: IntArray
    unit: IntArray  # index into the tracks sequence
    entry: FloatArray
    exit: FloatArray

    def intervals(self, segment: int) -> FloatArray:
        """(entry, exit) rows of one segment's visits, sorted by entry; shape (k, 2)."""
        lo, hi = np.searchsorted(self.segment, [segment, segment + 1])
        return np.column_stack((self.entry[lo:hi], self.exit[lo:hi]))


def _check_window(start: float, end: float, max_gap_s: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise InvalidInput(f"window must be finite with start <= end, got [{start}, {end})")
    if not (math.isfinite(max_gap_s) and max_gap_s >= 0.0):
        raise InvalidInput(f"max_gap_s must be a non-negative number, got {max_gap_s!r}")


def _interpolate(
    c: FloatArray, c0: FloatArray, c1: FloatArray, t0: FloatArray, t1: FloatArray
) -> FloatArray:
    """Time at chainage c on pieces moving from c0 at t0 to c1 at t1 (c0 != c1)."""
    frac = np.clip((c - c0) / (c1 - c0), 0.0, 1.0)
    # x / x is exactly 1.0, so an endpoint maps exactly onto its ping time and occupancy
    # intervals of consecutive pieces touch without rounding gaps (which would split visits).
    return np.where(frac >= 1.0, t1, t0 + frac * (t1 - t0))


def _split_at_seam(
    c0: FloatArray, c1: FloatArray, t0: FloatArray, t1: FloatArray, length_m: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Pieces of a closed route, each split in two where going through chainage 0/L is shorter."""
    delta = c1 - c0
    wrap = np.abs(delta) > length_m / 2.0
    if not wrap.any():
        return c0, c1, t0, t1
    w0, w1, wt0, wt1 = c0[wrap], c1[wrap], t0[wrap], t1[wrap]
    forward = w1 < w0  # e.g. 480 -> 20 on a 500 m loop: forward through L, then on from 0
    first_leg = np.where(forward, length_m - w0, w0)
    second_leg = np.where(forward, w1, length_m - w1)
    total = first_leg + second_leg
    # total == 0 only for 0 <-> L, the same physical point: split the time evenly.
    frac = np.divide(first_leg, total, out=np.full(total.shape, 0.5), where=total > 0.0)
    seam_t = wt0 + frac * (wt1 - wt0)
    leave = np.where(forward, length_m, 0.0)
    arrive = np.where(forward, 0.0, length_m)
    keep = ~wrap
    return (
        np.concatenate((c0[keep], w0, arrive)),
        np.concatenate((c1[keep], leave, w1)),
        np.concatenate((t0[keep], wt0, seam_t)),
        np.concatenate((t1[keep], seam_t, wt1)),
    )


def _occupancy(
    track: Track,
    start: float,
    end: float,
    bounds: FloatArray,
    length_m: float,
    closed: bool,
    max_gap_s: float,
) -> tuple[IntArray, FloatArray, FloatArray]:
    """(segment, entry, exit) occupancy intervals of one unit, unmerged and unordered."""
    order = np.argsort(track.t, kind="stable")
    t = track.t[order]
    in_window = (t >= start) & (t < end)
    t = t[in_window]
    ch = track.chainage_m[order][in_window]
    on = track.on_route[order][in_window] & np.isfinite(ch)
    ch = np.clip(ch, 0.0, length_m)
    starts, ends = bounds[:, 0], bounds[:, 1]

    link = on[:-1] & on[1:] & (np.diff(t) <= max_gap_s)
    linked = np.zeros(t.size, dtype=np.bool_)
    linked[:-1] |= link
    linked[1:] |= link
    lone = np.flatnonzero(on & ~linked)

    i = np.flatnonzero(link)
    c0, c1, t0, t1 = ch[i], ch[i + 1], t[i], t[i + 1]
    if closed:
        c0, c1, t0, t1 = _split_at_seam(c0, c1, t0, t1, length_m)

    # Expand each piece into one row per segment it touches (contiguous index range).
    lo, hi = np.minimum(c0, c1), np.maximum(c0, c1)
    k0 = segment_of(lo, starts)
    counts = segment_of(hi, starts) - k0 + 1
    piece = np.repeat(np.arange(c0.size), counts)
    offsets = np.cumsum(counts) - counts
    seg = k0[piece] + (np.arange(piece.size) - offsets[piece])

    c0, c1, t0, t1 = c0[piece], c1[piece], t0[piece], t1[piece]
    part_lo = np.maximum(lo[piece], starts[seg])
    part_hi = np.minimum(hi[piece], ends[seg])
    moving = c0 != c1
    safe_c1 = np.where(moving, c1, c0 + 1.0)  # stationary rows use t0/t1 below instead
    at_lo = _interpolate(part_lo, c0, safe_c1, t0, t1)
    at_hi = _interpolate(part_hi, c0, safe_c1, t0, t1)
    entry = np.where(moving, np.minimum(at_lo, at_hi), t0)
    exit_ = np.where(moving, np.maximum(at_lo, at_hi), t1)

    lone_seg = segment_of(ch[lone], starts)
    return (
        np.concatenate((seg, lone_seg)),
        np.concatenate((entry, t[lone])),
        np.concatenate((exit_, t[lone])),
    )


def _merge_runs(
    seg: IntArray, entry: FloatArray, exit_: FloatArray
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Merge one unit's touching occupancy intervals per segment into visits."""
    if seg.size == 0:
        return seg, entry, exit_
    order = np.lexsort((exit_, entry, seg))
    seg, entry, exit_ = seg[order], entry[order], exit_[order]
    # One unit's intervals never overlap in their interiors (they come from disjoint ping-to-
    # ping spans, split at segment edges), so sorted by (entry, exit) the previous row's exit
    # is the running maximum of the run so far.
    new_run = np.ones(seg.size, dtype=np.bool_)
    new_run[1:] = (seg[1:] != seg[:-1]) | (entry[1:] > exit_[:-1])
    first = np.flatnonzero(new_run)
    return seg[first], entry[first], np.maximum.reduceat(exit_, first)


def _runs(
    length_m: float,
    tracks: Sequence[Track],
    start: float,
    end: float,
    closed: bool,
    segment_m: float,
    max_gap_s: float,
) -> VisitRuns:
    bounds = segment_edges(length_m, segment_m)
    _check_window(start, end, max_gap_s)
    segs: list[IntArray] = []
    units: list[IntArray] = []
    entries: list[FloatArray] = []
    exits: list[FloatArray] = []
    for unit, track in enumerate(tracks):
        occupancy = _occupancy(track, start, end, bounds, length_m, closed, max_gap_s)
        seg, entry, exit_ = _merge_runs(*occupancy)
        segs.append(seg)
        units.append(np.full(seg.size, unit, dtype=np.intp))
        entries.append(entry)
        exits.append(exit_)
    if not segs:
        empty_i = np.zeros(0, dtype=np.intp)
        empty_f = np.zeros(0, dtype=np.float64)
        return VisitRuns(bounds, empty_i, empty_i, empty_f, empty_f)
    return VisitRuns(
        bounds,
        np.concatenate(segs).astype(np.intp),
        np.concatenate(units),
        np.concatenate(entries),
        np.concatenate(exits),
    )


def visit_runs(
    length_m: float,
    tracks: Sequence[Track],
    start: float,
    end: float,
    *,
    closed: bool = False,
    segment_m: float = 50.0,
    max_gap_s: float = 60.0,
) -> VisitRuns:
    """Every visit (segment, unit, entry, exit) in [start, end), with the module's semantics."""
    runs = _runs(length_m, tracks, start, end, closed, segment_m, max_gap_s)
    order = np.lexsort((runs.unit, runs.entry, runs.segment))
    return VisitRuns(
        runs.bounds,
        runs.segment[order],
        runs.unit[order],
        runs.entry[order],
        runs.exit[order],
    )


def route_coverage(
    length_m: float,
    tracks: Sequence[Track],
    start: float,
    end: float,
    *,
    closed: bool = False,
    segment_m: float = 50.0,
    max_gap_s: float = 60.0,
) -> Coverage:
    """Per-segment visits and the visited share of a route in [start, end) (see module doc)."""
    runs = _runs(length_m, tracks, start, end, closed, segment_m, max_gap_s)
    n = len(runs.bounds)
    visits = np.bincount(runs.segment, minlength=n)
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first, runs.segment, runs.entry)
    np.maximum.at(last, runs.segment, runs.exit)
    return _summary(length_m, runs.bounds, visits, first, last)


def _summary(
    length_m: float, bounds: FloatArray, visits: IntArray, first: FloatArray, last: FloatArray
) -> Coverage:
    visited = visits > 0
    widths = bounds[:, 1] - bounds[:, 0]
    visited_m = float(widths[visited].sum())
    segments = [
        SegmentCoverage(
            index=k,
            start_m=float(bounds[k, 0]),
            end_m=float(bounds[k, 1]),
            visited=bool(visited[k]),
            first_visit=float(first[k]) if visited[k] else None,
            last_visit=float(last[k]) if visited[k] else None,
            visits=int(visits[k]),
        )
        for k in range(len(bounds))
    ]
    return Coverage(
        length_m=float(length_m),
        visited_m=visited_m,
        coverage_ratio=visited_m / float(length_m),
        segments=segments,
    )


@dataclass
class _UnitTally:
    """What one unit contributed so far, and its last fix (where its next fix links on)."""

    t: float
    chainage_m: float
    on_route: bool
    open: IntArray  # segments whose latest visit ends at t: a linked next fix continues it
    visits: IntArray
    first: FloatArray
    last: FloatArray


class CoverageTally:
    """`route_coverage` from `start` on, kept up to date as fixes arrive, unit by unit.

    Each unit's fixes must be added in order (device time, then arrival): a visit open at the
    unit's last fix goes on when its next fixes continue it, exactly as if the whole track had
    been given at once. A unit whose fixes arrive out of order is `forget`-ed and added again.
    """

    def __init__(
        self,
        length_m: float,
        start: float,
        *,
        closed: bool = False,
        segment_m: float = 50.0,
        max_gap_s: float = 60.0,
    ) -> None:
        _check_window(start, start, max_gap_s)
        self.length_m = float(length_m)
        self.start = float(start)
        self.closed = closed
        self.max_gap_s = float(max_gap_s)
        self.bounds = segment_edges(length_m, segment_m)
        self._units: dict[int, _UnitTally] = {}

    def last_t(self, unit: int) -> float | None:
        """Device time of the unit's last fix added, None before its first."""
        state = self._units.get(unit)
        return None if state is None else state.t

    def extend(self, unit: int, track: Track) -> None:
        """Add a unit's next fixes (none earlier than its last fix added)."""
        keep = track.t >= self.start
        t, ch, on = track.t[keep], track.chainage_m[keep], track.on_route[keep]
        if t.size == 0:
            return
        state = self._units.get(unit)
        if state is not None:
            if t.min() < state.t:
                raise ValueError(f"unit {unit}: a fix at {t.min()} comes before {state.t}")
            t = np.concatenate(([state.t], t))
            ch = np.concatenate(([state.chainage_m], ch))
            on = np.concatenate(([state.on_route], on))
        occupancy = _occupancy(
            Track(t, ch, on),
            self.start,
            math.inf,
            self.bounds,
            self.length_m,
            self.closed,
            self.max_gap_s,
        )
        seg, entry, exit_ = _merge_runs(*occupancy)
        n = len(self.bounds)
        if state is None:
            state = _UnitTally(
                0.0,
                0.0,
                False,
                np.zeros(0, dtype=np.intp),
                np.zeros(n, dtype=np.intp),
                np.full(n, np.inf),
                np.full(n, -np.inf),
            )
            self._units[unit] = state
            goes_on = np.zeros(seg.size, dtype=np.bool_)
        else:
            # A run starting at the previous last fix in a segment whose visit ended there is
            # that visit going on (route_coverage merges touching runs of a unit).
            goes_on = (entry == state.t) & np.isin(seg, state.open)
        state.visits += np.bincount(seg[~goes_on], minlength=n)
        np.minimum.at(state.first, seg, entry)
        np.maximum.at(state.last, seg, exit_)
        ending = np.unique(seg[exit_ == t[-1]])
        state.open = np.union1d(state.open, ending) if t[-1] == state.t else ending
        state.t, state.chainage_m, state.on_route = float(t[-1]), float(ch[-1]), bool(on[-1])

    def forget(self, unit: int) -> None:
        """Drop everything a unit contributed (to add its fixes again from the start)."""
        self._units.pop(unit, None)

    def units(self) -> list[int]:
        """The units added so far."""
        return list(self._units)

    def coverage(self) -> Coverage:
        """Coverage of the route by every fix added so far."""
        n = len(self.bounds)
        visits = np.zeros(n, dtype=np.intp)
        first = np.full(n, np.inf)
        last = np.full(n, -np.inf)
        for state in self._units.values():
            visits += state.visits
            np.minimum(first, state.first, out=first)
            np.maximum(last, state.last, out=last)
        return _summary(self.length_m, self.bounds, visits, first, last)
