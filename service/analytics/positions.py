"""Where units are and have been: latest positions and tracks as GeoJSON."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.protocols.gpx import SEGMENT_KEY, TRACK_KEY, TrackPoint, split_track, tracks_to_gpx
from service.quality import EXCLUDED, flag_names
from service.schemas import GeoJSONDict
from service.store.models import Ping, Unit, UnitState
from service.store.pgcopy import copy_columns, copy_pieces
from service.store.sql import epoch

# The SQL filter for analytics-eligible fixes (no zero/future/inaccurate/teleport flag).
ELIGIBLE = Ping.flags.op("&")(int(EXCLUDED)) == 0


def latest_positions(session: Session) -> GeoJSONDict:
    """One Feature per unit at its newest fix (null geometry when it never reported)."""
    rows = session.execute(
        select(Unit, UnitState).outerjoin(UnitState, UnitState.unit_id == Unit.id).order_by(Unit.id)
    ).all()
    features = []
    for unit, state in rows:
        last_ts = state.last_ts if state is not None else None
        has_fix = last_ts is not None
        features.append(
            {
                "type": "Feature",
                "id": unit.id,
                "geometry": (
                    {"type": "Point", "coordinates": [state.last_lon, state.last_lat]}
                    if has_fix
                    else None
                ),
                "properties": {
                    "unit_id": unit.id,
                    "name": unit.name,
                    "device_id": unit.device_id,
                    "kind": unit.kind,
                    "ts": last_ts.isoformat() if last_ts is not None else None,
                    "received_at": (
                        state.received_at.isoformat() if has_fix and state.received_at else None
                    ),
                    "speed_mps": state.last_speed_mps if has_fix else None,
                    "flags": flag_names(state.last_flags) if has_fix else [],
                    "ping_id": state.last_ping_id if has_fix else None,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def unit_track(session: Session, unit_id: int, start: datetime, end: datetime) -> GeoJSONDict:
    """A unit's fixes in [start, end): a LineString of the good fixes, then every fix as a Point."""
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"unit {unit_id} not found")
    pings = session.scalars(
        select(Ping)
        .where(Ping.unit_id == unit_id, Ping.ts >= start, Ping.ts < end)
        .order_by(Ping.ts, Ping.id)
    ).all()
    good = [(p.lon, p.lat) for p in pings if not p.flags & EXCLUDED]
    line = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": good} if len(good) >= 2 else None,
        "properties": {
            "kind": "track",
            "unit_id": unit.id,
            "name": unit.name,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "points": len(good),
        },
    }
    points = [
        {
            "type": "Feature",
            "id": p.id,
            "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
            "properties": {
                "kind": "fix",
                "ts": p.ts.isoformat(),
                "speed_mps": p.speed_mps,
                "heading": p.heading,
                "accuracy_m": p.accuracy_m,
                "altitude_m": p.altitude_m,
                "battery": p.battery,
                "flags": flag_names(p.flags),
                "source": p.source,
            },
        }
        for p in pings
    ]
    return {"type": "FeatureCollection", "features": [line, *points]}


@dataclass
class Fixes:
    """Analytics-eligible fixes in a window as arrays, ordered by unit then device time."""

    unit_id: np.ndarray
    t: np.ndarray
    lon: np.ndarray
    lat: np.ndarray


def eligible_fixes_query(start: datetime, end: datetime) -> Select[int, float, float, float]:
    """The query of `eligible_fixes` (on PostgreSQL it reads only the window's partitions)."""
    return (
        select(Ping.unit_id, epoch(Ping.ts), Ping.lon, Ping.lat)
        .where(Ping.ts >= start, Ping.ts < end, ELIGIBLE)
        .order_by(Ping.unit_id, Ping.ts, Ping.id)
    )


