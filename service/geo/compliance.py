"""Revisit compliance: whether every route segment was visited at least every revisit_s.

Semantics, on the visits of `service.geo.coverage.visit_runs` in a window [start, end):

* A segment's *gaps* are the times no visit covers it: from the window start to the first
  entry, from a visit's exit to the next entry, and from the last exit to the window end.
  Visits that overlap (several units at once) count as one covered stretch of time.
  A segment never visited has one gap, the whole window.
* A segment *complies* when every gap is at most revisit_s; `compliance_ratio` is the
  length of complying segments over the route length.
* A segment is *overdue now* when it was never visited, or its last exit is more than
  revisit_s before the window end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInput
from service.geo.coverage import FloatArray, VisitRuns


@dataclass(frozen=True)
class Gap:
    """A stretch of time in which no visit covered a segment."""

    segment: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Length of the gap (s)."""
        return self.end - self.start


@dataclass(frozen=True)
class SegmentCompliance:
    """Revisit compliance of one segment in the window."""

    index: int
    start_m: float
    end_m: float
    visits: int
    first_visit: float | None
    last_visit: float | None
    longest_gap_s: float
    complies: bool
    overdue_now: bool


@dataclass(frozen=True)
class Compliance:
    """Revisit compliance of a whole route in the window."""

    length_m: float
    visited_m: float
    coverage_ratio: float
    compliant_m: float
    compliance_ratio: float
    segments: list[SegmentCompliance]
    longest_gaps: list[Gap]


def segment_gaps(intervals: FloatArray, start: float, end: float) -> tuple[FloatArray, FloatArray]:
    """(from, to) arrays of the uncovered stretches of [start, end), given (entry, exit) rows."""
    if intervals.size == 0:
        return np.array([start]), np.array([end])
    order = np.argsort(intervals[:, 0], kind="stable")
    entry, exit_ = intervals[order, 0], intervals[order, 1]
    # Covered up to: the latest exit so far (visits of several units may overlap).
    # Gap i runs from the covered-up-to time before visit i to its entry; the last to `end`.
    gap_from = np.maximum.accumulate(np.concatenate(([start], exit_)))
    gap_to = np.concatenate((entry, [end]))
    keep = gap_to > gap_from
    return gap_from[keep], gap_to[keep]


def revisit_compliance(
    runs: VisitRuns, length_m: float, start: float, end: float, revisit_s: float, top: int = 10
) -> Compliance:
    """Per-segment revisit compliance over [start, end) and the `top` longest gaps."""
    if not (math.isfinite(revisit_s) and revisit_s > 0.0):
        raise InvalidInput(f"revisit_s must be a positive number of seconds, got {revisit_s!r}")
    bounds = runs.bounds
    n = len(bounds)
    lo = np.searchsorted(runs.segment, np.arange(n), side="left")
    hi = np.searchsorted(runs.segment, np.arange(n), side="right")
    segments: list[SegmentCompliance] = []
    seg_ids: list[FloatArray] = []
    gap_from: list[FloatArray] = []
    gap_to: list[FloatArray] = []
    for k in range(n):
        entry, exit_ = runs.entry[lo[k] : hi[k]], runs.exit[lo[k] : hi[k]]
        if entry.size:
            g0, g1 = segment_gaps(np.column_stack((entry, exit_)), start, end)
        else:
            g0, g1 = np.array([start]), np.array([end])
        longest = float((g1 - g0).max()) if g0.size else 0.0
        visited = entry.size > 0
        last = float(exit_.max()) if visited else None
        segments.append(
            SegmentCompliance(
                index=k,
                start_m=float(bounds[k, 0]),
                end_m=float(bounds[k, 1]),
                visits=int(entry.size),
                first_visit=float(entry.min()) if visited else None,
                last_visit=last,
                longest_gap_s=longest,
                complies=longest <= revisit_s,
                overdue_now=last is None or end - last > revisit_s,
            )
        )
        seg_ids.append(np.full(g0.size, k, dtype=np.float64))
        gap_from.append(g0)
        gap_to.append(g1)
    widths = bounds[:, 1] - bounds[:, 0]
    visited_m = float(sum(w for w, s in zip(widths, segments, strict=True) if s.visits))
    compliant_m = float(sum(w for w, s in zip(widths, segments, strict=True) if s.complies))
    segs, g0, g1 = np.concatenate(seg_ids), np.concatenate(gap_from), np.concatenate(gap_to)
    order = np.lexsort((g0, segs, -(g1 - g0)))[: max(top, 0)]
    return Compliance(
        length_m=float(length_m),
        visited_m=visited_m,
        coverage_ratio=visited_m / float(length_m),
        compliant_m=compliant_m,
        compliance_ratio=compliant_m / float(length_m),
        segments=segments,
        longest_gaps=[Gap(int(segs[i]), float(g0[i]), float(g1[i])) for i in order],
    )
