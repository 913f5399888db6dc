"""Time partitions on PostgreSQL: pings, events and device reports, by UTC day or week.

Each table is range-partitioned by its time column (`ts`, the device time) and has a default
partition `<table>_default` that takes any row no other partition covers, so an insert never
fails for lack of a partition. Partitions are named `<table>_p<YYYYMMDD>` after their first day.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, text

Interval = Literal["day", "week"]

# The partitioned tables and their partition column.
TABLES: dict[str, str] = {"pings": "ts", "events": "ts", "device_reports": "ts"}

_BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
_PARTITION_NAME = re.compile(r"^(pings|events|device_reports)_(p\d{8}(_\d{6})?|default)$")


@dataclass(frozen=True)
class Partition:
    """One partition of a table: [start, end) in UTC, or the default partition (no bounds)."""

    table: str
    name: str
    start: datetime | None = None
    end: datetime | None = None

    @property
    def is_default(self) -> bool:
        """Whether this is the table's default partition."""
        return self.start is None


def is_partition_name(name: str) -> bool:
    """Whether a table name is one of the partitions this module makes."""
    return _PARTITION_NAME.match(name) is not None


def period_start(t: datetime, interval: Interval) -> datetime:
    """The start (UTC midnight; Monday for weeks) of the period holding a time."""
    day = t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if interval == "week" else day


def period_end(start: datetime, interval: Interval) -> datetime:
    """The end of the period starting at `start`."""
    return start + timedelta(days=7 if interval == "week" else 1)


def default_name(table: str) -> str:
    """The name of a table's default partition."""
    return f"{table}_default"


def partition_name(table: str, start: datetime) -> str:
    """The name of the partition starting at `start`."""
    name = f"{table}_p{start:%Y%m%d}"
    return name if start.time() == datetime.min.time() else f"{name}_{start:%H%M%S}"


def _lit(t: datetime) -> str:
    # A timestamptz literal in UTC, safe to inline (partition bounds take no parameters).
    return "'" + t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00") + "'"


def is_partitioned(conn: Connection, table: str) -> bool:
    """Whether the table exists and is partitioned (always False on SQLite)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
    ).scalar_one_or_none()
    return kind == "p"


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The table's partitions, oldest first, the default partition last."""
    conn.execute(text("SELECT set_config('TimeZone', 'UTC', true)"))
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).all()
    found: list[Partition] = []
    for name, bound in rows:
        m = _BOUNDS.search(bound or "")
        if m is None:
            found.append(Partition(table, name))  # DEFAULT (or bounds not made here)
            continue
        start, end = (datetime.fromisoformat(v).astimezone(UTC) for v in m.groups())
        found.append(Partition(table, name, start, end))
    return sorted(
        found, key=lambda p: (p.start is None, p.start or datetime.min.replace(tzinfo=UTC))
    )


def uncovered(
    start: datetime, end: datetime, covered: list[tuple[datetime, datetime]]
) -> Iterator[tuple[datetime, datetime]]:
    """The parts of [start, end) outside every covered range."""
    at = start
    for lo, hi in sorted(covered):
        if hi <= at or lo >= end:
            continue
        if lo > at:
            yield at, lo
        at = max(at, hi)
        if at >= end:
            return
    if at < end:
        yield at, end


def create_default(conn: Connection, table: str) -> None:
    """Create the table's default partition."""
    conn.execute(text(f'CREATE TABLE "{default_name(table)}" PARTITION OF "{table}" DEFAULT'))


def create_partition(conn: Connection, table: str, start: datetime, end: datetime) -> int:
    """Create the partition [start, end), moving rows of that range out of the default
    partition into it; returns how many rows moved. The caller commits."""
    column, name, default = TABLES[table], partition_name(table, start), default_name(table)
    bounds = f"FOR VALUES FROM ({_lit(start)}) TO ({_lit(end)})"
    where = f'"{column}" >= {_lit(start)} AND "{column}" < {_lit(end)}'
    has_default = conn.execute(
        text(
            "SELECT 1 FROM pg_inherits WHERE inhparent = to_regclass(:t) "
            "AND inhrelid = to_regclass(:d)"
        ),
        {"t": table, "d": default},
    ).first()
    # Made apart and attached, rather than CREATE TABLE ... PARTITION OF: attaching locks the
    # parent in SHARE UPDATE EXCLUSIVE mode only, so reads and inserts go on meanwhile.
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
    moved = 0
    if has_default:
        # No insert may land in the default partition between the move and the attach.
        conn.execute(text(f'LOCK TABLE "{default}" IN ACCESS EXCLUSIVE MODE'))
        moved = conn.execute(
            text(f'INSERT INTO "{name}" SELECT * FROM "{default}" WHERE {where}')
        ).rowcount
        if moved:
            conn.execute(text(f'DELETE FROM "{default}" WHERE {where}'))
    # Attaching builds the partition's indexes and keys and checks its foreign keys.
    conn.execute(text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" {bounds}'))
    return int(moved)


def missing_periods(
    conn: Connection, table: str, start: datetime, end: datetime, interval: Interval
) -> list[tuple[datetime, datetime]]:
    """The ranges of the periods from `start` to `end` that no partition covers yet."""
    covered = [(p.start, p.end) for p in partitions(conn, table) if p.start and p.end]
    missing: list[tuple[datetime, datetime]] = []
    at = period_start(start, interval)
    while at < end:
        nxt = period_end(at, interval)
        missing += uncovered(at, nxt, covered)
        at = nxt
    return missing
