"""A pure per-unit state machine turning a unit's fixes into live events.

Fixes must be fed per unit in device-time order. Every event fires exactly once per
transition, and the whole state is a plain JSON-able dict, so it can be stored with the unit
and resumed after a restart without duplicating or losing an event.

It fires every event type (events/types.py) but the revisit ones (overdue.py). An `alarm`
fires from any fix carrying one, whatever its flags, once per occurrence (repeats within
alarm_repeat_s are the same press); `low_battery` once per fall below the threshold. There is
deliberately no overspeed_end: an episode is reported once, when it has lasted long enough
to matter, and its end is visible in the track itself. Offline is detected by
check_offline() on a timer, or by the next fix if the timer missed the gap; an outage
restarts pending stop and overspeed timers, since nothing is known about the silence.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from service.events.types import EventType
from service.geo.corridor import Corridor, RouteCheck
from service.geo.fence import Fence
from service.quality import Flag, distance_m, eligible

STATE_VERSION = 1
_LATE = int(Flag.LATE)
_ZERO = int(Flag.ZERO)


@dataclass(frozen=True)
class Fix:
    """One quality-assessed position of a unit (ts: timezone-aware, device time)."""

    ts: datetime
    lon: float
    lat: float
    speed_mps: float | None
    flags: int = 0
    alarm: str | None = None  # what the tracker reports, e.g. "sos" (PingIn.alarm)
    battery: float | None = None  # percent


class Located(Protocol):
    """A fix's geofences (ids of those holding it) and route checks (by route id)."""

    @property
    def routes(self) -> Mapping[int, RouteCheck]: ...

    @property
    def fences(self) -> Collection[int]: ...


@dataclass(frozen=True)
class Event:
    """A live event of one unit; details hold only JSON-able values."""

    type: EventType
    ts: datetime
    lon: float | None
    lat: float | None
    geofence_id: int | None = None
    patrol_route_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    """Thresholds of the machine; per-fence and per-route overrides live on the refs."""

    hysteresis_m: float = 20.0
    off_route_after_s: float = 30.0
    stop_after_s: float = 300.0
    offline_after_s: float = 300.0
    speed_limit_mps: float | None = None  # None: no overspeed events
    overspeed_after_s: float = 10.0
    stop_speed_mps: float = 0.5
    stop_radius_m: float = 10.0
    low_battery_pct: float | None = 15.0  # None: no low_battery events
    low_battery_rearm_pct: float = 5.0  # above the threshold by this much re-arms it
    alarm_repeat_s: float = 300.0


@dataclass
class FenceRef:
    """A geofence to watch, with an optional exit hysteresis override in metres."""

    id: int
    fence: Fence
    hysteresis_m: float | None = None


@dataclass
class RouteRef:
    """A patrol route assigned to the unit, with an optional off-route delay override."""

    id: int
    corridor: Corridor
    off_route_after_s: float | None = None


@dataclass
class _RouteState:
    # First fix of the current continuous stretch outside the corridor, if any.
    out_since: datetime | None = None
    off: bool = False  # off_route has fired for this stretch


@dataclass
class _Stop:
    # Where and when the unit became slow; None while it is moving.
    anchor: tuple[float, float] | None = None
    since: datetime | None = None
    stopped: bool = False


@dataclass
class _Speed:
    since: datetime | None = None  # first fix of the current overspeed episode
    max_mps: float = 0.0
    fired: bool = False


@dataclass
class _Alarm:
    type: str | None = None  # the alarm of the unit's latest fix, if it carried one
    ts: datetime | None = None  # the newest fix carrying it
    battery_low: bool = False  # low_battery fired and not re-armed yet


def _where(fix: Fix) -> tuple[float | None, float | None]:
    """Where an alert happened: unknown for a tracker without a fix or a status report."""
    return (None, None) if fix.flags & _ZERO else (fix.lon, fix.lat)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


