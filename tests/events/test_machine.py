"""Live-event state machine: exact event sequences for scripted tracks near Balikpapan."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pyproj import Geod
from shapely.geometry import LineString

from service.events import Event, FenceRef, Fix, Params, RouteRef, UnitMachine
from service.geo.corridor import Corridor
from service.geo.fence import Fence
from service.quality import Flag

GEOD = Geod(ellps="WGS84")
KPU = (116.834, -1.2683)
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
PARAMS = Params()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def offset(azimuth: float, metres: float, origin: tuple[float, float] = KPU) -> tuple[float, float]:
    """The point metres away from origin (default: the KPU centre) along an azimuth."""
    lon, lat, _ = GEOD.fwd(origin[0], origin[1], azimuth, metres)
    return float(lon), float(lat)


def fix(
    seconds: float, pos: tuple[float, float], speed: float | None = None, flags: int = 0
) -> Fix:
    return Fix(at(seconds), pos[0], pos[1], speed, flags)


def kpu(radius_m: float = 150.0, fence_id: int = 1, hysteresis_m: float | None = None) -> FenceRef:
    return FenceRef(fence_id, Fence.circle(KPU[0], KPU[1], radius_m), hysteresis_m)


def route(route_id: int = 7, after_s: float | None = None) -> RouteRef:
    """A straight east-west route along lat -1.2683 through the KPU, corridor 30 m."""
    line = LineString([(116.82, KPU[1]), (116.85, KPU[1])])
    return RouteRef(route_id, Corridor(line, 30.0), after_s)


def run(
    machine: UnitMachine,
    fixes: Iterable[Fix],
    fences: Sequence[FenceRef] = (),
    routes: Sequence[RouteRef] = (),
    params: Params = PARAMS,
) -> list[Event]:
    events: list[Event] = []
    for f in fixes:
        events += machine.step(f, fences, routes, params)
    return events


def kinds(events: Iterable[Event]) -> list[tuple[str, datetime]]:
    return [(e.type, e.ts) for e in events]


# -- geofences ---------------------------------------------------------------------------


def test_crossing_the_circle_fires_enter_then_exit() -> None:
    # West to east straight through the centre at 10 m/s, a fix every 5 s: -300 m .. +300 m.
    fences = [kpu()]
    fixes = [fix(t, offset(90.0, -300.0 + 10.0 * t), 10.0) for t in range(0, 61, 5)]
    events = run(UnitMachine(), fixes, fences)
    # Inside from -150 m (t=15); the exit needs > 170 m east (hysteresis 20 m): t=50 is 200 m.
    assert kinds(events) == [("geofence_enter", at(15)), ("geofence_exit", at(50))]
    assert [e.geofence_id for e in events] == [1, 1]
    assert (events[0].lon, events[0].lat) == (fixes[3].lon, fixes[3].lat)


def test_first_fix_inside_fires_enter_and_first_fix_outside_fires_nothing() -> None:
    assert kinds(run(UnitMachine(), [fix(0, KPU)], [kpu()])) == [("geofence_enter", at(0))]
    assert run(UnitMachine(), [fix(0, offset(0.0, 400.0))], [kpu()]) == []


def test_boundary_jitter_fires_nothing_after_the_first_enter() -> None:
    rng = random.Random(42)
    fixes = [fix(0, offset(0.0, 140.0))]
    # Ten minutes every 5 s, anywhere within +-15 m of the 150 m boundary.
    for t in range(5, 601, 5):
        fixes.append(fix(t, offset(rng.uniform(0, 360), 150.0 + rng.uniform(-15, 15)), 0.0))
    fixes += [fix(605, offset(45.0, 165.0)), fix(610, offset(45.0, 135.0))]  # band extremes
    assert kinds(run(UnitMachine(), fixes, [kpu()])) == [("geofence_enter", at(0))]


def test_exit_needs_more_than_the_hysteresis_and_honours_the_override() -> None:
    track = [fix(0, offset(0.0, 100.0)), fix(5, offset(0.0, 168.0)), fix(10, offset(0.0, 171.0))]
    events = run(UnitMachine(), track, [kpu()])
    assert kinds(events) == [("geofence_enter", at(0)), ("geofence_exit", at(10))]
    # With a 5 m override the 168 m fix (18 m out) already leaves.
    events = run(UnitMachine(), track, [kpu(hysteresis_m=5.0)])
    assert kinds(events) == [("geofence_enter", at(0)), ("geofence_exit", at(5))]


def test_back_inside_after_an_exit_fires_enter_again() -> None:
    track = [fix(0, KPU), fix(5, offset(0.0, 300.0)), fix(10, offset(0.0, 149.0))]
    assert kinds(run(UnitMachine(), track, [kpu()])) == [
        ("geofence_enter", at(0)),
        ("geofence_exit", at(5)),
        ("geofence_enter", at(10)),
    ]


# -- routes ------------------------------------------------------------------------------


def excursion(out_s: int, lateral_m: float = 60.0) -> list[Fix]:
    """Eastward along the route every 5 s; off to the north from t=55 for out_s seconds."""
    start = offset(90.0, -500.0)
    fixes = []
    for t in range(0, 55 + out_s + 100, 5):
        along = offset(90.0, 5.0 * t, start)
        pos = offset(0.0, lateral_m, along) if 55 <= t <= 55 + out_s else along
        fixes.append(fix(t, pos, 5.0))
    return fixes


def test_leaving_the_corridor_briefly_fires_nothing() -> None:
    assert run(UnitMachine(), excursion(20), routes=[route()]) == []


def test_leaving_the_corridor_long_fires_off_route_then_on_route() -> None:
    events = run(UnitMachine(), excursion(40), routes=[route()])
    # Outside t=55..95; the 30 s threshold is reached at t=85; back on the corridor at t=100.
    assert kinds(events) == [("off_route", at(85)), ("on_route", at(100))]
    off, on = events
    assert off.patrol_route_id == on.patrol_route_id == 7
    assert off.details["since"] == at(55).isoformat()
    assert off.details["duration_s"] == 30.0
    assert off.details["distance_m"] == pytest.approx(60.0, abs=0.5)
    assert on.details == {"off_duration_s": 45.0}
    json.dumps(off.details)


def test_per_route_off_route_delay_override() -> None:
    events = run(UnitMachine(), excursion(20), routes=[route(after_s=10.0)])
    assert kinds(events) == [("off_route", at(65)), ("on_route", at(80))]


def test_unassigned_routes_are_not_tracked() -> None:
    assert run(UnitMachine(), excursion(40), routes=[]) == []


# -- stops -------------------------------------------------------------------------------


def stop_track(speed: float | None) -> list[Fix]:
    """Drive east 1 min, stand 6 min with +-3 m GPS jitter, then drive on."""
    start = offset(90.0, -800.0)
    fixes = [fix(t, offset(90.0, 10.0 * t, start), 10.0) for t in range(0, 61, 5)]
    parked = offset(90.0, 650.0, start)
    rng = random.Random(7)
    for t in range(65, 426, 5):  # anchor at t=65
        jitter = offset(rng.uniform(0, 360), rng.uniform(0, 3.0), parked)
        fixes.append(fix(t, jitter, speed))
    fixes += [fix(t, offset(90.0, 10.0 * (t - 425), parked), 10.0) for t in range(430, 461, 5)]
    return fixes


@pytest.mark.parametrize("speed", [0.2, None])
def test_standing_still_fires_stopped_once_then_moving(speed: float | None) -> None:
    events = run(UnitMachine(), stop_track(speed))
    assert kinds(events) == [("stopped", at(365)), ("moving", at(430))]
    assert events[0].details["since"] == at(65).isoformat()
    assert events[1].details == {"stopped_s": 365.0}


def test_slow_drift_beyond_the_stop_radius_is_not_a_stop() -> None:
    # 3 m per 5 s at reported speed 0: every few fixes moves the anchor, so no stop fires.
    start = offset(90.0, -500.0)
    fixes = [fix(t, offset(90.0, 0.6 * t, start), 0.0) for t in range(0, 601, 5)]
    assert run(UnitMachine(), fixes) == []


def test_short_stop_fires_nothing() -> None:
    fixes = [fix(t, KPU, 0.0) for t in range(0, 200, 5)] + [fix(200, KPU, 8.0)]
    assert run(UnitMachine(), fixes) == []


# -- overspeed ---------------------------------------------------------------------------


def speeding(over_s: int) -> list[Fix]:
    """A fix each second: 20-22 m/s for over_s seconds, then 10 m/s."""
    return [fix(t, KPU, 20.0 + (t % 3) if t <= over_s else 10.0) for t in range(0, over_s + 10)]


def test_overspeed_fires_once_per_episode() -> None:
    params = Params(speed_limit_mps=15.0)
    events = run(UnitMachine(), speeding(15), params=params)
    assert kinds(events) == [("overspeed", at(10))]
    assert events[0].details["max_speed_mps"] == 22.0
    assert events[0].details["since"] == at(0).isoformat()


def test_short_overspeed_fires_nothing() -> None:
    assert run(UnitMachine(), speeding(5), params=Params(speed_limit_mps=15.0)) == []


def test_overspeed_from_implied_speed_and_new_episode_after_a_slow_fix() -> None:
    start = offset(90.0, -2000.0)
    fast = [fix(t, offset(90.0, 25.0 * t, start)) for t in range(0, 13)]  # 25 m/s, no speed
    slow = fix(13, (fast[-1].lon, fast[-1].lat), 3.0)
    again = [fix(t, KPU, 30.0) for t in range(14, 26)]
    events = run(UnitMachine(), [*fast, slow, *again], params=Params(speed_limit_mps=15.0))
    # Implied speed starts at the second fix (t=1), so the threshold is reached at t=11.
    assert kinds(events) == [("overspeed", at(11)), ("overspeed", at(24))]
    assert events[0].details["max_speed_mps"] == pytest.approx(25.0, rel=0.01)


# -- offline / online --------------------------------------------------------------------


def test_silence_fires_offline_once_and_the_next_fix_online() -> None:
    m = UnitMachine()
    run(m, [fix(0, KPU), fix(5, KPU)])
    assert m.check_offline(at(200), PARAMS) == []
    offline = m.check_offline(at(365), PARAMS)
    assert kinds(offline) == [("offline", at(305))]
    assert offline[0].details == {"last_seen": at(5).isoformat()}
    assert (offline[0].lon, offline[0].lat) == KPU
    assert m.check_offline(at(400), PARAMS) == []
    assert m.check_offline(at(900), PARAMS) == []
    online = m.step(fix(370, KPU), [], [], PARAMS)
    assert kinds(online) == [("online", at(370))]
    assert online[0].details == {"offline_s": 365.0}
    assert m.check_offline(at(380), PARAMS) == []
    assert m.step(fix(375, KPU), [], [], PARAMS) == []


def test_gap_missed_by_the_scheduler_still_fires_offline_then_online() -> None:
    events = run(UnitMachine(), [fix(0, KPU), fix(400, KPU)])
    assert kinds(events) == [("offline", at(300)), ("online", at(400))]


def test_an_outage_breaks_a_pending_stop_but_not_a_fired_one() -> None:
    # Standing 100 s, silent 400 s, standing again: the stop clock restarts at t=500.
    fixes = [fix(t, KPU, 0.0) for t in range(0, 101, 5)]
    fixes += [fix(t, KPU, 0.0) for t in range(500, 801, 5)]
    assert [e.type for e in run(UnitMachine(), fixes)] == ["offline", "online", "stopped"]
    assert kinds(run(UnitMachine(), fixes))[-1] == ("stopped", at(800))
    # Stopped before the outage and back elsewhere: it moved.
    fixes = [fix(t, KPU, 0.0) for t in range(0, 301, 5)] + [fix(700, offset(0.0, 50.0), 0.0)]
    assert kinds(run(UnitMachine(), fixes)) == [
        ("stopped", at(300)),
        ("offline", at(600)),
        ("online", at(700)),
        ("moving", at(700)),
    ]


def test_no_implied_overspeed_across_an_outage() -> None:
    fixes = [fix(0, KPU), *(fix(t, offset(0.0, 10_000.0)) for t in range(400, 420))]
    events = run(UnitMachine(), fixes, params=Params(speed_limit_mps=15.0))
    assert [e.type for e in events] == ["offline", "online"]


def test_no_fix_yet_is_not_offline() -> None:
    assert UnitMachine().check_offline(at(10_000), PARAMS) == []


# -- ineligible and late fixes -----------------------------------------------------------


@pytest.mark.parametrize("flags", [Flag.LATE, Flag.INACCURATE, Flag.TELEPORT, Flag.ZERO])
def test_late_and_flagged_fixes_fire_nothing_and_leave_state_alone(flags: Flag) -> None:
    m = UnitMachine()
    fences, routes, params = [kpu()], [route()], Params(speed_limit_mps=15.0)
    assert kinds(run(m, [fix(0, KPU, 0.0)], fences, routes, params)) == [("geofence_enter", at(0))]
    before = m.to_dict()
    far = offset(0.0, 2000.0)
    # Far away, fast, and (for LATE) earlier: would fire exit, off_route and overspeed.
    bad = [fix(t, far, 40.0, int(flags)) for t in range(-60, 120, 5)]
    assert run(m, bad, fences, routes, params) == []
    assert m.to_dict() == before
    # Nor did they count as pings that would delay the offline timer.
    assert kinds(m.check_offline(at(300), params)) == [("offline", at(300))]


def test_out_of_order_fix_without_late_flag_is_ignored() -> None:
    m = UnitMachine()
    run(m, [fix(10, KPU)], [kpu()])
    before = m.to_dict()
    assert m.step(fix(5, offset(0.0, 900.0)), [kpu()], [], PARAMS) == []
    assert m.step(fix(10, offset(0.0, 900.0)), [kpu()], [], PARAMS) == []
    assert m.to_dict() == before


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError):
        UnitMachine().step(Fix(datetime(2024, 5, 1), *KPU, None, 0), [], [], PARAMS)


# -- persistence -------------------------------------------------------------------------


def roundtrip(m: UnitMachine) -> UnitMachine:
    return UnitMachine.from_dict(json.loads(json.dumps(m.to_dict())))


@pytest.mark.parametrize("split", [56, 66, 86, 96])
def test_restart_mid_off_route_episode_resumes_exactly(split: int) -> None:
    fixes = excursion(40)
    fences, routes = [kpu()], [route()]
    params = Params(speed_limit_mps=15.0)
    expected = run(UnitMachine(), fixes, fences, routes, params)
    first = UnitMachine()
    events = run(first, [f for f in fixes if f.ts < at(split)], fences, routes, params)
    resumed = roundtrip(first)
    assert resumed.to_dict() == first.to_dict()
    events += run(resumed, [f for f in fixes if f.ts >= at(split)], fences, routes, params)
    assert events == expected
    assert [e.type for e in expected] == [
        "geofence_enter",
        "off_route",
        "on_route",
        "geofence_exit",
    ]


def test_roundtrip_keeps_stop_speed_and_offline_state() -> None:
    m = UnitMachine()
    run(m, [fix(0, KPU, 0.0), fix(10, KPU, 30.0)], params=Params(speed_limit_mps=15.0))
    m.check_offline(at(400), PARAMS)
    again = roundtrip(m)
    assert again.to_dict() == m.to_dict()
    assert kinds(again.step(fix(500, KPU), [], [], PARAMS)) == [("online", at(500))]


def test_unknown_state_version_is_rejected() -> None:
    with pytest.raises(ValueError):
        UnitMachine.from_dict({**UnitMachine().to_dict(), "v": 99})


# -- reconcile ---------------------------------------------------------------------------


def test_reconcile_after_growing_a_fence_fires_nothing() -> None:
    m = UnitMachine()
    assert run(m, [fix(0, offset(0.0, 200.0))], [kpu()]) == []
    grown = [kpu(radius_m=300.0)]
    assert m.reconcile(grown, []) is None
    assert m.to_dict()["fences"] == {"1": True}
    assert m.step(fix(5, offset(0.0, 205.0)), grown, [], PARAMS) == []
    # It really is tracked as inside: leaving the grown fence fires exit.
    assert kinds(m.step(fix(10, offset(0.0, 400.0)), grown, [], PARAMS)) == [
        ("geofence_exit", at(10))
    ]


def test_reconcile_shrinking_drops_deleted_and_adds_new_silently() -> None:
    m = UnitMachine()
    run(m, [fix(0, offset(0.0, 100.0))], [kpu(), kpu(fence_id=2, radius_m=500.0)])
    # Fence 1 shrinks away from the unit, fence 2 is deleted, fence 3 is new around it.
    fences = [kpu(radius_m=50.0), kpu(fence_id=3, radius_m=120.0)]
    m.reconcile(fences, [])
    assert m.to_dict()["fences"] == {"1": False, "3": True}
    assert m.step(fix(5, offset(0.0, 101.0)), fences, [], PARAMS) == []


def test_reconcile_routes_without_events() -> None:
    m = UnitMachine()
    fixes = excursion(40)
    run(m, [f for f in fixes if f.ts <= at(90)], routes=[route()])  # off_route has fired
    wide = RouteRef(7, Corridor(LineString([(116.82, KPU[1]), (116.85, KPU[1])]), 100.0))
    m.reconcile([], [wide])
    assert m.to_dict()["routes"] == {"7": {"out_since": None, "off": False}}
    # Back on the centerline, no on_route: the edit closed the episode silently.
    assert run(m, [f for f in fixes if f.ts > at(90)], routes=[wide]) == []
    m.reconcile([], [])
    assert m.to_dict()["routes"] == {}


def test_reconcile_before_any_fix_leaves_the_first_enter_to_fire() -> None:
    m = UnitMachine()
    m.reconcile([kpu()], [route()])
    assert kinds(m.step(fix(0, KPU), [kpu()], [route()], PARAMS)) == [("geofence_enter", at(0))]
