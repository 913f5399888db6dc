"""Ping ingest: resolve units, flag, evaluate, store with the unit's state in one transaction.

Work arrives as items from one or several requests (the group committer merges concurrent
requests into one transaction); every query here is issued once per transaction, not per ping.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Executable, bindparam, func, null, or_, select, union_all
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session

from service.areas.index import GeoCache, Where
from service.auth import Principal
from service.config import Settings
from service.errors import Forbidden, InvalidInput, NotFound, PatroliError
from service.events.machine import Fix
from service.events.runner import run_machines
from service.fixtime import DEFAULT_FIX_TIMES, FixTimes
from service.protocols import DeviceReport
from service.quality import Flag, assess, eligible, flag_names
from service.schemas import PingIn, PingResult, alarm_name
from service.store.bulk import insert_pings, update_unit_states
from service.store.db import Store
from service.store.models import DeviceReportRow, Ping, Unit, UnitState, utcnow
from service.store.models import Event as EventRow


@dataclass
class WorkItem:
    """One posted ping with who posted it; `key` identifies it in the caller's request."""

    key: tuple[int, int]
    ping: PingIn
    principal: Principal
    source: str
    unit_id: int = 0
    flags: int = 0
    row: dict[str, Any] = field(default_factory=dict)
    detail: bool = True  # the caller shows this ping's result (else ACCEPTED stands for it)


# The result of every accepted ping whose caller only counts them (tracker protocols, GPX,
# brief JSON answers): no per-ping result object or evaluation is built for those.
ACCEPTED = PingResult.model_construct(
    index=-1, status="accepted", reason=None, id=None, unit_id=None, ts=None, flags=[]
)


def _fix(it: WorkItem) -> Fix:
    """What the event machine needs of a ping."""
    p = it.ping
    return Fix(p.ts, p.lon, p.lat, p.speed_mps, it.flags, p.alarm, p.battery)


_HOLDS_STATE = Flag.LATE | Flag.FUTURE | Flag.ZERO


@dataclass
class _State:
    """A unit's newest fix and newest good fix, as read (locked) at the start of the batch."""

    unit_id: int
    last_ts: datetime | None
    good_ts: datetime | None
    good_lon: float | None
    good_lat: float | None
    machine: dict[str, Any] | None = None
    update: dict[str, Any] | None = None  # new values for unit_states, if the batch moved it


# Units by device id or id, joined with their state rows, which stay locked (FOR UPDATE, in
# unit id order to avoid deadlocks) until the batch commits: concurrent writers take turns
# per unit, in this or any other worker. Built once; SQLAlchemy caches its compiled form.
_UNITS_AND_STATES = (
    select(
        Unit.id,
        Unit.device_id,
        UnitState.last_ts,
        UnitState.good_ts,
        UnitState.good_lon,
        UnitState.good_lat,
        UnitState.machine,
    )
    .join(UnitState, UnitState.unit_id == Unit.id)
    .where(
        or_(
            Unit.device_id.in_(bindparam("devices", expanding=True)),
            Unit.id.in_(bindparam("ids", expanding=True)),
        )
    )
    .order_by(Unit.id)
    .with_for_update(of=UnitState)
)


# On PostgreSQL the lock query also reserves a ping id for every item, in the same round trip
# (ids left unused by rejected or duplicate items are gaps, as with any sequence).
_RESERVED_IDS = (
    select(func.array_agg(func.nextval(func.pg_get_serial_sequence("pings", "id"))))
    .select_from(func.generate_series(1, bindparam("reserve")))
    .scalar_subquery()
)
_UNITS_STATES_AND_IDS = _UNITS_AND_STATES.add_columns(_RESERVED_IDS.label("reserved"))


