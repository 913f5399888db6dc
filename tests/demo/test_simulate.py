"""The patrol simulator: determinism, plausible motion, and the scripted story of the day."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import LineString

from service.demo.scenario import Scenario, UnitSpec, load_scenario
from service.demo.simulate import WITA, SimPing, simulate, unguarded_windows

START = datetime(2024, 11, 26, 23, 0, tzinfo=UTC)  # 07:00 WITA
DAY = 86400.0
GEOD = Geod(ellps="WGS84")
GOOD_ACCURACY_M = 100.0


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario()


@pytest.fixture(scope="module")
def pings(scenario: Scenario) -> list[SimPing]:
    return simulate(scenario, START, DAY)


def _site(scenario: Scenario) -> tuple[float, float, float]:
    site = next(f for f in scenario.fences if f.kind == "critical_site")
    assert site.radius_m is not None
    return site.geometry.centroid.x, site.geometry.centroid.y, site.radius_m


def _distance_to_site(scenario: Scenario, pings: list[SimPing]) -> np.ndarray:
    x, y, _ = _site(scenario)
    lon = np.array([p.lon for p in pings])
    lat = np.array([p.lat for p in pings])
    return np.asarray(GEOD.inv(np.full(lon.size, x), np.full(lat.size, y), lon, lat)[2])


def _by_device(pings: list[SimPing], good_only: bool = True) -> dict[str, list[SimPing]]:
    out: dict[str, list[SimPing]] = defaultdict(list)
    for p in pings:
        if not good_only or (p.accuracy_m is not None and p.accuracy_m < GOOD_ACCURACY_M):
            out[p.device_id].append(p)
    return out


def test_deterministic_for_a_seed(scenario: Scenario, pings: list[SimPing]) -> None:
    assert simulate(scenario, START, DAY) == pings
    other = simulate(scenario, START, 3600.0, seed=8)
    assert other != [p for p in pings if p.ts < START + timedelta(hours=1)]


def test_sorted_within_window_and_well_formed(scenario: Scenario, pings: list[SimPing]) -> None:
    assert [(p.ts, p.device_id) for p in pings] == sorted((p.ts, p.device_id) for p in pings)
    assert all(START <= p.ts < START + timedelta(seconds=DAY) for p in pings)
    assert all(p.ts.utcoffset() == timedelta(0) for p in pings)
    assert {p.device_id for p in pings} == {u.device_id for u in scenario.units}
    # Every unit reports every ~10 s most of the day.
    per_unit = _by_device(pings, good_only=False)
    assert all(8000 <= len(v) <= 8640 for v in per_unit.values())
    for p in pings:
        assert -1.30 < p.lat < -1.24 and 116.80 < p.lon < 116.87
        assert p.speed_mps is not None and 0 <= p.speed_mps < 14
        assert p.heading is None or 0 <= p.heading < 360
        assert p.accuracy_m is not None and p.accuracy_m > 0
        assert p.battery is not None and 0 <= p.battery <= 100


def test_speeds_between_pings_are_plausible(pings: list[SimPing]) -> None:
    for device, track in _by_device(pings).items():
        lon = np.array([p.lon for p in track])
        lat = np.array([p.lat for p in track])
        dt = np.diff([p.ts.timestamp() for p in track])
        dist = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])[2]
        assert (dt > 0).all()
        assert (dist / dt).max() < 25.0, device


def test_bad_fixes_are_rare_and_flagged(pings: list[SimPing]) -> None:
    bad = [p for p in pings if p.accuracy_m is not None and p.accuracy_m >= GOOD_ACCURACY_M]
    assert 0 < len(bad) < 0.01 * len(pings)
    assert all(p.accuracy_m is not None and p.accuracy_m >= 150 for p in bad)
    good = [p.accuracy_m for p in pings if p not in bad]
    assert max(a for a in good if a is not None) < 12


def test_units_do_sambang_at_the_kpu_office(scenario: Scenario, pings: list[SimPing]) -> None:
    _, _, radius = _site(scenario)
    longest: dict[str, float] = {}
    for device, track in _by_device(pings).items():
        inside = _distance_to_site(scenario, track) <= radius
        best = run_start = 0.0
        for p, flag in zip(track, inside, strict=True):
            t = p.ts.timestamp()
            if not flag:
                run_start = 0.0
                continue
            run_start = run_start or t
            best = max(best, t - run_start)
        longest[device] = best
    assert all(v >= 300 for v in longest.values()), longest


def test_unguarded_night_window(scenario: Scenario, pings: list[SimPing]) -> None:
    windows = unguarded_windows(START, DAY)
    assert windows == [
        (datetime(2024, 11, 27, 18, 10, tzinfo=UTC), datetime(2024, 11, 27, 18, 40, tzinfo=UTC))
    ]
    lo, hi = windows[0]
    assert lo.astimezone(WITA).strftime("%H:%M") == "02:10"
    during = [p for p in pings if lo <= p.ts <= hi]
    assert len(during) > 500
    _, _, radius = _site(scenario)
    # All pings, bad fixes included: nobody is anywhere near the office.
    assert _distance_to_site(scenario, during).min() > radius


def test_site_guarded_the_rest_of_the_day(scenario: Scenario, pings: list[SimPing]) -> None:
    _, _, radius = _site(scenario)
    good = [p for p in pings if p.accuracy_m is not None and p.accuracy_m < GOOD_ACCURACY_M]
    inside = _distance_to_site(scenario, good) <= radius
    guarded = {
        int((p.ts - START).total_seconds() // 60) for p, f in zip(good, inside, strict=True) if f
    }
    lo, hi = unguarded_windows(START, DAY)[0]
    window = range(int((lo - START).total_seconds() // 60), int((hi - START).total_seconds() // 60))
    others = [m for m in range(int(DAY // 60)) if m not in window]
    assert sum(m in guarded for m in others) / len(others) > 0.95


def test_gps_gaps(pings: list[SimPing]) -> None:
    gaps = []
    for track in _by_device(pings, good_only=False).values():
        dt = np.diff([p.ts.timestamp() for p in track])
        gaps.extend(dt[dt > 30].tolist())
    assert len(gaps) >= 5
    assert min(gaps) >= 120 and max(gaps) <= 630


def test_one_short_excursion_off_the_route(scenario: Scenario, pings: list[SimPing]) -> None:
    route = next(r for r in scenario.routes if not r.closed)
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32750", always_xy=True)
    line = LineString(np.column_stack(to_utm.transform(*route.line.xy)))
    good = [p for p in pings if p.accuracy_m is not None and p.accuracy_m < GOOD_ACCURACY_M]
    x, y = to_utm.transform([p.lon for p in good], [p.lat for p in good])
    off = shapely.distance(line, shapely.points(x, y))
    outside = [p for p, d in zip(good, off, strict=True) if d > route.corridor_m]
    assert {p.device_id for p in outside} == {"kaltim-samapta-04"}
    first, last = outside[0].ts.astimezone(WITA), outside[-1].ts.astimezone(WITA)
    assert first.strftime("%H:%M") == "10:30"
    assert 120 <= (last - first).total_seconds() <= 180
    assert 130 < off.max() < 175


def test_battery_drains_and_recharges(pings: list[SimPing]) -> None:
    for device, track in _by_device(pings, good_only=False).items():
        level = np.diff([p.battery for p in track if p.battery is not None])
        assert (level < 0).any() and (level > 0).any(), device


def test_fast_enough(scenario: Scenario) -> None:
    began = time.process_time()
    simulate(scenario, START, DAY)
    assert time.process_time() - began < 2.0


def test_any_start_time_and_short_windows(scenario: Scenario) -> None:
    start = datetime(2024, 11, 27, 10, 25, tzinfo=timezone(timedelta(hours=8)))
    short = simulate(scenario, start, 600.0, interval_s=5.0)
    assert short and all(start <= p.ts < start + timedelta(minutes=10) for p in short)
    assert unguarded_windows(start, 600.0) == []
    # Starting inside the roll call: the window is clipped to the simulation.
    mid = datetime(2024, 11, 27, 18, 20, tzinfo=UTC)
    assert unguarded_windows(mid, 3600.0) == [(mid, datetime(2024, 11, 27, 18, 40, tzinfo=UTC))]
    assert (
        _distance_to_site(
            scenario,
            [p for p in simulate(scenario, mid, 3600.0) if p.ts < mid + timedelta(minutes=20)],
        ).min()
        > 150
    )


def test_rejects_bad_arguments(scenario: Scenario) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate(scenario, datetime(2024, 11, 27), 60.0)
    with pytest.raises(ValueError, match="duration_s"):
        simulate(scenario, START, 0.0)
    with pytest.raises(ValueError, match="interval_s"):
        simulate(scenario, START, 60.0, interval_s=0.0)


def test_user_scenario_without_checkpoint(tmp_path: Path) -> None:
    data = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"type": "patrol_route", "name": "R", "corridor_m": 30},
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[116.90, -1.20], [116.91, -1.201], [116.92, -1.2]],
                },
            },
            {
                "type": "Feature",
                "properties": {
                    "type": "geofence",
                    "name": "Site",
                    "kind": "critical_site",
                    "radius_m": 100,
                },
                "geometry": {"type": "Point", "coordinates": [116.906, -1.2004]},
            },
        ],
    }
    path = tmp_path / "mine.geojson"
    path.write_text(json.dumps(data), encoding="utf-8")
    units = [UnitSpec("A", "dev-a", "motorbike"), UnitSpec("B", "dev-b", "motorbike")]
    sc = load_scenario(path, units=units)
    pings = simulate(sc, START, 6 * 3600.0, seed=1)
    assert {p.device_id for p in pings} == {"dev-a", "dev-b"}
    assert (_distance_to_site(sc, pings) <= 100).mean() > 0.2


def test_simulation_needs_a_critical_site(tmp_path: Path) -> None:
    sc = load_scenario()
    no_site = Scenario(
        sc.units, sc.routes, tuple(f for f in sc.fences if f.kind != "critical_site")
    )
    with pytest.raises(ValueError, match="critical_site"):
        simulate(no_site, START, 60.0)
