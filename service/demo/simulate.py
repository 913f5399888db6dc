"""Deterministic patrol simulator: GPS pings of every demo unit over a time window.

The plan is built in a metric CRS (UTM 50S) as a timeline of segments per unit, then sampled
at each tracker's ping times. Behaviour is keyed to the local clock (WITA, UTC+8):

* units take turns at the critical site (sambang dwells of 5-20 min), overlapping a little
  so the site is almost always guarded, and patrol back and forth along the route in between;
* each unit parks at the checkpoint for a shift handover around 07:00, 15:00 and 23:00;
* 02:05-02:40 every unit attends the night roll call (apel) at the checkpoint, which leaves
  the critical site deliberately unguarded during UNGUARDED_LOCAL;
* at 10:30 one unit leaves the route corridor for three minutes;
* trackers drop out for 2-10 min now and then, and sometimes report a bad fix (>= 150 m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from service.demo.scenario import FenceSpec, RouteSpec, Scenario

__all__ = [
    "APEL_LOCAL",
    "EXCURSION_LOCAL",
    "UNGUARDED_LOCAL",
    "WITA",
    "SimPing",
    "simulate",
    "unguarded_windows",
]

WITA = timezone(timedelta(hours=8), "WITA")
UTM_CRS = "EPSG:32750"  # UTM zone 50S covers Balikpapan (114-120 E)

UNGUARDED_LOCAL = (time(2, 10), time(2, 40))  # no unit inside the critical site's circle
APEL_LOCAL = (time(2, 5), time(2, 40))  # all units parked at the checkpoint
SHIFT_HOURS = (7, 15, 23)
EXCURSION_LOCAL = time(10, 30)
EXCURSION_S = 180.0
EXCURSION_OFFSET_M = 150.0
EXCURSION_UNIT = 3  # index into scenario.units: "Polwan Samapta 04" in the packaged scenario

V_MIN = 20 / 3.6  # m/s
V_MAX = 45 / 3.6
DWELL_MIN_S = 300.0
MIN_PATROL_S = 360.0  # a unit rides at least this long between two of its own dwells
SLACK_S = 60.0
WARMUP_S = 7200.0  # plan from before `start` so the window opens mid-routine
COOLDOWN_S = 1200.0
CONNECTOR_MPS = 3.0  # walking-pace roll between the road and a parking spot

_DAY = 86400.0
_ACTIVITIES = ("patrol", "dwell", "park", "excursion", "wait")
_PATROL, _DWELL, _PARK, _EXCURSION, _WAIT = range(len(_ACTIVITIES))
# Battery change in %/h per activity: trackers charge only at the checkpoint.
_BATTERY_RATE = np.array([-5.0, -2.0, 45.0, -5.0, -2.0])


@dataclass(slots=True)
class SimPing:
    """One simulated tracker report."""

    device_id: str
    ts: datetime
    lat: float
    lon: float
    speed_mps: float | None
    heading: float | None
    accuracy_m: float | None
    battery: float | None


def unguarded_windows(start: datetime, duration_s: float) -> list[tuple[datetime, datetime]]:
    """UTC intervals inside [start, start + duration_s) when the critical site is left unguarded."""
    start = _as_utc(start)
    clock = _LocalClock(start)
    lo, hi = _tod(UNGUARDED_LOCAL[0]), _tod(UNGUARDED_LOCAL[1])
    out = []
    for t0 in clock.occurrences(lo, -_DAY, duration_s):
        a, b = max(t0, 0.0), min(t0 + hi - lo, duration_s)
        if a < b:
            out.append((start + timedelta(seconds=a), start + timedelta(seconds=b)))
    return out


def simulate(
    scenario: Scenario,
    start: datetime,
    duration_s: float,
    *,
    seed: int = 7,
    interval_s: float = 10.0,
) -> list[SimPing]:
    """Simulate every unit's pings in [start, start + duration_s), sorted by time then device."""
    start = _as_utc(start)
    if not duration_s > 0:
        raise ValueError("duration_s must be > 0")
    if not interval_s > 0:
        raise ValueError("interval_s must be > 0")
    rng = np.random.default_rng(seed)
    world = _World.build(scenario)
    planner = _Planner(world, rng, _LocalClock(start), len(scenario.units), duration_s)
    plans = planner.run()
    columns = [_sample_unit(world, plan, rng, duration_s, interval_s) for plan in plans]
    return _assemble(scenario, start, world, columns)


