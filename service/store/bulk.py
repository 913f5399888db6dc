"""Bulk ping inserts on the driver's fastest path: COPY on PostgreSQL, executemany on SQLite."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

# The pings columns written by ingest, in order; `id` is assigned before the insert so the
# rows' ids are known without RETURNING (COPY returns nothing).
COLUMNS = (
    "id",
    "unit_id",
    "ts",
    "received_at",
    "lon",
    "lat",
    "geom",
    "speed_mps",
    "heading",
    "accuracy_m",
    "altitude_m",
    "battery",
    "flags",
    "source",
    "client_ping_id",
    "attributes",
)


def _sqlite_time(value: datetime) -> str:
    # Exactly the text SQLAlchemy's DateTime stores on SQLite (4-digit year included), so
    # comparisons and reads keep working.
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def _json(value: Any) -> str | None:
    # NaN/Infinity are not JSON; refusing them here keeps them out of both backends.
    return None if value is None else json.dumps(value, allow_nan=False)


def _reserve_ids(session: Session, n: int) -> list[int]:
    """n new ping ids (the caller holds the write lock on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('pings', 'id')) FROM generate_series(1, :n)"
            ),
            {"n": n},
        )
        return [int(r[0]) for r in rows]
    last = session.execute(text("SELECT coalesce(max(id), 0) FROM pings")).scalar_one()
    return list(range(int(last) + 1, int(last) + 1 + n))


def insert_pings(
    session: Session, rows: Sequence[dict[str, Any]], reserved: Sequence[int] = ()
) -> list[int]:
    """Insert ping rows (dicts keyed by COLUMNS, without id) in the session's transaction.

    `reserved`: ids already taken from the pings sequence (PostgreSQL), used first.
    """
    if not rows:
        return []
    if len(reserved) >= len(rows):
        ids = list(reserved[: len(rows)])
    else:
        ids = _reserve_ids(session, len(rows))
    points = shapely.points(
        np.fromiter((r["lon"] for r in rows), float, len(rows)),
        np.fromiter((r["lat"] for r in rows), float, len(rows)),
    )
    dbapi = session.connection().connection.driver_connection
    assert dbapi is not None
    if session.get_bind().dialect.name == "postgresql":
        geoms = shapely.to_wkb(shapely.set_srid(points, 4326), hex=True, include_srid=True)
        cur = dbapi.cursor()
        with cur.copy(f"COPY pings ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for ping_id, row, geom in zip(ids, rows, geoms, strict=True):
                copy.write_row(
                    (ping_id, row["unit_id"], row["ts"], row["received_at"], row["lon"],
                     row["lat"], geom, row["speed_mps"], row["heading"], row["accuracy_m"],
                     row["altitude_m"], row["battery"], row["flags"], row["source"],
                     row["client_ping_id"], _json(row["attributes"]))
                )  # fmt: skip
        return ids
    geoms = shapely.to_wkb(points)
    values = [
        (ping_id, row["unit_id"], _sqlite_time(row["ts"]), _sqlite_time(row["received_at"]),
         row["lon"], row["lat"], geom, row["speed_mps"], row["heading"], row["accuracy_m"],
         row["altitude_m"], row["battery"], row["flags"], row["source"], row["client_ping_id"],
         _json(row["attributes"]))
        for ping_id, row, geom in zip(ids, rows, geoms, strict=True)
    ]  # fmt: skip
    marks = ", ".join("?" for _ in COLUMNS)
    dbapi.cursor().executemany(f"INSERT INTO pings ({', '.join(COLUMNS)}) VALUES ({marks})", values)
    return ids


STATE_COLUMNS = (
    "last_ping_id",
    "last_ts",
    "last_lon",
    "last_lat",
    "last_speed_mps",
    "last_flags",
    "good_ts",
    "good_lon",
    "good_lat",
    "received_at",
    "machine",
)
# On PostgreSQL the new states travel as one JSON text (encoded by the json module's C
# encoder, decoded by the server) rather than as an array per column, whose per-element
# encoding in the driver cost a third of the writer's time.
_UPDATE_STATES = (
    f"UPDATE unit_states AS s SET {', '.join(f'{c} = v.{c}' for c in STATE_COLUMNS)} "
    "FROM json_populate_recordset(NULL::unit_states, %s::json) AS v WHERE s.unit_id = v.unit_id"
)


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a unit state")


def update_unit_states(session: Session, updates: Sequence[dict[str, Any]]) -> None:
    """Write new unit states (dicts with `uid` and STATE_COLUMNS) in one statement."""
    if not updates:
        return
    dbapi = session.connection().connection.driver_connection
    assert dbapi is not None
    if session.get_bind().dialect.name == "postgresql":
        states = [{"unit_id": u["uid"], **{c: u[c] for c in STATE_COLUMNS}} for u in updates]
        payload = json.dumps(states, default=_json_value, allow_nan=False)
        dbapi.cursor().execute(_UPDATE_STATES, (payload,), prepare=True)
        return
    sets = ", ".join(f"{c} = ?" for c in STATE_COLUMNS)
    rows = [
        tuple(
            _sqlite_time(u[c])
            if isinstance(u[c], datetime)
            else _json(u[c])
            if c == "machine"
            else u[c]
            for c in (*STATE_COLUMNS, "uid")
        )
        for u in updates
    ]
    dbapi.cursor().executemany(f"UPDATE unit_states SET {sets} WHERE unit_id = ?", rows)
