"""Ping ingest: resolve units, flag quality, evaluate, store durably with the unit's state."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import shapely
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from service.auth import Principal
from service.config import Settings
from service.evaluate import GeoCache
from service.quality import Flag, assess, eligible, flag_names
from service.schemas import PingIn, PingResult
from service.store.db import Store
from service.store.models import Ping, Unit, UnitPatrolRoute, UnitState, utcnow


@dataclass
class _Pending:
    """A ping that passed validation, on its way to the store."""

    index: int
    ping: PingIn
    unit_id: int
    flags: int = 0
    row: dict[str, Any] = field(default_factory=dict)


def _resolve_units(
    session: Session, principal: Principal, items: list[tuple[int, PingIn]]
) -> tuple[list[_Pending], dict[int, str]]:
    """Match each ping to its unit; returns pending pings and per-index rejection reasons."""
    device_ids = {p.device_id for _, p in items if p.device_id}
    unit_ids = {p.unit_id for _, p in items if p.unit_id is not None}
    by_device: dict[str, int] = {}
    known_ids: set[int] = set()
    if device_ids:
        for uid, dev in session.execute(
            select(Unit.id, Unit.device_id).where(Unit.device_id.in_(device_ids))
        ):
            by_device[dev] = uid
    wanted = unit_ids | ({principal.unit_id} if principal.unit_id is not None else set())
    if wanted:
        known_ids = set(session.scalars(select(Unit.id).where(Unit.id.in_(wanted))))

    pending: list[_Pending] = []
    rejected: dict[int, str] = {}
    for index, ping in items:
        if ping.device_id is not None:
            unit_id = by_device.get(ping.device_id)
            if unit_id is None:
                rejected[index] = f"unknown device_id {ping.device_id!r}"
                continue
            if ping.unit_id is not None and ping.unit_id != unit_id:
                rejected[index] = f"device_id {ping.device_id!r} is not unit {ping.unit_id}"
                continue
        elif ping.unit_id is not None:
            unit_id = ping.unit_id
        elif principal.unit_id is not None:
            unit_id = principal.unit_id
        else:
            rejected[index] = "give device_id or unit_id"
            continue
        if unit_id not in known_ids and unit_id not in by_device.values():
            rejected[index] = f"unit {unit_id} not found"
            continue
        if principal.role == "tracker" and unit_id != principal.unit_id:
            rejected[index] = f"this tracker key may only post pings for unit {principal.unit_id}"
            continue
        pending.append(_Pending(index, ping, unit_id))
    return pending, rejected


def _lock_states(session: Session, unit_ids: list[int]) -> dict[int, UnitState]:
    """Each unit's state row, locked until commit so concurrent requests take turns."""
    stmt = select(UnitState).where(UnitState.unit_id.in_(unit_ids)).order_by(UnitState.unit_id)
    states = {s.unit_id: s for s in session.scalars(stmt.with_for_update())}
    for uid in unit_ids:
        if uid not in states:
            states[uid] = UnitState(unit_id=uid, last_flags=0)
            session.add(states[uid])
    session.flush()
    return states


def _stored_duplicates(session: Session, pending: list[_Pending]) -> set[int]:
    """Indexes of pending pings already stored (same unit, time and position, or ping_id)."""
    if not pending:
        return set()
    unit_ids = {p.unit_id for p in pending}
    first = min(p.ping.ts for p in pending)
    last = max(p.ping.ts for p in pending)
    stored = {
        (uid, ts, lat, lon)
        for uid, ts, lat, lon in session.execute(
            select(Ping.unit_id, Ping.ts, Ping.lat, Ping.lon).where(
                Ping.unit_id.in_(unit_ids), Ping.ts >= first, Ping.ts <= last
            )
        )
    }
    client_ids = {p.ping.ping_id for p in pending if p.ping.ping_id}
    stored_ids: set[tuple[int, str | None]] = set()
    if client_ids:
        stored_ids = {
            (uid, cid)
            for uid, cid in session.execute(
                select(Ping.unit_id, Ping.client_ping_id).where(
                    Ping.unit_id.in_(unit_ids), Ping.client_ping_id.in_(client_ids)
                )
            )
        }
    dupes: set[int] = set()
    seen_pos: set[tuple[int, datetime, float, float]] = set()
    seen_ids: set[tuple[int, str]] = set()
    for p in pending:
        pos = (p.unit_id, p.ping.ts, p.ping.lat, p.ping.lon)
        cid = (p.unit_id, p.ping.ping_id) if p.ping.ping_id else None
        if pos in stored or pos in seen_pos or (cid and (cid in stored_ids or cid in seen_ids)):
            dupes.add(p.index)
            continue
        seen_pos.add(pos)
        if cid:
            seen_ids.add((cid[0], str(cid[1])))
    return dupes