# --- geometry -------------------------------------------------------------------------------


class _Path:
    """A route in UTM metres with arc-length lookups."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        step = np.hypot(np.diff(x), np.diff(y))
        keep = np.concatenate([[True], step > 1e-6])  # repeated vertices break interpolation
        self.x, self.y = x[keep], y[keep]
        dx, dy = np.diff(self.x), np.diff(self.y)
        self.cum = np.concatenate([[0.0], np.cumsum(np.hypot(dx, dy))])
        self.length = float(self.cum[-1])
        self.bearing = np.degrees(np.arctan2(dx, dy)) % 360.0
        self.ux, self.uy = dx / np.hypot(dx, dy), dy / np.hypot(dx, dy)
        self.line = LineString(np.column_stack([self.x, self.y]))

    def xy(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.interp(s, self.cum, self.x), np.interp(s, self.cum, self.y)

    def point(self, s: float) -> tuple[float, float]:
        x, y = self.xy(np.array([s]))
        return float(x[0]), float(y[0])

    def _segment(self, s: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.bearing) - 1)

    def heading(self, s: np.ndarray, forward: bool) -> np.ndarray:
        bearing = self.bearing[self._segment(s)]
        return bearing if forward else (bearing + 180.0) % 360.0

    def tangent(self, s: float) -> tuple[float, float]:
        i = int(self._segment(np.array([s]))[0])
        return float(self.ux[i]), float(self.uy[i])

    def left_normal(self, s: float) -> tuple[float, float]:
        ux, uy = self.tangent(s)
        return -uy, ux

    def project(self, x: float, y: float) -> float:
        return float(self.line.project(Point(x, y)))


@dataclass(frozen=True)
class _Place:
    """Where a unit is: an arc position on the route, optionally parked off the road."""

    s: float
    spot: tuple[float, float] | None = None


@dataclass(frozen=True)
class _World:
    """The scenario projected to UTM, plus the places the simulation uses."""

    path: _Path
    site_xy: tuple[float, float]
    site_s: float
    pos_xy: tuple[float, float]
    pos_s: float
    fences_utm: tuple[BaseGeometry, ...]
    to_lonlat: Transformer

    @staticmethod
    def build(scenario: Scenario) -> _World:
        to_utm = Transformer.from_crs("EPSG:4326", UTM_CRS, always_xy=True)
        to_lonlat = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True)
        route = _patrol_route(scenario)
        lon, lat = np.asarray(route.line.xy[0]), np.asarray(route.line.xy[1])
        x, y = to_utm.transform(lon, lat)
        path = _Path(np.asarray(x, dtype=float), np.asarray(y, dtype=float))

        def utm(geom: BaseGeometry) -> BaseGeometry:
            return shapely.transform(
                geom, lambda c: np.column_stack(to_utm.transform(c[:, 0], c[:, 1]))
            )

        site = _fence_of_kind(scenario, "critical_site")
        if site is None:
            raise ValueError("simulation needs a geofence with kind 'critical_site'")
        site_c = utm(site.geometry).centroid
        site_s = path.project(site_c.x, site_c.y)
        off = path.line.distance(site_c)
        if off > 500:
            raise ValueError(f"critical site {site.name!r} is {off:.0f} m from the route")
        checkpoint = _fence_of_kind(scenario, "checkpoint")
        if checkpoint is not None:
            pos_c = utm(checkpoint.geometry).centroid
            pos_xy, pos_s = (pos_c.x, pos_c.y), path.project(pos_c.x, pos_c.y)
        else:
            # No checkpoint: park at whichever route end is farther from the site.
            pos_s = 0.0 if site_s > path.length / 2 else path.length
            pos_xy = path.point(pos_s)
        fences = tuple(
            utm(f.geometry).buffer(f.radius_m) if f.radius_m else utm(f.geometry)
            for f in scenario.fences
        )
        return _World(path, (site_c.x, site_c.y), site_s, pos_xy, pos_s, fences, to_lonlat)

    def excursion_spot(self) -> tuple[float, tuple[float, float]]:
        """The route position and off-road point farthest from every fence."""
        length = self.path.length
        margin = min(300.0, length * 0.1)
        best: tuple[float, float, tuple[float, float]] | None = None
        for s in np.linspace(margin, length - margin, 60):
            rx, ry = self.path.point(float(s))
            nx, ny = self.path.left_normal(float(s))
            for side in (1.0, -1.0):
                ox, oy = rx + side * nx * EXCURSION_OFFSET_M, ry + side * ny * EXCURSION_OFFSET_M
                leg = LineString([(rx, ry), (ox, oy)])
                clearance = min((leg.distance(f) for f in self.fences_utm), default=math.inf)
                if best is None or clearance > best[0]:
                    best = (clearance, float(s), (ox, oy))
        assert best is not None
        return best[1], best[2]


def _patrol_route(scenario: Scenario) -> RouteSpec:
    for route in scenario.routes:
        if not route.closed:
            return route
    return scenario.routes[0]


def _fence_of_kind(scenario: Scenario, kind: str) -> FenceSpec | None:
    return next((f for f in scenario.fences if f.kind == kind), None)


# --- timeline -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ride:
    """Ride along the route from rest to rest with a trapezoid speed profile."""

    t0: float
    t1: float
    s0: float
    s1: float
    peak: float
    accel: float


@dataclass(frozen=True)
class _Stay:
    """Stand still."""

    t0: float
    t1: float
    x: float
    y: float
    activity: int


@dataclass(frozen=True)
class _Move:
    """Roll in a straight line at constant speed (parking spots, the excursion)."""

    t0: float
    t1: float
    x0: float
    y0: float
    x1: float
    y1: float
    activity: int


_Segment = _Ride | _Stay | _Move


@dataclass(frozen=True)
class _Appointment:
    """A fixed-time duty: parking at the checkpoint or the off-route excursion."""

    t0: float
    t1: float
    activity: int
    place: _Place


@dataclass
class _UnitPlan:
    """Planning state and timeline of one unit."""

    index: int
    accel: float
    site_spot: tuple[float, float]
    pos_spot: tuple[float, float]
    t: float
    place: _Place
    appointments: list[_Appointment] = field(default_factory=list)
    segments: list[_Segment] = field(default_factory=list)


def _leg_time(d: np.ndarray, v: float, a: float) -> np.ndarray:
    # Accelerate, cruise, brake; legs too short to reach v are a triangle profile.
    return np.where(d >= v * v / a, d / v + v / a, 2.0 * np.sqrt(d / a))


def _leg_time_1(d: float, v: float, a: float) -> float:
    return d / v + v / a if d >= v * v / a else 2.0 * math.sqrt(d / a)


class _LocalClock:
    """Converts between seconds after `start` and WITA wall-clock times."""

    def __init__(self, start: datetime) -> None:
        local = start.astimezone(WITA)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        self.midnight = (midnight - local).total_seconds()  # <= 0

    def tod(self, t: float) -> float:
        return (t - self.midnight) % _DAY

    def occurrences(self, tod_s: float, lo: float, hi: float) -> list[float]:
        k0 = math.floor((lo - self.midnight - tod_s) / _DAY)
        times = (
            self.midnight + k * _DAY + tod_s for k in range(k0, k0 + int((hi - lo) / _DAY) + 3)
        )
        return [t for t in times if lo <= t < hi]


def _tod(clock: time) -> float:
    return clock.hour * 3600.0 + clock.minute * 60.0 + clock.second


class _Planner:
    """Builds every unit's timeline: a relay of dwells at the site, patrols in between."""

    def __init__(
        self,
        world: _World,
        rng: np.random.Generator,
        clock: _LocalClock,
        n_units: int,
        duration_s: float,
    ) -> None:
        self.world, self.rng, self.clock = world, rng, clock
        self.path = world.path
        self.t_begin, self.t_end = -WARMUP_S, duration_s + COOLDOWN_S
        self._connectors: dict[_Place, float] = {}
        self.units = [self._new_unit(i) for i in range(n_units)]
        self.excursion_s, self.excursion_xy = world.excursion_spot()
        self._schedule_appointments()

    def _new_unit(self, i: int) -> _UnitPlan:
        rng = self.rng
        accel = float(rng.uniform(1.0, 1.6))
        site_spot = self._forecourt_spot()
        r, ang = rng.uniform(3.0, 10.0), rng.uniform(0, 2 * math.pi)
        pos_spot = (
            self.world.pos_xy[0] + r * math.cos(ang),
            self.world.pos_xy[1] + r * math.sin(ang),
        )
        return _UnitPlan(
            index=i,
            accel=accel,
            site_spot=site_spot,
            pos_spot=pos_spot,
            t=self.t_begin,
            place=_Place(float(rng.uniform(0, self.path.length))),
        )

    def _forecourt_spot(self) -> tuple[float, float]:
        # Bikes park side by side between the road and the office, so a sambang stays inside
        # the route corridor and only the planned excursion leaves it.
        rx, ry = self.path.point(self.world.site_s)
        sx, sy = self.world.site_xy
        ux, uy = self.path.tangent(self.world.site_s)
        f, along = self.rng.uniform(0.2, 0.6), self.rng.uniform(-10.0, 10.0)
        return rx + f * (sx - rx) + along * ux, ry + f * (sy - ry) + along * uy

    def _schedule_appointments(self) -> None:
        n, clock, rng = len(self.units), self.clock, self.rng
        lo, hi = self.t_begin + 1800.0, self.t_end
        for hour in SHIFT_HOURS:
            for t_shift in clock.occurrences(hour * 3600.0, lo - 3600.0, hi + 3600.0):
                for u in self.units:
                    # Stagger handovers so only one or two bikes are off the relay at a time.
                    t0 = t_shift + (u.index - (n - 1) / 2) * 1320.0 + rng.uniform(-120, 120)
                    t1 = t0 + rng.uniform(1200, 2100)
                    if lo <= t0 < hi:
                        u.appointments.append(_Appointment(t0, t1, _PARK, self._pos(u)))
        a0, a1 = _tod(APEL_LOCAL[0]), _tod(APEL_LOCAL[1])
        for t0 in clock.occurrences(a0, lo, hi):
            for u in self.units:
                t1 = t0 + (a1 - a0) + 20.0 * u.index  # leave one by one
                u.appointments.append(_Appointment(t0, t1, _PARK, self._pos(u)))
        s_x = self.excursion_s
        rider = self.units[EXCURSION_UNIT % n]
        for t0 in clock.occurrences(_tod(EXCURSION_LOCAL), lo, hi):
            rider.appointments.append(_Appointment(t0, t0 + EXCURSION_S, _EXCURSION, _Place(s_x)))
        for u in self.units:
            u.appointments.sort(key=lambda a: a.t0)
            kept: list[_Appointment] = []
            for appt in u.appointments:  # a user scenario could make duties collide
                if not kept or appt.t0 >= kept[-1].t1 + 600.0:
                    kept.append(appt)
            u.appointments = kept

    def _site(self, u: _UnitPlan) -> _Place:
        return _Place(self.world.site_s, u.site_spot)

    def _pos(self, u: _UnitPlan) -> _Place:
        return _Place(self.world.pos_s, u.pos_spot)

    # -- the relay --

    def run(self) -> list[_UnitPlan]:
        a = self.t_begin + 600.0
        while a < self.t_end:
            for u in self.units:
                self._flush_conflicts(u, a)
            ready = [u for u in self.units if self._ready_at(u) <= a]
            if not ready:
                a = min(self._ready_at(u) for u in self.units)
                continue
            u = min(ready, key=lambda w: (w.t, w.index))
            night = self._is_night(a)
            dwell = self.rng.uniform(600, 1200) if night else self.rng.uniform(300, 900)
            dwell = min(dwell, self._dwell_room(u, a))
            arrived = self._go(u, self._site(u), a)
            end = max(a + dwell, arrived + DWELL_MIN_S)
            self._stay(u, end, _DWELL)
            a = end - self.rng.uniform(30, 120)  # the next guard arrives before this one leaves
        for u in self.units:
            while u.appointments and u.appointments[0].t0 < self.t_end:
                self._keep_appointment(u)
            if u.t < self.t_end:
                self._go(u, _Place(float(self.rng.uniform(0, self.path.length))), self.t_end)
                self._stay(u, self.t_end, _WAIT)
        return self.units

    def _is_night(self, t: float) -> bool:
        hour = self.clock.tod(t) / 3600.0
        return hour >= 22.0 or hour < 5.0

    def _min_travel(self, u: _UnitPlan, a: _Place, b: _Place) -> float:
        leg = _leg_time_1(abs(a.s - b.s), V_MAX, u.accel)
        return float(leg) + self._connector(a) + self._connector(b)

    def _connector(self, p: _Place) -> float:
        if p.spot is None:
            return 0.0
        if p not in self._connectors:  # the same few parking spots are asked for all day
            rx, ry = self.path.point(p.s)
            dist = math.hypot(p.spot[0] - rx, p.spot[1] - ry)
            self._connectors[p] = max(5.0, dist / CONNECTOR_MPS)
        return self._connectors[p]

    def _ready_at(self, u: _UnitPlan) -> float:
        return u.t + max(self._min_travel(u, u.place, self._site(u)), MIN_PATROL_S)

    def _dwell_room(self, u: _UnitPlan, a: float) -> float:
        if not u.appointments:
            return math.inf
        nxt = u.appointments[0]
        return nxt.t0 - self._min_travel(u, self._site(u), nxt.place) - SLACK_S - a

    def _flush_conflicts(self, u: _UnitPlan, a: float) -> None:
        # A unit that cannot fit a minimum dwell before its next duty goes to that duty now.
        while u.appointments and self._dwell_room(u, a) < DWELL_MIN_S:
            self._keep_appointment(u)

    def _keep_appointment(self, u: _UnitPlan) -> None:
        appt = u.appointments.pop(0)
        arrived = self._go(u, appt.place, appt.t0)
        if appt.activity == _PARK:
            self._stay(u, max(appt.t1, arrived + 60.0), _PARK)
            return
        self._stay(u, appt.t0, _PATROL)  # early: wait at the roadside
        rx, ry = self.path.point(appt.place.s)
        ox, oy = self.excursion_xy
        leg, t = 40.0, u.t
        end = t + EXCURSION_S
        u.segments.append(_Move(t, t + leg, rx, ry, ox, oy, _EXCURSION))
        u.segments.append(_Stay(t + leg, end - leg, ox, oy, _EXCURSION))
        u.segments.append(_Move(end - leg, end, ox, oy, rx, ry, _EXCURSION))
        u.t, u.place = end, appt.place

    def _stay(self, u: _UnitPlan, until: float, activity: int) -> None:
        if until <= u.t:
            return
        x, y = u.place.spot if u.place.spot is not None else self.path.point(u.place.s)
        u.segments.append(_Stay(u.t, until, x, y, activity))
        u.t = until

    # -- travel --

    def _go(self, u: _UnitPlan, dest: _Place, arrive_at: float) -> float:
        """Patrol from the unit's place to `dest`, arriving at `arrive_at` if possible."""
        t = u.t
        if u.place.spot is not None:
            rx, ry = self.path.point(u.place.s)
            dur = self._connector(u.place)
            u.segments.append(_Move(t, t + dur, *u.place.spot, rx, ry, _PATROL))
            t += dur
        c_in = self._connector(dest)
        t = self._patrol(u, u.place.s, dest.s, t, arrive_at - c_in - t)
        if dest.spot is not None:
            rx, ry = self.path.point(dest.s)
            u.segments.append(_Move(t, t + c_in, rx, ry, *dest.spot, _PATROL))
            t += c_in
        u.t, u.place = t, dest
        return t

    def _patrol(self, u: _UnitPlan, s_a: float, s_b: float, t: float, budget: float) -> float:
        rng, length = self.rng, self.path.length
        night = self._is_night(t)
        v_target = rng.uniform(6.0, 9.0) if night else rng.uniform(8.0, 11.5)
        n_draw = int(max(budget, 0.0) * V_MAX / (0.3 * length)) + 8
        draws, pauses = rng.random(n_draw), rng.uniform(5.0, 40.0, n_draw)
        west_first = bool(rng.random() < 0.5)
        points = [s_a, s_b]
        n_turns = 0
        for _ in range(3):  # turn count and distance depend on each other; settle them
            moving = budget - pauses[:n_turns].sum() - (n_turns + 1) * v_target / u.accel
            need = v_target * max(moving, 0.0)
            points = _turn_points(s_a, s_b, need, length, draws, west_first)
            n_turns = len(points) - 2
        legs = np.abs(np.diff(np.asarray(points)))
        pause = pauses[:n_turns]
        v = _solve_speed(legs, float(pause.sum()), budget, u.accel)
        for i, d in enumerate(legs):
            if d > 0.01:
                dur = _leg_time_1(float(d), v, u.accel)
                u.segments.append(_Ride(t, t + dur, points[i], points[i + 1], v, u.accel))
                t += dur
            if i < n_turns:
                x, y = self.path.point(points[i + 1])
                u.segments.append(_Stay(t, t + float(pause[i]), x, y, _PATROL))
                t += float(pause[i])
        return t