def lock_units(
    session: Session, items: Sequence[WorkItem], devices: Collection[str] = (), reserve: int = 0
) -> list[Any]:
    """Lock the state rows of every unit the items (and the extra device ids) name, in one go.

    One statement in unit id order: a transaction that later locks a subset of them (ingest,
    alarm reports) cannot deadlock with another doing the same. With `reserve` on PostgreSQL,
    each row also carries that many new ping ids (`reserved`; the same array on every row).
    """
    names = {it.ping.device_id for it in items if it.ping.device_id} | set(devices)
    ids = {it.ping.unit_id for it in items if it.ping.unit_id is not None}
    ids |= {it.principal.unit_id for it in items if it.principal.unit_id is not None}
    params: dict[str, Any] = {"devices": sorted(names), "ids": sorted(ids)}
    if reserve and session.get_bind().dialect.name == "postgresql":
        params["reserve"] = reserve
        return list(session.connection().execute(_UNITS_STATES_AND_IDS, params))
    return list(session.connection().execute(_UNITS_AND_STATES, params))


def _load_units(
    session: Session, items: Sequence[WorkItem], auto_register: bool
) -> tuple[dict[str, int], dict[int, _State], list[int]]:
    """Unit ids by device id, the locked states of every unit the items name, and (on
    PostgreSQL) ping ids reserved for the items."""
    rows = lock_units(session, items, reserve=len(items))
    if auto_register:
        # Only callers not bound to a unit may bring new devices; a tracker key may not.
        unbound = {
            it.ping.device_id
            for it in items
            if it.ping.device_id and it.principal.role != "tracker"
        }
        missing = unbound - {row.device_id for row in rows}
        for dev in sorted(missing):
            register_device(session, dev)
        if missing:
            rows = lock_units(session, items)
    by_device = {row.device_id: row.id for row in rows}
    states = {
        row.id: _State(row.id, row.last_ts, row.good_ts, row.good_lon, row.good_lat, row.machine)
        for row in rows
    }
    reserved = [int(i) for i in getattr(rows[0], "reserved", None) or ()] if rows else []
    return by_device, states, reserved


def _assign_units(
    items: Sequence[WorkItem], by_device: dict[str, int], known: Collection[int]
) -> dict[tuple[int, int], str]:
    """Set each item's unit; returns rejection reasons by key."""
    rejected: dict[tuple[int, int], str] = {}
    for it in items:
        ping, principal = it.ping, it.principal
        if principal.role == "tracker":
            # A tracker key learns nothing about other units, not even whether they exist: an
            # unknown device and another unit's device get the same answer.
            own = principal.unit_id
            named = by_device.get(ping.device_id) if ping.device_id is not None else own
            if named != own or ping.unit_id not in (None, own):
                rejected[it.key] = not_yours(own)
            elif own is None or own not in known:  # its unit was deleted since the key check
                rejected[it.key] = f"unit {own} not found"
            else:
                it.unit_id = own
            continue
        if ping.device_id is not None:
            unit_id = by_device.get(ping.device_id)
            if unit_id is None:
                rejected[it.key] = f"unknown device_id {ping.device_id!r}"
                continue
            if ping.unit_id is not None and ping.unit_id != unit_id:
                rejected[it.key] = f"device_id {ping.device_id!r} is not unit {ping.unit_id}"
                continue
        elif ping.unit_id is not None:
            unit_id = ping.unit_id
        elif principal.unit_id is not None:
            unit_id = principal.unit_id
        else:
            rejected[it.key] = "give device_id or unit_id"
            continue
        if unit_id not in known:
            rejected[it.key] = f"unit {unit_id} not found"
            continue
        it.unit_id = unit_id
    return rejected


def not_yours(unit_id: int | None) -> str:
    """The one refusal a tracker key gets for any unit but its own, existing or not."""
    return f"this tracker key may only post pings for unit {unit_id}"


def refusal(reason: str, *, not_found_hint: str = "") -> PatroliError:
    """The error to answer when a ping or report was rejected for `reason`."""
    if reason.startswith(("unknown device_id", "unit ")):
        return NotFound(reason + not_found_hint)
    if "may only" in reason:
        return Forbidden(reason)
    return InvalidInput(reason)


def register_device(session: Session, device_id: str) -> int:
    """Register an unknown tracker as a new unit named after its device id."""
    unit = Unit(name=device_id, device_id=device_id, kind="unknown")
    session.add(unit)
    session.flush()
    session.add(UnitState(unit_id=unit.id, last_flags=0))
    session.flush()
    return unit.id


