"""Geofence presence: when units were inside a site, the union over units, and its gaps.

Semantics (shared by every function here; times are epoch seconds):

* Per unit, analytics-eligible fixes are sorted by device time (stable); `inside` tells whether
  each fix lies in the geofence (boundary inclusive).
* The unit is *present* over [t_i, t_i+1] when consecutive fixes i and i+1 are both inside and
  t_i+1 - t_i <= max_gap_s. An inside fix linked to neither neighbour is present at the instant
  t_i only: a zero-length interval [t_i, t_i].
* A *visit* is a maximal presence interval of one unit: linked pairs that touch (share a fix)
  merge. A gap longer than max_gap_s or an outside fix ends the visit. An isolated inside fix is
  a visit of duration 0. A visit is a *sambang* when its duration >= the geofence's min_dwell_s.
* Presence is computed from fixes up to max_gap_s beyond either end of the window, then clipped
  to [start, end), so a unit present across a window edge covers the window up to that edge.
  A clipped visit keeps only its part inside the window (its duration, and whether it is a
  sambang, count that part only); a clipped interval of zero length is dropped, while an
  isolated fix at start <= t < end stays an instant.
* *Covered* time is the union over units of presence intervals, clipped to the window
  [start, end). Zero-length intervals cover nothing: they neither add covered time nor split or
  shorten an uncovered interval. *Uncovered* intervals are the window minus covered time; only
  pieces of positive length are reported.
* The hourly view groups the window by local hour of day (0-23) in the display time zone; each
  bin is the covered share of the window's time in that hour of day (NaN when the window holds
  no time in that hour).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.errors import InvalidInput

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Every time zone offset in use is a multiple of 15 minutes, so local hours start on this grid.
_GRID_S = 900.0


def _empty() -> FloatArray:
    return np.zeros((0, 2), dtype=np.float64)


def _as_intervals(intervals: ArrayLike) -> FloatArray:
    arr = np.asarray(intervals, dtype=np.float64)
    if arr.size == 0:
        return _empty()
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidInput(f"intervals must have shape (n, 2), got {arr.shape}")
    return arr


def _check_window(start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise InvalidInput(f"window must be finite with start <= end, got [{start}, {end})")


def union(intervals: ArrayLike) -> FloatArray:
    """Sorted, disjoint union of closed intervals; overlapping or touching ones merge."""
    arr = _as_intervals(intervals)
    if arr.shape[0] == 0:
        return _empty()
    arr = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
    reach = np.maximum.accumulate(arr[:, 1])
    new_run = np.ones(arr.shape[0], dtype=np.bool_)
    new_run[1:] = arr[1:, 0] > reach[:-1]
    first = np.flatnonzero(new_run)
    last = np.r_[first[1:], arr.shape[0]] - 1
    return np.column_stack((arr[first, 0], reach[last]))


def presence_intervals(t: ArrayLike, inside: ArrayLike, max_gap_s: float) -> FloatArray:
    """One unit's visits as (from, to) rows, sorted; an isolated inside fix gives (t, t)."""
    if not (math.isfinite(max_gap_s) and max_gap_s >= 0.0):
        raise InvalidInput(f"max_gap_s must be a non-negative number, got {max_gap_s!r}")
    t_arr = np.asarray(t, dtype=np.float64).ravel()
    in_arr = np.asarray(inside, dtype=np.bool_).ravel()
    if t_arr.size != in_arr.size:
        raise InvalidInput(f"t and inside differ in length: {t_arr.size} != {in_arr.size}")
    order = np.argsort(t_arr, kind="stable")
    t_arr, in_arr = t_arr[order], in_arr[order]
    link = in_arr[:-1] & in_arr[1:] & (np.diff(t_arr) <= max_gap_s)
    linked = np.zeros(t_arr.size, dtype=np.bool_)
    linked[:-1] |= link
    linked[1:] |= link
    i = np.flatnonzero(link)
    lone = t_arr[in_arr & ~linked]
    pieces = np.concatenate(
        (np.column_stack((t_arr[i], t_arr[i + 1])), np.column_stack((lone, lone)))
    )
    return union(pieces)


def visits(
    t: ArrayLike,
    inside: ArrayLike,
    max_gap_s: float,
    min_dwell_s: float,
    start: float = -math.inf,
    end: float = math.inf,
) -> tuple[FloatArray, BoolArray]:
    """One unit's visits in [start, end) and whether each is a sambang (>= min_dwell_s)."""
    intervals = in_window(presence_intervals(t, inside, max_gap_s), start, end)
    return intervals, (intervals[:, 1] - intervals[:, 0]) >= min_dwell_s