def ingest(
    store: Store,
    geo: GeoCache,
    settings: Settings,
    principal: Principal,
    items: list[tuple[int, PingIn]],
    *,
    source: str = "json",
) -> list[PingResult]:
    """Store valid pings durably and report, per index, accepted / duplicate / rejected."""
    results: dict[int, PingResult] = {}
    with store.write() as session:
        pending, rejected = _resolve_units(session, principal, items)
        for index, reason in rejected.items():
            results[index] = PingResult(index=index, status="rejected", reason=reason)
        if pending:
            _store(session, geo, settings, pending, results, source)
    return [results[i] for i, _ in items]


def _store(
    session: Session,
    geo: GeoCache,
    settings: Settings,
    pending: list[_Pending],
    results: dict[int, PingResult],
    source: str,
) -> None:
    """Flag, insert and evaluate pending pings and move unit states forward (one transaction)."""
    unit_ids = sorted({p.unit_id for p in pending})
    states = _lock_states(session, unit_ids)
    dupes = _stored_duplicates(session, pending)
    for p in pending:
        if p.index in dupes:
            results[p.index] = PingResult(
                index=p.index,
                status="duplicate",
                unit_id=p.unit_id,
                ts=p.ping.ts,
                flags=flag_names(Flag.DUPLICATE),
            )
    fresh = sorted(
        (p for p in pending if p.index not in dupes), key=lambda p: (p.unit_id, p.ping.ts)
    )
    if not fresh:
        return

    now = utcnow()
    for p in fresh:
        state = states[p.unit_id]
        ping = p.ping
        good = (
            (state.good_ts, state.good_lon, state.good_lat)
            if state.good_ts is not None and state.good_lon is not None
            else None
        )
        p.flags = assess(
            lon=ping.lon,
            lat=ping.lat,
            ts=ping.ts,
            accuracy_m=ping.accuracy_m,
            now=now,
            newest_ts=state.last_ts,
            good=good,  # type: ignore[arg-type]
            max_accuracy_m=settings.max_accuracy_m,
            max_speed_mps=settings.max_speed_mps,
            future_tolerance_s=settings.future_tolerance_s,
        )
        p.row = {
            "unit_id": p.unit_id,
            "ts": ping.ts,
            "received_at": now,
            "lon": ping.lon,
            "lat": ping.lat,
            "geom": shapely.points(ping.lon, ping.lat),
            "speed_mps": ping.speed_mps,
            "heading": ping.heading,
            "accuracy_m": ping.accuracy_m,
            "altitude_m": ping.altitude_m,
            "battery": ping.battery,
            "flags": p.flags,
            "source": source,
            "client_ping_id": ping.ping_id,
            "attributes": ping.attributes,
        }
        if not p.flags & Flag.LATE:
            state.last_ts = ping.ts
            state.last_lon = ping.lon
            state.last_lat = ping.lat
            state.last_speed_mps = ping.speed_mps
            state.last_flags = p.flags
            state.received_at = now
            if eligible(p.flags):
                state.good_ts, state.good_lon, state.good_lat = ping.ts, ping.lon, ping.lat

    ids = session.scalars(
        insert(Ping).returning(Ping.id, sort_by_parameter_order=True),
        [p.row for p in fresh],
    ).all()
    for p, ping_id in zip(fresh, ids, strict=True):
        state = states[p.unit_id]
        if state.last_ts == p.ping.ts and state.last_lon == p.ping.lon:
            state.last_ping_id = ping_id
        p.row["id"] = ping_id

    index = geo.get(session)
    assigned: dict[int, set[int]] = defaultdict(set)
    for uid, rid in session.execute(
        select(UnitPatrolRoute.unit_id, UnitPatrolRoute.patrol_route_id).where(
            UnitPatrolRoute.unit_id.in_(unit_ids)
        )
    ):
        assigned[uid].add(rid)
    for p in fresh:
        results[p.index] = PingResult(
            index=p.index,
            status="accepted",
            id=p.row["id"],
            unit_id=p.unit_id,
            ts=p.ping.ts,
            flags=flag_names(p.flags),
            evaluation=index.evaluate(p.ping.lon, p.ping.lat, assigned[p.unit_id]),
        )
