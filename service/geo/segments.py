"""Cutting a route's chainage range into fixed-length segments."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.errors import InvalidInput

# A remainder shorter than this fraction of a segment is float noise from the route length
# (e.g. 500.0000000001 m cut into 50 m pieces), not a real sliver segment; it joins the last one.
_SLIVER = 1e-9


def segment_count(length_m: float, segment_m: float) -> int:
    """Number of consecutive segment_m pieces covering [0, length_m] (the last may be shorter)."""
    if not (math.isfinite(length_m) and length_m > 0.0):
        raise InvalidInput(f"length_m must be a positive number of metres, got {length_m!r}")
    if not (math.isfinite(segment_m) and segment_m > 0.0):
        raise InvalidInput(f"segment_m must be a positive number of metres, got {segment_m!r}")
    return max(1, math.ceil(length_m / segment_m - _SLIVER))


def segment_edges(length_m: float, segment_m: float) -> NDArray[np.float64]:
    """Start/end chainage of each segment, shape (n, 2); the last one ends at length_m."""
    n = segment_count(length_m, segment_m)
    starts = np.arange(n, dtype=np.float64) * segment_m
    ends = np.append(starts[1:], length_m)
    return np.column_stack((starts, ends))


def segment_of(chainage_m: ArrayLike, starts: NDArray[np.float64]) -> NDArray[np.intp]:
    """Index of the segment containing each chainage; segments are [start, end), the last closed."""
    # searchsorted on the same starts array that defines the segments, so a chainage exactly
    # on an edge is assigned consistently with the bounds (floor(c / segment_m) can disagree).
    idx = np.searchsorted(starts, np.asarray(chainage_m, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, len(starts) - 1)
