"""Partition upkeep and retention of pings, events and device reports.

On PostgreSQL the scheduler creates the partitions of the days ahead and drops the partitions
that lie entirely before the retention cutoff (rows that landed in a default partition are
deleted in batches). On SQLite expired rows are deleted in batches of `retention_batch`, one
transaction each, so ingest is never held up for long. With several instances each step runs
under a PostgreSQL advisory lock: one instance does it, the others skip it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, select, text
from sqlalchemy.orm import Session

from service.config import Settings
from service.store.db import Store
from service.store.models import DeviceReportRow, Event, Ping, WebhookDelivery
from service.store.partitions import (
    TABLES,
    Partition,
    create_partition,
    default_name,
    is_partitioned,
    missing_periods,
    partition_name,
    partitions,
    period_start,
)

log = logging.getLogger(__name__)

_LOCK_KEY = 0x70617274  # one instance at a time keeps the partitions (PostgreSQL advisory lock)
# DDL waits at most this long for a lock, so ingest never queues behind it for long.
_LOCK_TIMEOUT = "5s"
_MODELS: dict[str, Any] = {"pings": Ping, "events": Event, "device_reports": DeviceReportRow}


@dataclass(frozen=True)
class Removal:
    """What retention removes from one table: a whole partition, or rows before `end`."""

    table: str
    rows: int
    end: datetime
    start: datetime | None = None
    partition: str | None = None
    drop: bool = False  # the whole partition is dropped

    def describe(self, *, dry_run: bool = False) -> str:
        """One line for the operator (`would ...` for a dry run)."""
        would = "would " if dry_run else ""
        if self.drop and self.start is not None:
            return (
                f"{self.table}: {would}drop partition {self.partition} "
                f"[{_iso(self.start)}, {_iso(self.end)}): {self.rows} rows"
            )
        where = f" (from {self.partition})" if self.partition else ""
        return f"{self.table}: {would}delete {self.rows} rows older than {_iso(self.end)}{where}"


@dataclass
class Upkeep:
    """What one maintenance pass did."""

    created: list[tuple[str, str, int]] = field(default_factory=list)  # table, partition, moved
    removed: list[Removal] = field(default_factory=list)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def retention_cutoff(settings: Settings, now: datetime, days: int | None = None) -> datetime | None:
    """Rows dated before this are expired (None: everything is kept)."""
    days = settings.retention_days if days is None else days
    return now - timedelta(days=days) if days else None


def _claim(conn: Connection) -> bool:
    """Take this transaction's maintenance lock (PostgreSQL); False if another instance has it."""
    if conn.dialect.name != "postgresql":
        return True
    if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar():
        return False
    conn.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": _LOCK_TIMEOUT})
    return True


def _count(conn: Connection, relation: str, before: datetime | None = None) -> int:
    sql = f'SELECT count(*) FROM "{relation}"' + (" WHERE ts < :c" if before else "")
    return int(conn.execute(text(sql), {"c": before} if before else {}).scalar_one())


def ensure_partitions(
    store: Store, settings: Settings, now: datetime
) -> list[tuple[str, str, int]]:
    """Create the partitions from now to `partition_ahead_days` ahead that are missing, and
    those of the past `partition_ahead_days` that have rows waiting in the default partition
    (e.g. stored by `patroli mqtt` while no scheduler ran).

    Rows already in the default partition for a new partition's range move into it.
    Returns (table, partition, rows moved) per partition created; nothing on SQLite.
    """
    if store.is_sqlite:
        return []
    ahead = timedelta(days=settings.partition_ahead_days)
    interval = settings.partition_interval
    created: list[tuple[str, str, int]] = []
    for table in TABLES:
        with store.write() as session:
            conn = session.connection()
            if not is_partitioned(conn, table) or not _claim(conn):
                continue
            past = missing_periods(conn, table, now - ahead, period_start(now, interval), interval)
            waiting = [(a, b) for a, b in past if _in_default(conn, table, a, b)]
            for start, stop in waiting + missing_periods(conn, table, now, now + ahead, interval):
                moved = create_partition(conn, table, start, stop)
                created.append((table, partition_name(table, start), moved))
    for table, name, moved in created:
        log.info("created partition %s of %s (%d rows moved from the default)", name, table, moved)
    return created


def _in_default(conn: Connection, table: str, start: datetime, end: datetime) -> bool:
    """Whether the table's default partition holds rows in [start, end)."""
    found = conn.execute(
        text(f'SELECT 1 FROM "{default_name(table)}" WHERE ts >= :a AND ts < :b LIMIT 1'),
        {"a": start, "b": end},
    )
    return found.first() is not None