# Stored pings that an item would repeat: by position within the batch's time range, and (in
# the same round trip: UNION ALL keeps each arm its own plan, the first pruning partitions by
# time) by ping_id, which spans every partition. Built once; SQLAlchemy caches their SQL.
_STORED_BY_POSITION = select(
    Ping.unit_id, Ping.ts, Ping.lat, Ping.lon, null().label("client_ping_id")
).where(
    Ping.unit_id.in_(bindparam("units", expanding=True)),
    Ping.ts >= bindparam("first"),
    Ping.ts <= bindparam("last"),
)
_STORED_BY_POSITION_OR_ID: Executable = union_all(
    _STORED_BY_POSITION,
    select(Ping.unit_id, null(), null(), null(), Ping.client_ping_id).where(
        Ping.unit_id.in_(bindparam("units", expanding=True)),
        Ping.client_ping_id.in_(bindparam("client_ids", expanding=True)),
    ),
)


def _duplicates(session: Session, items: Sequence[WorkItem]) -> set[tuple[int, int]]:
    """Keys of items already stored (same unit, time and position, or same ping_id), or
    repeated earlier in this batch."""
    params: dict[str, Any] = {
        "units": sorted({it.unit_id for it in items}),
        "first": min(it.ping.ts for it in items),
        "last": max(it.ping.ts for it in items),
    }
    client_ids = {it.ping.ping_id for it in items if it.ping.ping_id}
    query: Executable = _STORED_BY_POSITION
    if client_ids:
        params["client_ids"] = sorted(client_ids)
        query = _STORED_BY_POSITION_OR_ID
    stored: set[tuple[int, Any, float, float]] = set()
    stored_ids: set[tuple[int, str]] = set()
    for uid, ts, lat, lon, client in session.connection().execute(query, params):
        if client is None:
            stored.add((uid, ts, lat, lon))
        else:
            stored_ids.add((uid, str(client)))
    dupes: set[tuple[int, int]] = set()
    for it in items:
        pos = (it.unit_id, it.ping.ts, it.ping.lat, it.ping.lon)
        cid = (it.unit_id, it.ping.ping_id) if it.ping.ping_id else None
        if pos in stored or (cid is not None and cid in stored_ids):
            dupes.add(it.key)
            continue
        stored.add(pos)
        if cid is not None:
            stored_ids.add(cid)
    return dupes


