"""Route coverage: hand-computed cases with exact numbers, a reference cross-check, volume."""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.geo.coverage import Coverage, CoverageTally, Track, route_coverage, visit_runs

T0 = 1_700_000_000.0  # window start (epoch seconds)


def track(*pings: tuple[float, float, bool]) -> Track:
    """A unit's pings as (seconds after T0, chainage, on_route)."""
    t, chainage, on = zip(*pings, strict=True) if pings else ((), (), ())
    return Track(np.array(t) + T0, np.array(chainage, dtype=float), np.array(on, dtype=bool))


def cover(length: float, *tracks: Track, span: float = 3600.0, **kw: float | bool) -> Coverage:
    return route_coverage(length, tracks, T0, T0 + span, **kw)  # type: ignore[arg-type]


def visited(cov: Coverage) -> list[int]:
    return [s.index for s in cov.segments if s.visited]


def times(cov: Coverage, index: int) -> tuple[float | None, float | None]:
    """First and last visit of a segment, in seconds after T0."""
    s = cov.segments[index]
    first = None if s.first_visit is None else s.first_visit - T0
    last = None if s.last_visit is None else s.last_visit - T0
    return first, last


def test_two_pings_interpolate_through_every_segment_between() -> None:
    cov = cover(500.0, track((0, 60.0, True), (30, 260.0, True)))
    assert len(cov.segments) == 10
    assert visited(cov) == [1, 2, 3, 4, 5]
    # 200 m in 30 s: 6.67 m/s, so each 50 m segment takes 7.5 s.
    assert times(cov, 1) == (0.0, 6.0)
    assert times(cov, 2) == (6.0, 13.5)
    assert times(cov, 3) == (13.5, 21.0)
    assert times(cov, 4) == (21.0, 28.5)
    assert times(cov, 5) == (28.5, 30.0)
    assert [s.visits for s in cov.segments] == [0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert cov.visited_m == 250.0
    assert cov.coverage_ratio == 0.5
    assert cov.length_m == 500.0
    s0 = cov.segments[0]
    assert (s0.start_m, s0.end_m, s0.first_visit, s0.last_visit) == (0.0, 50.0, None, None)


@pytest.mark.parametrize(("gap", "expected"), [(60.0, [1, 2, 3, 4, 5]), (61.0, [1, 5])])
def test_gap_longer_than_max_gap_only_visits_the_ping_segments(
    gap: float, expected: list[int]
) -> None:
    cov = cover(500.0, track((0, 60.0, True), (gap, 260.0, True)), max_gap_s=60.0)
    assert visited(cov) == expected
    assert times(cov, 1) == (0.0, 0.0 if gap > 60 else 12.0)
    assert times(cov, 5) == ((57.0, gap) if gap <= 60 else (gap, gap))
    assert cov.visited_m == 50.0 * len(expected)


def test_off_route_ping_breaks_interpolation() -> None:
    cov = cover(500.0, track((0, 60.0, True), (10, 160.0, False), (20, 260.0, True)))
    # The off-route ping's chainage (segment 3) is not a visit, and nothing is interpolated.
    assert visited(cov) == [1, 5]
    assert times(cov, 1) == (0.0, 0.0)
    assert times(cov, 5) == (20.0, 20.0)


def test_u_turn_revisits_segments() -> None:
    cov = cover(500.0, track((0, 60.0, True), (30, 160.0, True), (60, 60.0, True)))
    assert visited(cov) == [1, 2, 3]
    # Out through segments 1 and 2, turn in segment 3, back through 2 and 1.
    assert [cov.segments[k].visits for k in (1, 2, 3)] == [2, 2, 1]
    assert times(cov, 1) == (0.0, 60.0)
    assert times(cov, 2) == (12.0, 48.0)
    assert times(cov, 3) == (27.0, 33.0)
    runs = visit_runs(
        500.0, [track((0, 60.0, True), (30, 160.0, True), (60, 60.0, True))], T0, T0 + 99
    )
    np.testing.assert_array_equal(runs.intervals(1) - T0, [[0.0, 12.0], [48.0, 60.0]])
    np.testing.assert_array_equal(runs.intervals(2) - T0, [[12.0, 27.0], [33.0, 48.0]])
    np.testing.assert_array_equal(runs.intervals(3) - T0, [[27.0, 33.0]])
    assert runs.intervals(0).shape == (0, 2)


def test_closed_loop_takes_the_short_way_through_zero() -> None:
    pings = track((0, 480.0, True), (40, 20.0, True))
    loop = cover(500.0, pings, closed=True)
    # 480 -> 500 = 0 -> 20: 40 m in 40 s, crossing the seam at t = 20.
    assert visited(loop) == [0, 9]
    assert times(loop, 9) == (0.0, 20.0)
    assert times(loop, 0) == (20.0, 40.0)
    assert loop.visited_m == 100.0
    # On an open route the same pings mean a 460 m run back through every segment.
    assert visited(cover(500.0, pings)) == list(range(10))


def test_closed_loop_backwards_through_zero_and_ties_go_direct() -> None:
    backwards = cover(500.0, track((0, 20.0, True), (40, 480.0, True)), closed=True)
    assert visited(backwards) == [0, 9]
    assert times(backwards, 0) == (0.0, 20.0)
    assert times(backwards, 9) == (20.0, 40.0)
    # Exactly half the loop either way: the direct way (no wrap) is taken.
    half = cover(500.0, track((0, 100.0, True), (50, 350.0, True)), closed=True)
    assert visited(half) == [2, 3, 4, 5, 6, 7]


def test_closed_loop_with_short_last_segment() -> None:
    # 520 m loop: segments of 50 m, the eleventh only 20 m; 510 -> 10 wraps through it.
    cov = cover(520.0, track((0, 510.0, True), (20, 10.0, True)), closed=True)
    assert visited(cov) == [0, 10]
    assert times(cov, 10) == (0.0, 10.0)
    assert times(cov, 0) == (10.0, 20.0)
    assert cov.visited_m == 70.0


def test_window_is_half_open() -> None:
    pings = track((0, 60.0, True), (30, 260.0, True), (-5, 10.0, True))
    # The ping at exactly the end is excluded, so nothing is interpolated.
    cut = route_coverage(500.0, [pings], T0, T0 + 30.0)
    assert visited(cut) == [1]
    assert times(cut, 1) == (0.0, 0.0)
    # One second later it counts; the ping before the start never does (no segment 0).
    full = route_coverage(500.0, [pings], T0, T0 + 31.0)
    assert visited(full) == [1, 2, 3, 4, 5]
    # An empty window visits nothing.
    assert visited(route_coverage(500.0, [pings], T0, T0)) == []


def test_last_short_segment_and_clamping() -> None:
    cov = cover(520.0, track((0, 520.0, True)), track((0, 530.0, True)), track((0, -5.0, True)))
    assert len(cov.segments) == 11
    last = cov.segments[-1]
    assert (last.start_m, last.end_m) == (500.0, 520.0)
    # Chainage == length falls in the last segment; beyond either end is clamped.
    assert last.visits == 2
    assert visited(cov) == [0, 10]
    assert cov.visited_m == 70.0
    assert cov.coverage_ratio == pytest.approx(70.0 / 520.0)


def test_ping_on_a_segment_edge_belongs_to_the_next_segment() -> None:
    cov = cover(500.0, track((0, 100.0, True), (20, 200.0, True)))
    assert visited(cov) == [2, 3, 4]
    assert times(cov, 2) == (0.0, 10.0)
    assert times(cov, 4) == (20.0, 20.0)


def test_two_units_contribute() -> None:
    a = track((0, 10.0, True), (10, 60.0, True))  # segments 0 and 1
    b = track((5, 140.0, True), (25, 90.0, True))  # segments 2 and 1, backwards
    cov = cover(500.0, a, b)
    assert visited(cov) == [0, 1, 2]
    # Both units were in segment 1: two visits, first and last over both.
    assert cov.segments[1].visits == 2
    assert times(cov, 1) == (8.0, 25.0)
    assert times(cov, 2) == (5.0, 21.0)
    runs = visit_runs(500.0, [a, b], T0, T0 + 99)
    assert runs.unit.tolist() == [0, 0, 1, 1]
    assert runs.segment.tolist() == [0, 1, 1, 2]


def test_lingering_in_a_segment_is_one_visit_until_a_gap() -> None:
    cov = cover(
        500.0,
        track((0, 60.0, True), (30, 70.0, True), (60, 65.0, True), (200, 80.0, True)),
    )
    # Three linked pings inside segment 1 are one visit; after a 140 s gap, a second one.
    assert visited(cov) == [1]
    assert cov.segments[1].visits == 2
    assert times(cov, 1) == (0.0, 200.0)


def test_stationary_unit_occupies_its_segment_throughout() -> None:
    cov = cover(500.0, track((0, 75.0, True), (30, 75.0, True), (60, 75.0, True)))
    assert visited(cov) == [1]
    assert cov.segments[1].visits == 1
    assert times(cov, 1) == (0.0, 60.0)


def test_isolated_pings_are_point_visits() -> None:
    cov = cover(500.0, track((0, 60.0, True), (100, 70.0, True), (200, 60.0, False)))
    assert cov.segments[1].visits == 2
    assert times(cov, 1) == (0.0, 100.0)


def test_unsorted_input_is_sorted_by_device_time() -> None:
    ordered = cover(500.0, track((0, 60.0, True), (30, 260.0, True), (60, 160.0, True)))
    shuffled = cover(500.0, track((60, 160.0, True), (0, 60.0, True), (30, 260.0, True)))
    assert shuffled == ordered


def test_no_pings_no_coverage() -> None:
    cov = cover(500.0)
    assert cov.visited_m == 0.0 and cov.coverage_ratio == 0.0
    assert visited(cover(500.0, track())) == []
    assert visited(cover(500.0, track((0, 60.0, False)))) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"segment_m": 0.0}, {"segment_m": float("nan")}, {"max_gap_s": -1.0}],
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        cover(500.0, track((0, 60.0, True)), **kwargs)


