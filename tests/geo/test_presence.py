"""Presence intervals, union, complement, visits and the hourly view, with exact numbers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from service.errors import InvalidInput
from service.geo.presence import (
    complement,
    hour_bins,
    hourly_presence,
    presence_intervals,
    total,
    union,
    visits,
)

WITA = ZoneInfo("Asia/Makassar")


def test_linked_inside_fixes_form_one_interval() -> None:
    t = np.array([0.0, 30.0, 60.0, 90.0])
    inside = np.array([True, True, True, True])
    assert presence_intervals(t, inside, 60.0).tolist() == [[0.0, 90.0]]


def test_gap_longer_than_max_gap_splits_and_isolated_fix_is_an_instant() -> None:
    t = np.array([0.0, 30.0, 100.0, 130.0, 200.0, 260.0, 270.0])
    inside = np.array([True, True, True, True, True, False, True])
    # 30 -> 100 is 70 s (> 60): split; 200 is isolated (130 -> 200 is 70 s, 260 is outside).
    got = presence_intervals(t, inside, 60.0)
    assert got.tolist() == [[0.0, 30.0], [100.0, 130.0], [200.0, 200.0], [270.0, 270.0]]


def test_outside_fix_breaks_presence_and_order_does_not_matter() -> None:
    t = np.array([40.0, 0.0, 20.0, 60.0])
    inside = np.array([True, True, False, True])
    assert presence_intervals(t, inside, 60.0).tolist() == [[0.0, 0.0], [40.0, 60.0]]


def test_gap_equal_to_max_gap_still_links() -> None:
    assert presence_intervals([0.0, 60.0], [True, True], 60.0).tolist() == [[0.0, 60.0]]


def test_union_merges_overlapping_and_touching() -> None:
    got = union([[10.0, 20.0], [0.0, 5.0], [5.0, 8.0], [15.0, 30.0], [40.0, 40.0]])
    assert got.tolist() == [[0.0, 8.0], [10.0, 30.0], [40.0, 40.0]]
    assert union(np.zeros((0, 2))).shape == (0, 2)


def test_complement_ignores_instants_and_clips_to_window() -> None:
    covered = [[-10.0, 5.0], [20.0, 30.0], [50.0, 50.0], [90.0, 200.0]]
    got = complement(covered, 0.0, 100.0)
    assert got.tolist() == [[5.0, 20.0], [30.0, 90.0]]
    assert complement([], 0.0, 100.0).tolist() == [[0.0, 100.0]]
    assert complement([[0.0, 100.0]], 0.0, 100.0).shape == (0, 2)
    assert total(got) == 75.0


def test_visits_sambang_by_min_dwell() -> None:
    # 4 minutes, then (after a 120 s gap) 6 minutes, then an instant.
    t = np.r_[np.arange(0.0, 241.0, 30.0), np.arange(360.0, 721.0, 30.0), 900.0]
    inside = np.ones(t.size, dtype=bool)
    intervals, sambang = visits(t, inside, 60.0, 300.0)
    assert intervals.tolist() == [[0.0, 240.0], [360.0, 720.0], [900.0, 900.0]]
    assert sambang.tolist() == [False, True, False]


def test_hourly_presence_in_local_hours() -> None:
    # 2024-11-26 16:00Z = 00:00 WITA; window 00:00-03:00 local.
    start = 1732636800.0
    end = start + 3 * 3600.0
    covered = np.array([[start, start + 1800.0], [start + 3600.0, start + 7200.0]])
    got = hourly_presence(covered, start, end, WITA)
    assert got[0] == 0.5 and got[1] == 1.0 and got[2] == 0.0
    assert all(math.isnan(v) for v in got[3:])


def test_hourly_presence_half_hour_zone_and_repeated_days() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30: local hours start at :30 UTC
    start = 0.0  # 05:30 local
    end = 2 * 86400.0
    covered = np.array([[1800.0, 5400.0], [86400.0 + 1800.0, 86400.0 + 3600.0]])
    got = hourly_presence(covered, start, end, kolkata)
    assert got[6] == pytest.approx(0.75)  # 06:00-07:00 local: 3600 s + 1800 s of 7200 s
    assert got[5] == 0.0
    assert not np.isnan(got).any()


def test_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        presence_intervals([0.0, 1.0], [True], 60.0)
    with pytest.raises(InvalidInput):
        presence_intervals([0.0], [True], -1.0)
    with pytest.raises(InvalidInput):
        complement([], 10.0, 0.0)


def test_visits_clip_to_window() -> None:
    # Present 0-120 (crosses start 60) and 200-400 (crosses end 300); an instant at 300 is out.
    t = np.array([0.0, 60.0, 120.0, 200.0, 260.0, 320.0, 380.0, 400.0, 500.0])
    inside = np.ones(t.size, dtype=bool)
    intervals, sambang = visits(t, inside, 60.0, 100.0, start=60.0, end=300.0)
    assert intervals.tolist() == [[60.0, 120.0], [200.0, 300.0]]
    assert sambang.tolist() == [False, True]
    edge, _ = visits([300.0, 59.0], [True, True], 0.0, 1.0, start=60.0, end=300.0)
    assert edge.shape == (0, 2)


def test_hour_bins_follow_the_local_clock_in_time_order() -> None:
    start = datetime(2024, 11, 26, 22, 30, tzinfo=UTC).timestamp()  # 06:30 WITA
    end = start + 3 * 3600  # to 09:30 WITA
    covered = np.array([[start, start + 900], [start + 5400, start + 7200]])
    bins = hour_bins(covered, start, end, WITA)
    assert [b[2] for b in bins] == [6, 7, 8, 9]
    assert [b[1] - b[0] for b in bins] == [1800, 3600, 3600, 1800]
    assert [round(b[3], 4) for b in bins] == [0.5, 0.0, 0.5, 0.0]
