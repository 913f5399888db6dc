"""Stop counting in unit reports agrees with the plain definition on random tracks."""

from __future__ import annotations

import numpy as np
import pytest

from service.analytics.reports import GEOD, MAX_STEP_GAP_S, STOP_MIN_S, STOP_RADIUS_M, count_stops


def reference_stops(t: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> int:
    """Greedy runs: a run grows while fixes stay linked and within the radius of its first fix."""
    n, stops, i = t.size, 0, 0
    while i < n:
        j = i + 1
        while j < n and t[j] - t[j - 1] <= MAX_STEP_GAP_S:
            if GEOD.inv(lon[i], lat[i], lon[j], lat[j])[2] >= STOP_RADIUS_M:
                break
            j += 1
        stops += int(t[j - 1] - t[i] >= STOP_MIN_S)
        i = j
    return stops


@pytest.mark.parametrize("seed", range(6))
def test_count_stops_matches_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 6_000
    dt = rng.choice([5.0, 30.0, 700.0], size=n, p=[0.9, 0.098, 0.002])
    t = np.cumsum(dt)
    moving = (np.floor(t / rng.uniform(200, 900)) % 3) != 0  # parked a third of the time
    step_m = np.where(moving, rng.uniform(5, 15, n), rng.uniform(0, 1.5, n))
    heading = rng.uniform(0, 2 * np.pi, n)
    lon = 116.83 + np.cumsum(step_m * np.cos(heading)) / 111_000
    lat = -1.268 + np.cumsum(step_m * np.sin(heading)) / 111_000
    expected = reference_stops(t, lon, lat)
    assert expected > 3
    assert count_stops(t, lon, lat) == expected


def test_count_stops_edge_cases() -> None:
    assert count_stops(np.array([]), np.array([]), np.array([])) == 0
    assert count_stops(np.array([0.0]), np.array([116.8]), np.array([-1.2])) == 0
    t = np.arange(0.0, 1_000.0, 5.0)  # parked 1,000 s in one place: one stop
    assert count_stops(t, np.full(t.size, 116.8), np.full(t.size, -1.2)) == 1