def test_rejects_bad_window_and_tracks() -> None:
    with pytest.raises(ValueError, match="window"):
        route_coverage(500.0, [], T0 + 10, T0)
    with pytest.raises(ValueError, match="length"):
        route_coverage(0.0, [], T0, T0 + 10)
    with pytest.raises(ValueError, match="differ in length"):
        Track(np.array([1.0, 2.0]), np.array([1.0]), np.array([True, True]))


def reference(
    length: float,
    tracks: list[Track],
    start: float,
    end: float,
    closed: bool,
    seg: float,
    gap: float,
) -> tuple[list[int], list[float], list[float]]:
    """Visits, first and last visit per segment, computed one ping pair at a time."""
    n = int(np.ceil(length / seg - 1e-9))
    edges = [(k * seg, min((k + 1) * seg, length)) for k in range(n)]
    edges[-1] = (edges[-1][0], length)

    def seg_of(c: float) -> int:
        return min(int(c // seg), n - 1)

    visits, first, last = [0] * n, [np.inf] * n, [-np.inf] * n
    for tr in tracks:
        order = np.argsort(tr.t, kind="stable")
        pings = [
            (float(tr.t[i]), min(max(float(tr.chainage_m[i]), 0.0), length), bool(tr.on_route[i]))
            for i in order
            if start <= tr.t[i] < end
        ]
        intervals: list[tuple[int, float, float]] = []
        linked = [False] * len(pings)
        for i in range(len(pings) - 1):
            (ta, ca, oa), (tb, cb, ob) = pings[i], pings[i + 1]
            if not (oa and ob and tb - ta <= gap):
                continue
            linked[i] = linked[i + 1] = True
            pieces = [(ca, ta, cb, tb)]
            if closed and abs(cb - ca) > length / 2:
                fwd = cb < ca
                d1 = (length - ca) if fwd else ca
                d2 = cb if fwd else (length - cb)
                tw = ta + (d1 / (d1 + d2) if d1 + d2 > 0 else 0.5) * (tb - ta)
                pieces = [
                    (ca, ta, length if fwd else 0.0, tw),
                    (0.0 if fwd else length, tw, cb, tb),
                ]
            for c0, t0, c1, t1 in pieces:
                lo, hi = min(c0, c1), max(c0, c1)
                for k in range(seg_of(lo), seg_of(hi) + 1):
                    a, b = max(lo, edges[k][0]), min(hi, edges[k][1])
                    if c0 == c1:
                        intervals.append((k, t0, t1))
                        continue

                    def at(
                        c: float, c0: float = c0, c1: float = c1, t0: float = t0, t1: float = t1
                    ) -> float:
                        f = (c - c0) / (c1 - c0)
                        return t1 if f >= 1 else t0 + f * (t1 - t0)

                    intervals.append((k, min(at(a), at(b)), max(at(a), at(b))))
        for i, (t, c, on) in enumerate(pings):
            if on and not linked[i]:
                intervals.append((seg_of(c), t, t))
        intervals.sort()
        run_end: dict[int, float] = {}
        for k, t0, t1 in intervals:
            if k not in run_end or t0 > run_end[k]:
                visits[k] += 1
                run_end[k] = t1
            else:
                run_end[k] = max(run_end[k], t1)
            first[k] = min(first[k], t0)
            last[k] = max(last[k], t1)
    return visits, first, last


def random_tracks(rng: np.random.Generator, length: float, closed: bool) -> list[Track]:
    """Random walks along a route: ties, jumps, wraps, off-route pings, unsorted."""
    tracks = []
    for _ in range(rng.integers(1, 4)):
        n = int(rng.integers(0, 120))
        t = T0 + np.sort(rng.uniform(-100, 1100, n))
        if n > 3:
            t[2] = t[1]  # equal device times
        walk = np.cumsum(rng.normal(0, 60, n)) + rng.uniform(0, length)
        chainage = np.mod(walk, length) if closed else np.clip(walk, -20, length + 20)
        jumps = rng.random(n) < 0.1
        chainage[jumps] = rng.uniform(-10, length + 10, jumps.sum())
        chainage[rng.random(n) < 0.05] = length
        on = rng.random(n) < 0.85
        perm = rng.permutation(n)
        tracks.append(Track(t[perm], chainage[perm], on[perm]))
    return tracks


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_tracks(closed: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    length = float(rng.uniform(300, 2000))
    tracks = random_tracks(rng, length, closed)
    cov = route_coverage(
        length, tracks, T0, T0 + 1000, closed=closed, segment_m=50.0, max_gap_s=20.0
    )
    visits, first, last = reference(length, tracks, T0, T0 + 1000, closed, 50.0, 20.0)
    assert [s.visits for s in cov.segments] == visits
    for s, f, la in zip(cov.segments, first, last, strict=True):
        assert s.visited is (s.visits > 0)
        assert s.first_visit == (f if s.visited else None)
        assert s.last_visit == (la if s.visited else None)
    assert max(visits) > 1  # the data exercise repeated visits
    runs = visit_runs(length, tracks, T0, T0 + 1000, closed=closed, max_gap_s=20.0)
    assert np.bincount(runs.segment, minlength=len(cov.segments)).tolist() == visits
    assert (np.diff(runs.segment) >= 0).all()


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_tally_fed_in_pieces_equals_the_whole(closed: bool, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    length = float(rng.uniform(300, 2000))
    tracks = random_tracks(rng, length, closed)
    end = T0 + 1000
    whole = route_coverage(length, tracks, T0, end, closed=closed, segment_m=50.0, max_gap_s=20.0)
    tally = CoverageTally(length, T0, closed=closed, segment_m=50.0, max_gap_s=20.0)
    # Each unit's fixes in device-time order (ties in their given order, as route_coverage
    # sorts), before the window's end, cut into pieces of 1-12 fixes; units interleaved.
    pieces = []
    for unit, track in enumerate(tracks):
        order = np.argsort(track.t, kind="stable")
        order = order[track.t[order] < end]
        cuts = np.cumsum(rng.integers(1, 13, order.size))
        pieces.append([(unit, part) for part in np.split(order, cuts[cuts < order.size])])
    while any(pieces):
        queue = pieces[int(rng.choice([i for i, p in enumerate(pieces) if p]))]
        unit, part = queue.pop(0)
        track = tracks[unit]
        tally.extend(unit, Track(track.t[part], track.chainage_m[part], track.on_route[part]))
    assert tally.coverage() == whole
    # A unit forgotten and added again in one piece gives the same again.
    if tracks[0].t.size:
        tally.forget(0)
        keep = tracks[0].t < end
        tally.extend(
            0, Track(tracks[0].t[keep], tracks[0].chainage_m[keep], tracks[0].on_route[keep])
        )
        assert tally.coverage() == whole


def test_tally_continues_a_visit_across_pieces_and_refuses_earlier_fixes() -> None:
    tally = CoverageTally(500.0, T0, segment_m=50.0, max_gap_s=60.0)
    tally.extend(7, track((10, 20.0, True)))  # a point visit of segment 0
    tally.extend(7, track((20, 30.0, True)))  # the same visit goes on
    tally.extend(7, track((30, 120.0, True)))  # on through segments 1 and 2
    cov = tally.coverage()
    assert [s.visits for s in cov.segments[:4]] == [1, 1, 1, 0]
    assert times(cov, 0) == (10, pytest.approx(20 + 10 * 20 / 90))
    assert tally.last_t(7) == T0 + 30 and tally.last_t(8) is None
    with pytest.raises(ValueError, match="comes before"):
        tally.extend(7, track((25, 40.0, True)))
    tally.extend(7, track((-5, 40.0, True)))  # before the tally's start: left out
    assert tally.coverage() == cov
    assert tally.units() == [7]


def test_a_day_of_fifty_units_on_a_20km_route_is_fast() -> None:
    rng = np.random.default_rng(1)
    length = 20_000.0
    n = 17_280  # one ping every 5 s for 24 h
    tracks = []
    for unit in range(50):
        t = T0 + np.arange(n) * 5.0 + rng.normal(0, 0.5, n)
        speed = rng.normal(8.0, 3.0, n) * np.sign(np.sin(np.arange(n) / 300 + unit))
        chainage = np.mod(np.cumsum(speed * 5.0) + rng.uniform(0, length), length)
        tracks.append(Track(t, chainage, rng.random(n) > 0.1))
    started = time.perf_counter()
    cov = route_coverage(length, tracks, T0, T0 + 86_400.0, closed=True)
    elapsed = time.perf_counter() - started
    assert len(cov.segments) == 400
    assert cov.coverage_ratio == 1.0
    assert sum(s.visits for s in cov.segments) > 100_000
    # Typically ~0.25 s; the bound leaves room for slow CI machines.
    assert elapsed < 2.0