def clip(intervals: ArrayLike, start: float, end: float) -> FloatArray:
    """Intervals cut to [start, end]; those entirely outside are dropped."""
    arr = _as_intervals(intervals)
    lo = np.maximum(arr[:, 0], start)
    hi = np.minimum(arr[:, 1], end)
    keep = lo <= hi
    return np.column_stack((lo[keep], hi[keep]))


def in_window(intervals: ArrayLike, start: float, end: float) -> FloatArray:
    """Presence intervals clipped to [start, end) (see module doc for instants and edges)."""
    arr = _as_intervals(intervals)
    lo = np.maximum(arr[:, 0], start)
    hi = np.minimum(arr[:, 1], end)
    instant = arr[:, 0] == arr[:, 1]
    keep = np.where(instant, (arr[:, 0] >= start) & (arr[:, 0] < end), hi > lo)
    return np.column_stack((lo[keep], hi[keep]))


def total(intervals: ArrayLike) -> float:
    """Summed length of intervals (seconds)."""
    arr = _as_intervals(intervals)
    return float((arr[:, 1] - arr[:, 0]).sum())


def complement(intervals: ArrayLike, start: float, end: float) -> FloatArray:
    """Positive-length pieces of [start, end) not covered by positive-length intervals."""
    _check_window(start, end)
    arr = _as_intervals(intervals)
    arr = union(clip(arr[arr[:, 1] > arr[:, 0]], start, end))
    arr = arr[arr[:, 1] > arr[:, 0]]
    lo = np.r_[start, arr[:, 1]]
    hi = np.r_[arr[:, 0], end]
    keep = hi > lo
    return np.column_stack((lo[keep], hi[keep]))


def _covered_before(covered: FloatArray, x: FloatArray) -> FloatArray:
    """Covered seconds before each x, for sorted disjoint intervals."""
    if covered.shape[0] == 0:
        return np.zeros(x.shape, dtype=np.float64)
    lengths = covered[:, 1] - covered[:, 0]
    before = np.r_[0.0, np.cumsum(lengths)]
    k = np.searchsorted(covered[:, 0], x, side="right") - 1
    k_safe = np.maximum(k, 0)
    partial = np.clip(x - covered[k_safe, 0], 0.0, lengths[k_safe])
    return np.where(k < 0, 0.0, before[k_safe] + partial)


def hourly_presence(covered: ArrayLike, start: float, end: float, tz: tzinfo) -> FloatArray:
    """Covered share of the window's time in each local hour of day 0-23 (NaN: no such time)."""
    _check_window(start, end)
    cov = union(clip(_as_intervals(covered), start, end))
    first = math.floor(start / _GRID_S) * _GRID_S
    grid = np.arange(first + _GRID_S, end, _GRID_S, dtype=np.float64)
    edges = np.r_[start, grid[grid > start], end]
    lo, hi = edges[:-1], edges[1:]
    hours = np.fromiter(
        (datetime.fromtimestamp(m, UTC).astimezone(tz).hour for m in (lo + hi) / 2.0),
        dtype=np.intp,
        count=lo.size,
    )
    acc = _covered_before(cov, edges)
    seen = np.bincount(hours, weights=hi - lo, minlength=24)
    hit = np.bincount(hours, weights=acc[1:] - acc[:-1], minlength=24)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen > 0.0, hit / np.where(seen > 0.0, seen, 1.0), np.nan)


def hour_bins(
    covered: ArrayLike, start: float, end: float, tz: tzinfo
) -> list[tuple[float, float, int, float]]:
    """The window cut at local clock hours, in time order: (from, to, local hour, covered share).

    Unlike hourly_presence (by hour of day), a window longer than a day lists an hour of day
    once for every time it comes round.
    """
    _check_window(start, end)
    cov = union(clip(_as_intervals(covered), start, end))
    first = math.floor(start / _GRID_S) * _GRID_S
    grid = np.arange(first + _GRID_S, end, _GRID_S, dtype=np.float64)
    cuts = [start]
    for edge in grid[grid > start].tolist():
        local = datetime.fromtimestamp(edge, UTC).astimezone(tz)
        if local.minute == 0 and local.second == 0:
            cuts.append(edge)
    cuts.append(end)
    edges = np.asarray(cuts, dtype=np.float64)
    acc = _covered_before(cov, edges)
    bins = []
    for i in range(edges.size - 1):
        lo, hi = float(edges[i]), float(edges[i + 1])
        if hi <= lo:
            continue
        hour = datetime.fromtimestamp(lo, UTC).astimezone(tz).hour
        bins.append((lo, hi, hour, float(acc[i + 1] - acc[i]) / (hi - lo)))
    return bins