def _turn_points(
    s_a: float, s_b: float, need: float, length: float, draws: np.ndarray, west: bool
) -> list[float]:
    """Arc positions from s_a to s_b with U-turns so the ridden distance is about `need`."""
    zone = 0.35 * length  # non-final turns happen in the outer third at either end
    points, c, i = [s_a], s_a, 0
    for _ in range(2 * len(draws) + 4):
        if need <= abs(s_b - c):
            break
        max_final = c + s_b if west else 2 * length - c - s_b
        if need <= max_final:
            # Place the last turn so the remaining out-and-back is exactly `need`.
            points.append((c + s_b - need) / 2 if west else (need + c + s_b) / 2)
            break
        room = min(c, zone) if west else min(length - c, zone)
        if room >= 50.0:
            u = float(draws[i % len(draws)])
            i += 1
            t = u * room if west else length - u * room
            need -= abs(c - t)
            points.append(t)
            c = t
        west = not west
    points.append(s_b)
    # Legs of a few metres would be a jerk, not a patrol: drop those turn points.
    kept = [points[0]]
    for p in points[1:-1]:
        if abs(p - kept[-1]) >= 30.0:
            kept.append(p)
    if len(kept) > 1 and abs(kept[-1] - s_b) < 30.0:
        kept.pop()
    kept.append(s_b)
    return kept