def ingest_items(
    session: Session,
    geo: GeoCache,
    settings: Settings,
    items: Sequence[WorkItem],
    *,
    auto_register: bool = False,
    events: list[EventRow] | None = None,
) -> dict[tuple[int, int], PingResult]:
    """Store items in the session's transaction; returns each item's result by key.

    Live events the pings cause are stored in the same transaction and appended to `events`.
    """
    results: dict[tuple[int, int], PingResult] = {}
    times, now = FixTimes.of(settings), utcnow()
    for it in items:
        # Every door ends here: a fix outside the valid time range is never stored.
        reason = times.refusal(it.ping.ts, now)
        if reason is not None:
            results[it.key] = PingResult(index=it.key[1], status="rejected", reason=reason)
    if results:
        items = [it for it in items if it.key not in results]
    if not items:
        return results
    by_device, states, reserved = _load_units(session, items, auto_register)
    # After the unit locks: an edit of routes or geofences committed before now is visible.
    index = geo.get(session, fresh=True, units=states.keys())
    for key, reason in _assign_units(items, by_device, states).items():
        results[key] = PingResult(index=key[1], status="rejected", reason=reason)
    pending = [it for it in items if it.key not in results]
    if not pending:
        return results

    dupes = _duplicates(session, pending)
    for it in pending:
        if it.key in dupes:
            results[it.key] = PingResult(
                index=it.key[1],
                status="duplicate",
                unit_id=it.unit_id,
                ts=it.ping.ts,
                flags=flag_names(Flag.DUPLICATE),
            )
    fresh = sorted(
        (it for it in pending if it.key not in dupes), key=lambda it: (it.unit_id, it.ping.ts)
    )
    if not fresh:
        return results

    _flag_and_advance(fresh, states, settings)
    ids = insert_pings(session, [it.row for it in fresh], reserved)
    for it, ping_id in zip(fresh, ids, strict=True):
        it.row["id"] = ping_id
        state = states[it.unit_id]
        if state.update is not None and state.update["last_ts"] == it.ping.ts:
            state.update["last_ping_id"] = ping_id
    # Where each fix lies (routes checked, fences holding it), once for the whole batch:
    # the event machines and the answers share it.
    located: list[Where] | None = None
    if settings.events_enabled or any(it.detail for it in fresh):
        located = index.locate_many(
            np.fromiter((it.ping.lon for it in fresh), float, len(fresh)),
            np.fromiter((it.ping.lat for it in fresh), float, len(fresh)),
            [index.assigned.get(it.unit_id, ()) for it in fresh],
        )
    if settings.events_enabled:
        steps = [(it.unit_id, _fix(it), it.row.get("id")) for it in fresh]
        new_events, machines = run_machines(
            steps, {uid: st.machine for uid, st in states.items()}, index, settings, located
        )
        for uid, machine in machines.items():
            update = states[uid].update
            if update is not None:
                update["machine"] = machine
            elif machine != states[uid].machine:
                # Only late or held fixes, yet an alarm's state moved: keep it, nothing else.
                session.execute(
                    sa_update(UnitState).where(UnitState.unit_id == uid).values(machine=machine)
                )
        if new_events:
            session.add_all(new_events)
            session.flush()
            if events is not None:
                events.extend(new_events)
    update_unit_states(session, [s.update for s in states.values() if s.update is not None])

    for n, it in enumerate(fresh):
        if not it.detail or located is None:
            results[it.key] = ACCEPTED
            continue
        results[it.key] = PingResult.model_construct(
            index=it.key[1],
            status="accepted",
            reason=None,
            id=it.row["id"],
            unit_id=it.unit_id,
            ts=it.ping.ts,
            flags=flag_names(it.flags),
            evaluation=index.as_evaluation(located[n]),
        )
    return results


def _flag_and_advance(
    fresh: Sequence[WorkItem], states: dict[int, _State], settings: Settings
) -> None:
    """Flag each fix (in unit, device-time order) and move unit states forward."""
    now = utcnow()
    for it in fresh:
        state = states[it.unit_id]
        ping = it.ping
        good = None
        if state.good_ts is not None and state.good_lon is not None and state.good_lat is not None:
            good = (state.good_ts, state.good_lon, state.good_lat)
        it.flags = assess(
            lon=ping.lon,
            lat=ping.lat,
            ts=ping.ts,
            accuracy_m=ping.accuracy_m,
            now=now,
            newest_ts=state.last_ts,
            good=good,
            max_accuracy_m=settings.max_accuracy_m,
            max_speed_mps=settings.max_speed_mps,
            future_tolerance_s=settings.future_tolerance_s,
        )
        it.row = {
            "unit_id": it.unit_id,
            "ts": ping.ts,
            "received_at": now,
            "lon": ping.lon,
            "lat": ping.lat,
            "speed_mps": ping.speed_mps,
            "heading": ping.heading,
            "accuracy_m": ping.accuracy_m,
            "altitude_m": ping.altitude_m,
            "battery": ping.battery,
            "flags": it.flags,
            "source": it.source,
            "client_ping_id": ping.ping_id,
            "attributes": ping.attributes,
        }
        if it.flags & _HOLDS_STATE:
            # A late fix never moves the live state; nor does one dated in the future (it
            # would make every real fix after it look late) or one without a position.
            continue
        state.last_ts = ping.ts
        if eligible(it.flags):
            state.good_ts, state.good_lon, state.good_lat = ping.ts, ping.lon, ping.lat
        state.update = {
            "uid": it.unit_id,
            "last_ping_id": None,
            "last_ts": ping.ts,
            "last_lon": ping.lon,
            "last_lat": ping.lat,
            "last_speed_mps": ping.speed_mps,
            "last_flags": it.flags,
            "good_ts": state.good_ts,
            "good_lon": state.good_lon,
            "good_lat": state.good_lat,
            "received_at": now,
            "machine": state.machine,
        }