def eligible_fixes(session: Session, start: datetime, end: datetime) -> Fixes:
    """Every unit's analytics-eligible fixes in [start, end)."""
    connection = session.connection()
    query = eligible_fixes_query(start, end)
    if connection.dialect.name == "postgresql":
        # Binary COPY straight into arrays: no Python object per fix (analytics read ~1M).
        sql = query.compile(dialect=connection.dialect)
        unit, t, lon, lat = copy_columns(session, sql.string, sql.params, ["i4", "f8", "f8", "f8"])
        return Fixes(unit.astype(np.int64), t, lon, lat)
    result = connection.execute(query)
    # Plain numbers need no result processing: read the driver's tuples directly, which is
    # an order of magnitude faster than building a Row per fix.
    cursor = result.cursor
    rows = cursor.fetchall() if cursor is not None else []
    result.close()
    if not rows:
        empty = np.empty(0)
        return Fixes(empty.astype(np.int64), empty, empty, empty)
    arr = np.array(rows, dtype=np.float64)
    return Fixes(arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2], arr[:, 3])


@dataclass
class NewFixes:
    """Eligible fixes as arrays with their ids and reception times (epoch s), in any order."""

    fixes: Fixes
    id: np.ndarray
    received: np.ndarray


def fixes_received(
    session: Session,
    start: datetime,
    received_from: datetime | None = None,
    unit_ids: Collection[int] | None = None,
    chunk: int = 100_000,
) -> Iterator[NewFixes]:
    """Analytics-eligible fixes from device time `start` on (no end), received since
    `received_from` (all when None), of the given units (all when None), ordered by unit,
    device time and id, in pieces of at most `chunk` (a server-side cursor on PostgreSQL)."""
    stmt = select(
        Ping.unit_id, epoch(Ping.ts), Ping.lon, Ping.lat, Ping.id, epoch(Ping.received_at)
    ).where(Ping.ts >= start, ELIGIBLE)
    if received_from is not None:
        stmt = stmt.where(Ping.received_at >= received_from)
    if unit_ids is not None:
        stmt = stmt.where(Ping.unit_id.in_(sorted(unit_ids)))
    stmt = stmt.order_by(Ping.unit_id, Ping.ts, Ping.id)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Binary COPY into arrays, no object per row: reads that run beside ingest stay light.
        sql = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        kinds = ["i4", "f8", "f8", "f8", "i8", "f8"]
        for unit, t, lon, lat, ids, received in copy_pieces(
            session, sql.string, sql.params, kinds, chunk
        ):
            yield NewFixes(Fixes(unit.astype(np.int64), t, lon, lat), ids, received)
        return
    result = connection.execute(stmt.execution_options(yield_per=chunk))
    try:
        for rows in result.partitions():
            # Plain tuples: NumPy would probe each Row for an array interface, one exception each.
            arr = np.array([tuple(row) for row in rows], dtype=np.float64)
            ints = arr[:, [0, 4]].astype(np.int64)
            fixes = Fixes(ints[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
            yield NewFixes(fixes, ints[:, 1], arr[:, 5])
    finally:
        result.close()


def track_gpx(
    session: Session, unit_id: int, start: datetime, end: datetime, max_gap_s: float
) -> str:
    """A unit's good fixes in [start, end) as GPX 1.1 tracks and segments.

    A segment ends where the gap to the next fix exceeds `max_gap_s` or where an imported
    file's segment ends; a track ends where an imported file's track ends.
    """
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"unit {unit_id} not found")
    rows = session.execute(
        select(
            Ping.ts,
            Ping.lat,
            Ping.lon,
            Ping.altitude_m,
            Ping.speed_mps,
            Ping.heading,
            Ping.battery,
            Ping.attributes,
        )
        .where(
            Ping.unit_id == unit_id,
            Ping.ts >= start,
            Ping.ts < end,
            ELIGIBLE,
        )
        .order_by(Ping.ts, Ping.id)
    )
    points = (
        TrackPoint(ts, lat, lon, alt, speed, heading, battery, _imported_part(attributes))
        for ts, lat, lon, alt, speed, heading, battery, attributes in rows
    )
    return tracks_to_gpx(unit.name, split_track(points, max_gap_s))


def _imported_part(attributes: dict[str, Any] | None) -> tuple[int, int] | None:
    """The (track, segment) a GPX import recorded for a fix, if any."""
    if not attributes:
        return None
    track, segment = attributes.get(TRACK_KEY), attributes.get(SEGMENT_KEY)
    if isinstance(track, int) and isinstance(segment, int):
        return track, segment
    return None