def _solve_speed(legs: np.ndarray, pause_s: float, budget: float, accel: float) -> float:
    """Cruise speed that makes the legs plus pauses take `budget` seconds (clamped)."""
    legs = legs[legs > 0]
    if legs.size == 0:
        return V_MAX

    def total(v: float) -> float:
        return float(_leg_time(legs, v, accel).sum()) + pause_s

    if total(V_MAX) >= budget:
        return V_MAX  # late: ride as fast as allowed
    if total(V_MIN) <= budget:
        return V_MIN  # early: the caller waits at the destination
    lo, hi = V_MIN, V_MAX
    for _ in range(40):
        mid = (lo + hi) / 2
        if total(mid) > budget:
            lo = mid
        else:
            hi = mid
    return hi


# --- sampling -------------------------------------------------------------------------------


@dataclass
class _Columns:
    """One unit's pings as arrays."""

    index: int
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    speed: np.ndarray
    heading: np.ndarray
    accuracy: np.ndarray
    battery: np.ndarray


def _ping_times(rng: np.random.Generator, duration_s: float, interval_s: float) -> np.ndarray:
    whole = float(interval_s).is_integer()
    phase = float(rng.integers(0, int(interval_s))) if whole else rng.uniform(0, interval_s)
    n = int((duration_s - phase) // interval_s) + 1
    t = phase + np.arange(max(n, 0)) * interval_s
    if interval_s >= 4.0:
        # Tracker clocks wobble by a second now and then.
        t = t + rng.integers(-1, 2, t.size) * (rng.random(t.size) < 0.2)
    return t[(t >= 0) & (t < duration_s)]


def _evaluate(
    world: _World, segments: list[_Segment], t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.zeros(t.size), np.zeros(t.size)
    speed, heading = np.zeros(t.size), np.full(t.size, np.nan)
    activity = np.zeros(t.size, dtype=int)
    starts = np.array([seg.t0 for seg in segments])
    bounds = np.searchsorted(t, starts, side="left")
    bounds[0] = 0
    bounds = np.append(bounds, t.size)
    for j, seg in enumerate(segments):
        lo, hi = bounds[j], bounds[j + 1]
        if lo >= hi:
            continue
        tau = np.clip(t[lo:hi] - seg.t0, 0.0, seg.t1 - seg.t0)
        if isinstance(seg, _Stay):
            x[lo:hi], y[lo:hi], activity[lo:hi] = seg.x, seg.y, seg.activity
        elif isinstance(seg, _Move):
            dur = max(seg.t1 - seg.t0, 1e-9)
            f = tau / dur
            x[lo:hi] = seg.x0 + f * (seg.x1 - seg.x0)
            y[lo:hi] = seg.y0 + f * (seg.y1 - seg.y0)
            speed[lo:hi] = math.hypot(seg.x1 - seg.x0, seg.y1 - seg.y0) / dur
            heading[lo:hi] = math.degrees(math.atan2(seg.x1 - seg.x0, seg.y1 - seg.y0)) % 360
            activity[lo:hi] = seg.activity
        else:
            dist, v = _ride_profile(seg, tau)
            forward = seg.s1 >= seg.s0
            s = seg.s0 + (dist if forward else -dist)
            x[lo:hi], y[lo:hi] = world.path.xy(s)
            speed[lo:hi] = v
            heading[lo:hi] = world.path.heading(s, forward)
            activity[lo:hi] = _PATROL
    return x, y, speed, heading, activity


def _ride_profile(seg: _Ride, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d, v, a = abs(seg.s1 - seg.s0), seg.peak, seg.accel
    if d >= v * v / a:
        ta, tc = v / a, (d - v * v / a) / v
    else:
        v = math.sqrt(d * a)
        ta, tc = v / a, 0.0
    total = 2 * ta + tc
    rest = np.maximum(total - tau, 0.0)
    dist = np.where(
        tau < ta,
        0.5 * a * tau**2,
        np.where(tau < ta + tc, 0.5 * v * ta + v * (tau - ta), d - 0.5 * a * rest**2),
    )
    speed = np.where(tau < ta, a * tau, np.where(tau < ta + tc, v, a * rest))
    return np.clip(dist, 0.0, d), speed


def _sample_unit(
    world: _World, plan: _UnitPlan, rng: np.random.Generator, duration_s: float, interval_s: float
) -> _Columns:
    t = _ping_times(rng, duration_s, interval_s)
    x, y, speed, heading, activity = _evaluate(world, plan.segments, t)
    n = t.size
    stationary = speed < 0.5
    sigma_base = rng.uniform(3.0, 5.5)
    # Parked under a roof or beside a building the fix is a little worse.
    sigma = np.where(np.isin(activity, [_DWELL, _PARK]), sigma_base * 1.35, sigma_base)
    z = rng.standard_normal((n, 2))
    start_battery = rng.uniform(60.0, 100.0)
    noise_x, noise_y, battery = np.zeros(n), np.zeros(n), np.zeros(n)
    ex = ey = 0.0
    level = start_battery
    for k in range(n):
        # GPS error wanders slowly (AR(1), ~30 s memory) rather than jumping each fix.
        dt = interval_s if k == 0 else t[k] - t[k - 1]
        rho = math.exp(-dt / 30.0)
        step = math.sqrt(1.0 - rho * rho) * sigma[k]
        ex, ey = rho * ex + step * z[k, 0], rho * ey + step * z[k, 1]
        noise_x[k], noise_y[k] = ex, ey
        if k:
            level = min(100.0, max(2.0, level + _BATTERY_RATE[activity[k]] * dt / 3600.0))
        battery[k] = level
    accuracy = sigma * rng.uniform(0.9, 1.3, n)
    x, y = x + noise_x, y + noise_y

    # Bad fixes: the receiver knows it is lost and says so in accuracy_m.
    bad = rng.random(n) < 0.0015
    r = rng.uniform(150.0, 450.0, n)
    ang = rng.uniform(0, 2 * math.pi, n)
    x = np.where(bad, x + r * np.cos(ang), x)
    y = np.where(bad, y + r * np.sin(ang), y)
    accuracy = np.where(bad, np.maximum(150.0, r * rng.uniform(0.9, 1.4, n)), accuracy)

    speed = np.maximum(speed + rng.normal(0.0, 0.25, n), 0.0)
    speed = np.where(stationary, np.abs(rng.normal(0.0, 0.1, n)), speed)
    heading = np.where(stationary, np.nan, (heading + rng.normal(0.0, 3.0, n)) % 360.0)

    keep = ~_gap_mask(rng, t, activity, duration_s)
    return _Columns(
        plan.index,
        t[keep],
        x[keep],
        y[keep],
        speed[keep],
        heading[keep],
        accuracy[keep],
        battery[keep],
    )


def _gap_mask(
    rng: np.random.Generator, t: np.ndarray, activity: np.ndarray, duration_s: float
) -> np.ndarray:
    """Pings lost to tracker outages of 2-10 min, placed while the unit is out patrolling."""
    mask = np.zeros(t.size, dtype=bool)
    expected = 3.0 * duration_s / _DAY
    count = int(rng.poisson(expected))
    if duration_s >= 7200.0:
        count = max(count, 1)
    for _ in range(count):
        length = rng.uniform(120.0, 570.0)
        for _attempt in range(40):
            g0 = rng.uniform(0.0, max(duration_s - length, 0.0))
            inside = (t > g0) & (t < g0 + length)
            # Outages during dwells would blur the guard relay the demo is about.
            if inside.any() and np.all(activity[inside] == _PATROL) and not mask[inside].any():
                mask |= inside
                break
    return mask


def _assemble(
    scenario: Scenario, start: datetime, world: _World, columns: list[_Columns]
) -> list[SimPing]:
    t = np.concatenate([c.t for c in columns])
    unit = np.concatenate([np.full(c.t.size, c.index) for c in columns])
    x = np.concatenate([c.x for c in columns])
    y = np.concatenate([c.y for c in columns])
    lon, lat = world.to_lonlat.transform(x, y)
    speed = np.concatenate([c.speed for c in columns])
    heading = np.concatenate([c.heading for c in columns])
    accuracy = np.concatenate([c.accuracy for c in columns])
    battery = np.concatenate([c.battery for c in columns])
    order = np.lexsort((unit, t))
    ids = [u.device_id for u in scenario.units]
    heading = np.round(heading[order], 1) % 360.0  # 359.96 must not become 360.0
    # Round in numpy and convert once: per-value Python rounding dominates the run time.
    rows = zip(
        unit[order].tolist(),
        t[order].tolist(),
        np.round(lat[order], 6).tolist(),
        np.round(lon[order], 6).tolist(),
        np.round(speed[order], 2).tolist(),
        np.where(np.isnan(heading), -1.0, heading).tolist(),
        np.round(accuracy[order], 1).tolist(),
        np.round(battery[order]).tolist(),
        strict=True,
    )
    return [
        SimPing(ids[u], start + timedelta(seconds=ts), la, lo, sp, None if h < 0 else h, ac, ba)
        for u, ts, la, lo, sp, h, ac, ba in rows
    ]


def _as_utc(start: datetime) -> datetime:
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    return start.astimezone(UTC)