def alert_fix(report: DeviceReport) -> Fix | None:
    """The alarm and battery level a report without a position carries, as a fix without one."""
    attributes = report.attributes
    alarm = alarm_name(attributes.get("alarm"))
    level = attributes.get("battery", attributes.get("batt"))  # PingIn's name, OwnTracks' name
    battery = (
        float(level)
        if isinstance(level, int | float) and not isinstance(level, bool) and 0 <= level <= 100
        else None
    )
    if alarm is None and battery is None:
        return None
    return Fix(report.ts, 0.0, 0.0, None, int(Flag.ZERO), alarm, battery)


def report_events(
    session: Session, geo: GeoCache, settings: Settings, alerts: Sequence[tuple[int, Fix]]
) -> list[EventRow]:
    """Step the alarm and battery state of the units whose status reports carry them.

    The units' state rows must be locked already (see lock_units). Returns the events, stored.
    """
    if not alerts or not settings.events_enabled:
        return []
    ids = sorted({unit_id for unit_id, _ in alerts})
    machines: dict[int, dict[str, Any] | None] = dict(
        session.execute(
            select(UnitState.unit_id, UnitState.machine).where(UnitState.unit_id.in_(ids))
        ).all()
    )
    steps = sorted(((uid, fix, None) for uid, fix in alerts), key=lambda s: (s[0], s[1].ts))
    rows, states = run_machines(steps, machines, geo.get(session), settings)
    for uid, machine in states.items():
        if machine != machines.get(uid):
            session.execute(
                sa_update(UnitState).where(UnitState.unit_id == uid).values(machine=machine)
            )
    if rows:
        session.add_all(rows)
        session.flush()
    return rows


def store_reports(
    session: Session,
    reports: Sequence[DeviceReport],
    source: str,
    principal: Principal,
    times: FixTimes = DEFAULT_FIX_TIMES,
    alerts: list[tuple[int, Fix]] | None = None,
) -> list[str | None]:
    """Store non-position tracker messages; returns a rejection reason (or None) per report.

    Stored reports that carry an alarm or a battery level are appended to `alerts`.
    """
    device_ids = {r.device_id for r in reports}
    by_device = {
        dev: uid
        for uid, dev in session.execute(
            select(Unit.id, Unit.device_id).where(Unit.device_id.in_(device_ids))
        )
    }
    reasons: list[str | None] = []
    now = utcnow()
    for report in reports:
        time_refused = times.refusal(report.ts, now)
        if time_refused is not None:
            reasons.append(time_refused)
            continue
        unit_id = by_device.get(report.device_id)
        if principal.role == "tracker" and (unit_id is None or unit_id != principal.unit_id):
            reasons.append(not_yours(principal.unit_id))  # the same answer as for pings
            continue
        if unit_id is None:
            reasons.append(f"unknown device_id {report.device_id!r}")
            continue
        session.add(
            DeviceReportRow(
                unit_id=unit_id,
                ts=report.ts,
                received_at=now,
                source=source,
                kind=report.kind,
                attributes=report.attributes,
            )
        )
        if alerts is not None and (fix := alert_fix(report)) is not None:
            alerts.append((unit_id, fix))
        reasons.append(None)
    return reasons


def ingest(
    store: Store,
    geo: GeoCache,
    settings: Settings,
    principal: Principal,
    pings: Sequence[tuple[int, PingIn]],
    *,
    source: str = "json",
) -> list[PingResult]:
    """Store pings in a transaction of their own (the group committer batches requests)."""
    items = [WorkItem((0, index), ping, principal, source) for index, ping in pings]
    with store.write() as session:
        results = ingest_items(session, geo, settings, items)
    return [results[(0, index)] for index, _ in pings]