class UnitMachine:
    """Live-event state of one unit; step() it with each fix, check_offline() on a timer."""

    def __init__(self) -> None:
        self.last_ts: datetime | None = None
        self.last_pos: tuple[float, float] | None = None
        self.offline = False
        self.fences: dict[int, bool] = {}  # fence id -> unit is inside
        self.routes: dict[int, _RouteState] = {}
        self.stop = _Stop()
        self.speed = _Speed()
        self.alarm = _Alarm()

    # -- fixes ---------------------------------------------------------------------------

    def step(
        self,
        fix: Fix,
        fences: Sequence[FenceRef],
        routes: Sequence[RouteRef],
        params: Params,
        located: Located | None = None,
    ) -> list[Event]:
        """Advance with one fix against the current fences and assigned routes; new events.

        `located` may bring the fix's fence containment and route checks, computed for a
        whole batch at once; without it they are computed here.
        """
        if fix.ts.tzinfo is None:
            raise ValueError("Fix.ts must be timezone-aware")
        late = bool(fix.flags & _LATE) or (self.last_ts is not None and fix.ts <= self.last_ts)
        # An alarm is news whatever the fix's quality or age; the battery of a new fix too.
        alerts = self._step_alarm(fix, late, params)
        if not late:
            alerts += self._step_battery(fix, params)
        # LATE and flagged fixes are history, not news: they must neither fire nor move state.
        # A fix not after the last one is late too, even if ingest did not flag it.
        if late or not eligible(fix.flags):
            return alerts
        return alerts + self._step_position(fix, fences, routes, params, located)

    def _step_position(
        self,
        fix: Fix,
        fences: Sequence[FenceRef],
        routes: Sequence[RouteRef],
        params: Params,
        located: Located | None = None,
    ) -> list[Event]:
        events = self._connectivity(fix, params)
        resumed = bool(events)  # the only events fired so far are offline/online
        if resumed:
            # Back from an outage: nothing is known about the silent minutes, so a stop that
            # had not yet fired and any overspeed episode start afresh at this fix. A stop that
            # had fired stays, and this fix decides whether the unit has moved since.
            if not self.stop.stopped:
                self.stop = _Stop()
            self.speed = _Speed()
        events += self._step_fences(fix, fences, params, located)
        events += self._step_routes(fix, routes, params, located)
        events += self._step_stop(fix, params)
        events += self._step_speed(fix, params, resumed)
        self.last_ts = fix.ts
        self.last_pos = (fix.lon, fix.lat)
        return events

    def _step_alarm(self, fix: Fix, late: bool, params: Params) -> list[Event]:
        """One `alarm` per occurrence: repeats of the latest alarm within alarm_repeat_s are one."""
        st = self.alarm
        if fix.alarm is None:
            if not late:  # a newer fix without the alarm ends the occurrence
                st.type = st.ts = None
            return []
        if (
            st.type == fix.alarm
            and st.ts is not None
            and abs(_seconds(fix.ts, st.ts)) <= params.alarm_repeat_s
        ):
            st.ts = max(st.ts, fix.ts)
            return []
        st.type, st.ts = fix.alarm, fix.ts
        details: dict[str, Any] = {"alarm": fix.alarm}
        if fix.battery is not None:
            details["battery"] = fix.battery
        if late:
            details["late"] = True
        return [Event("alarm", fix.ts, *_where(fix), details=details)]

    def _step_battery(self, fix: Fix, params: Params) -> list[Event]:
        """`low_battery` once when the battery falls below the threshold; re-armed above it."""
        threshold, level = params.low_battery_pct, fix.battery
        if threshold is None or level is None:
            return []
        st = self.alarm
        if st.battery_low:
            if level >= threshold + params.low_battery_rearm_pct:
                st.battery_low = False
            return []
        if level >= threshold:
            return []
        st.battery_low = True
        details = {"battery": level, "threshold_pct": threshold}
        return [Event("low_battery", fix.ts, *_where(fix), details=details)]

    def _connectivity(self, fix: Fix, params: Params) -> list[Event]:
        if self.last_ts is None:
            return []
        events: list[Event] = []
        # A gap the scheduler never saw still was an outage: report it here, timed exactly as
        # check_offline would have, so the event stream does not depend on timer jitter.
        if not self.offline and _seconds(fix.ts, self.last_ts) >= params.offline_after_s:
            events.append(self._offline_event(params))
            self.offline = True
        if self.offline:
            events.append(
                Event(
                    "online",
                    fix.ts,
                    fix.lon,
                    fix.lat,
                    details={"offline_s": _seconds(fix.ts, self.last_ts)},
                )
            )
            self.offline = False
        return events

    def _step_fences(
        self, fix: Fix, fences: Sequence[FenceRef], params: Params, located: Located | None
    ) -> list[Event]:
        events: list[Event] = []
        current: dict[int, bool] = {}
        for ref in sorted(fences, key=lambda r: r.id):
            was_inside = self.fences.get(ref.id)  # None: first fix seen for this fence
            contained = None if located is None else ref.id in located.fences
            inside = self._inside(ref, fix.lon, fix.lat, bool(was_inside), params, contained)
            if inside and not was_inside:
                events.append(Event("geofence_enter", fix.ts, fix.lon, fix.lat, ref.id))
            elif was_inside and not inside:
                events.append(Event("geofence_exit", fix.ts, fix.lon, fix.lat, ref.id))
            current[ref.id] = inside
        # Fences not passed in are gone: forget them so a re-created id starts afresh.
        self.fences = current
        return events

    @staticmethod
    def _inside(
        ref: FenceRef,
        lon: float,
        lat: float,
        was_inside: bool,
        params: Params,
        contained: bool | None = None,
    ) -> bool:
        if ref.fence.contains(lon, lat) if contained is None else contained:
            return True
        if not was_inside:
            return False
        # Outside but within the hysteresis band of the boundary: GPS jitter, still inside.
        hysteresis = params.hysteresis_m if ref.hysteresis_m is None else ref.hysteresis_m
        return not ref.fence.boundary_distance_m(lon, lat) > hysteresis

    def _step_routes(
        self, fix: Fix, routes: Sequence[RouteRef], params: Params, located: Located | None
    ) -> list[Event]:
        events: list[Event] = []
        current: dict[int, _RouteState] = {}
        for ref in sorted(routes, key=lambda r: r.id):
            st = self.routes.get(ref.id) or _RouteState()
            check = None if located is None else located.routes.get(ref.id)
            if check is None:
                check = ref.corridor.check(fix.lon, fix.lat)
            if check.on_route:
                if st.off and st.out_since is not None:
                    off_s = _seconds(fix.ts, st.out_since)
                    events.append(
                        Event(
                            "on_route",
                            fix.ts,
                            fix.lon,
                            fix.lat,
                            patrol_route_id=ref.id,
                            details={"off_duration_s": off_s},
                        )
                    )
                st = _RouteState()
            else:
                if st.out_since is None:
                    st.out_since = fix.ts
                after = (
                    params.off_route_after_s
                    if ref.off_route_after_s is None
                    else ref.off_route_after_s
                )
                duration = _seconds(fix.ts, st.out_since)
                if not st.off and duration >= after:
                    st.off = True
                    events.append(
                        Event(
                            "off_route",
                            fix.ts,
                            fix.lon,
                            fix.lat,
                            patrol_route_id=ref.id,
                            details={
                                "since": _iso(st.out_since),
                                "distance_m": check.distance_m,
                                "duration_s": duration,
                            },
                        )
                    )
            current[ref.id] = st
        # Only assigned routes are tracked; an unassigned route's episode ends silently.
        self.routes = current
        return events

    def _step_stop(self, fix: Fix, params: Params) -> list[Event]:
        st = self.stop
        slow = fix.speed_mps is None or fix.speed_mps < params.stop_speed_mps
        if st.anchor is None or st.since is None:
            if slow:
                self.stop = _Stop((fix.lon, fix.lat), fix.ts)
            return []
        moved = distance_m(st.anchor[0], st.anchor[1], fix.lon, fix.lat) >= params.stop_radius_m
        if moved or not slow:
            events: list[Event] = []
            if st.stopped:
                events.append(
                    Event(
                        "moving",
                        fix.ts,
                        fix.lon,
                        fix.lat,
                        details={"stopped_s": _seconds(fix.ts, st.since)},
                    )
                )
            # A slow fix away from the anchor may be the start of the next stop.
            self.stop = _Stop((fix.lon, fix.lat), fix.ts) if slow else _Stop()
            return events
        duration = _seconds(fix.ts, st.since)
        if not st.stopped and duration >= params.stop_after_s:
            st.stopped = True
            return [
                Event(
                    "stopped",
                    fix.ts,
                    st.anchor[0],
                    st.anchor[1],
                    details={"since": _iso(st.since), "duration_s": duration},
                )
            ]
        return []

    def _step_speed(self, fix: Fix, params: Params, resumed: bool) -> list[Event]:
        limit = params.speed_limit_mps
        if limit is None:
            return []
        speed = fix.speed_mps
        # An average over an outage says nothing about how fast the unit drove.
        if speed is None and not resumed and self.last_pos and self.last_ts:
            dt = _seconds(fix.ts, self.last_ts)
            speed = distance_m(*self.last_pos, fix.lon, fix.lat) / dt
        # Unknown speed cannot prove the episode continued, so it ends it like a slow fix.
        if speed is None or not speed > limit:
            self.speed = _Speed()
            return []
        st = self.speed
        if st.since is None:
            st.since = fix.ts
        st.max_mps = max(st.max_mps, speed)
        duration = _seconds(fix.ts, st.since)
        if st.fired or duration < params.overspeed_after_s:
            return []
        st.fired = True
        return [
            Event(
                "overspeed",
                fix.ts,
                fix.lon,
                fix.lat,
                details={
                    "max_speed_mps": st.max_mps,
                    "limit_mps": limit,
                    "since": _iso(st.since),
                    "duration_s": duration,
                },
            )
        ]

    # -- time and edits ------------------------------------------------------------------

    def check_offline(self, now: datetime, params: Params) -> list[Event]:
        """Fire offline once when no eligible fix came for offline_after_s before now."""
        if self.offline or self.last_ts is None:
            return []
        if _seconds(now, self.last_ts) < params.offline_after_s:
            return []
        self.offline = True
        return [self._offline_event(params)]

    def _offline_event(self, params: Params) -> Event:
        assert self.last_ts is not None
        lon, lat = self.last_pos if self.last_pos is not None else (None, None)
        # Timed at the moment the silence crossed the threshold, not when it was noticed.
        ts = self.last_ts + timedelta(seconds=params.offline_after_s)
        return Event("offline", ts, lon, lat, details={"last_seen": _iso(self.last_ts)})

    def reconcile(
        self, fences: Sequence[FenceRef], routes: Sequence[RouteRef], params: Params | None = None
    ) -> None:
        """Re-evaluate membership after fence/route edits from the last fix, firing nothing."""
        params = params or Params()
        pos = self.last_pos
        fence_state: dict[int, bool] = {}
        route_state: dict[int, _RouteState] = {}
        for fref in fences:
            if pos is None:
                continue  # no fix yet: the first fix decides, and may fire enter
            was_inside = self.fences.get(fref.id, False)
            fence_state[fref.id] = self._inside(fref, pos[0], pos[1], was_inside, params)
        for rref in routes:
            if pos is None:
                continue
            st = self.routes.get(rref.id) or _RouteState()
            if rref.corridor.check(pos[0], pos[1]).on_route:
                st = _RouteState()
            elif st.out_since is None:
                # Newly outside by the edit: count from the last fix, as if it had been seen so.
                st = _RouteState(out_since=self.last_ts)
            route_state[rref.id] = st
        self.fences = fence_state
        self.routes = route_state

    # -- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The full state as a JSON-able dict (ids as string keys, times as ISO 8601)."""
        return {
            "v": STATE_VERSION,
            "last_ts": _iso(self.last_ts),
            "last_pos": None if self.last_pos is None else list(self.last_pos),
            "offline": self.offline,
            "fences": {str(k): v for k, v in self.fences.items()},
            "routes": {
                str(k): {"out_since": _iso(s.out_since), "off": s.off}
                for k, s in self.routes.items()
            },
            "stop": {
                "anchor": None if self.stop.anchor is None else list(self.stop.anchor),
                "since": _iso(self.stop.since),
                "stopped": self.stop.stopped,
            },
            "speed": {
                "since": _iso(self.speed.since),
                "max_mps": self.speed.max_mps,
                "fired": self.speed.fired,
            },
            "alarm": {
                "type": self.alarm.type,
                "ts": _iso(self.alarm.ts),
                "battery_low": self.alarm.battery_low,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitMachine:
        """Rebuild a machine from to_dict() output."""
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported unit event state version {data.get('v')!r}")
        m = cls()
        m.last_ts = _parse(data["last_ts"])
        pos = data["last_pos"]
        m.last_pos = None if pos is None else (float(pos[0]), float(pos[1]))
        m.offline = bool(data["offline"])
        m.fences = {int(k): bool(v) for k, v in data["fences"].items()}
        m.routes = {
            int(k): _RouteState(_parse(s["out_since"]), bool(s["off"]))
            for k, s in data["routes"].items()
        }
        stop = data["stop"]
        anchor = stop["anchor"]
        m.stop = _Stop(
            None if anchor is None else (float(anchor[0]), float(anchor[1])),
            _parse(stop["since"]),
            bool(stop["stopped"]),
        )
        speed = data["speed"]
        m.speed = _Speed(_parse(speed["since"]), float(speed["max_mps"]), bool(speed["fired"]))
        alarm = data.get("alarm") or {}  # absent in states stored before alarms existed
        m.alarm = _Alarm(
            alarm.get("type"), _parse(alarm.get("ts")), bool(alarm.get("battery_low", False))
        )
        return m