def plan_retention(store: Store, cutoff: datetime) -> list[Removal]:
    """What retention with this cutoff would remove, per table (counted now)."""
    removals: list[Removal] = []
    with store.read() as session:
        conn = session.connection()
        for table in TABLES:
            if not is_partitioned(conn, table):
                model = _MODELS[table]
                n = (
                    session.scalar(select(func.count()).select_from(model).where(model.ts < cutoff))
                    or 0
                )
                if n:
                    removals.append(Removal(table, n, cutoff))
                continue
            for part in partitions(conn, table):
                if _expired(part, cutoff):
                    assert part.end is not None
                    rows = _count(conn, part.name)
                    removals.append(Removal(table, rows, part.end, part.start, part.name, True))
                elif part.is_default:
                    n = _count(conn, part.name, cutoff)
                    if n:
                        removals.append(Removal(table, n, cutoff, partition=part.name))
    return removals


def _expired(part: Partition, cutoff: datetime) -> bool:
    return part.end is not None and part.end <= cutoff


def apply_retention(store: Store, cutoff: datetime, batch: int) -> list[Removal]:
    """Remove everything dated before the cutoff: whole partitions, else batches of rows."""
    done: list[Removal] = []
    for table in TABLES:
        with store.read() as session:
            conn = session.connection()
            partitioned = is_partitioned(conn, table)
            parts = partitions(conn, table) if partitioned else []
        if not partitioned:
            n = delete_in_batches(store, table, None, cutoff, batch)
            if n:
                done.append(Removal(table, n, cutoff))
            continue
        for part in parts:
            if _expired(part, cutoff):
                dropped = _drop(store, part)
                if dropped is not None:
                    done.append(dropped)
            elif part.is_default:
                n = delete_in_batches(store, table, part.name, cutoff, batch)
                if n:
                    done.append(Removal(table, n, cutoff, partition=part.name))
    for removal in done:
        log.info("retention: %s", removal.describe())
    return done


def _drop(store: Store, part: Partition) -> Removal | None:
    """Drop one expired partition (and the webhook deliveries of its events)."""
    assert part.end is not None
    with store.write() as session:
        conn = session.connection()
        if not _claim(conn):
            return None
        exists = conn.execute(text("SELECT to_regclass(:p)"), {"p": part.name}).scalar()
        if exists is None:
            return None  # another instance dropped it meanwhile
        rows = _count(conn, part.name)
        if part.table == "events":
            conn.execute(
                text(
                    "DELETE FROM webhook_deliveries WHERE event_id IN "
                    f'(SELECT id FROM "{part.name}")'
                )
            )
        conn.execute(text(f'DROP TABLE "{part.name}"'))
    return Removal(part.table, rows, part.end, part.start, part.name, True)


def delete_in_batches(
    store: Store, table: str, partition: str | None, cutoff: datetime, batch: int
) -> int:
    """Delete a table's rows dated before the cutoff, `batch` rows per transaction."""
    total = 0
    while True:
        with store.write() as session:
            if not _claim(session.connection()):
                return total
            n = _delete_batch(session, table, partition, cutoff, batch)
        total += n
        if n < batch:
            return total


def _delete_batch(
    session: Session, table: str, partition: str | None, cutoff: datetime, batch: int
) -> int:
    if partition is not None:  # PostgreSQL: the rows left in a default partition
        ids = list(
            session.execute(
                text(f'SELECT id FROM "{partition}" WHERE ts < :c LIMIT :n'),
                {"c": cutoff, "n": batch},
            ).scalars()
        )
        if ids and table == "events":
            session.execute(
                text("DELETE FROM webhook_deliveries WHERE event_id = ANY(:ids)"), {"ids": ids}
            )
        if ids:
            session.execute(text(f'DELETE FROM "{partition}" WHERE id = ANY(:ids)'), {"ids": ids})
        return len(ids)
    model = _MODELS[table]
    chosen = select(model.id).where(model.ts < cutoff).order_by(model.id).limit(batch)
    plain = {"synchronize_session": False}  # no objects to update: no RETURNING needed
    if table == "events":
        session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(chosen)),
            execution_options=plain,
        )
    result = session.execute(delete(model).where(model.id.in_(chosen)), execution_options=plain)
    return int(result.rowcount)  # type: ignore[attr-defined]


def maintain(store: Store, settings: Settings, now: datetime) -> Upkeep:
    """One upkeep pass: partitions ahead, then retention when `retention_days` is set."""
    upkeep = Upkeep(created=ensure_partitions(store, settings, now))
    cutoff = retention_cutoff(settings, now)
    if cutoff is not None:
        upkeep.removed = apply_retention(store, cutoff, settings.retention_batch)
    return upkeep
