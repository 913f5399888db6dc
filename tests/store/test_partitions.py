"""Time partitions: migration 0005 keeps every row; partitions ahead, rows moved, pruning."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from service.analytics.positions import eligible_fixes, eligible_fixes_query
from service.config import Settings
from service.store.bulk import insert_pings
from service.store.db import Store
from service.store.migrate import current_revision, downgrade, head_revision, upgrade
from service.store.models import DeviceReportRow, Event
from service.store.partitions import (
    is_partitioned,
    partition_name,
    partitions,
    period_end,
    period_start,
)
from service.store.retention import ensure_partitions
from tests.store.timeseries import (
    ALL_TABLES,
    TIME_TABLES,
    digest,
    max_id,
    new_unit,
    ping_row,
    seed,
)

# Days the migration test seeds: a few consecutive days, a fix from a wrong device clock years
# back, and one day later on.
SEEDED = [
    datetime(2025, 3, 1, 8, tzinfo=UTC),
    datetime(2025, 3, 1, 23, 59, 50, tzinfo=UTC),
    datetime(2025, 3, 2, 0, 0, tzinfo=UTC),
    datetime(2025, 3, 3, 12, tzinfo=UTC),
    datetime(2003, 7, 9, 5, tzinfo=UTC),
    datetime(2025, 4, 20, 17, tzinfo=UTC),
]


@pytest.fixture
def unmigrated_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database with no schema yet, on the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'unmigrated.db'}"
    return str(request.getfixturevalue("empty_postgis_url"))


def test_migration_keeps_every_row_and_ids_continue(unmigrated_url: str, backend: str) -> None:
    store = Store.from_url(unmigrated_url)
    try:
        upgrade(store.engine, "0004")
        seed(store, new_unit(store, "u1"), SEEDED)
        seed(store, new_unit(store, "u2"), SEEDED[:3])
        before = {t: digest(store.engine, t) for t in ALL_TABLES}
        assert before["pings"][0] == 27 and before["events"][0] == 9

        upgrade(store.engine, "0005")
        assert current_revision(store.engine) == "0005"
        assert {t: digest(store.engine, t) for t in ALL_TABLES} == before
        with store.read() as session:
            conn = session.connection()
            assert all(is_partitioned(conn, t) == (backend == "postgis") for t in TIME_TABLES)
            if backend == "postgis":
                # One partition per seeded day (none left in the default), and the days ahead.
                days = {period_start(t, "day") for t in SEEDED}
                for table in TIME_TABLES:
                    parts = partitions(conn, table)
                    assert parts[-1].is_default and parts[-1].name == f"{table}_default"
                    assert {p.start for p in parts if p.start} >= days
                    empty = session.execute(text(f"SELECT count(*) FROM {table}_default"))
                    assert empty.scalar_one() == 0
                today = period_start(datetime.now(UTC), "day")
                assert text_exists(session, partition_name("pings", today + timedelta(days=6)))

        # Down and up again: still every row, unchanged.
        downgrade(store.engine, "0004")
        assert {t: digest(store.engine, t) for t in ALL_TABLES} == before
        upgrade(store.engine, "0005")
        assert {t: digest(store.engine, t) for t in ALL_TABLES} == before
        upgrade(store.engine)  # and on to the newest schema
        assert current_revision(store.engine) == head_revision()

        # Ids continue after the largest id of before the migration.
        unit_id = new_unit(store, "u3")
        with store.write() as session:
            last = {t: max_id(session, t) for t in TIME_TABLES}
            (ping_id,) = insert_pings(session, [ping_row(unit_id, SEEDED[0], 999)])
            event = Event(type="offline", unit_id=unit_id, ts=SEEDED[0])
            report = DeviceReportRow(
                unit_id=unit_id, ts=SEEDED[0], received_at=SEEDED[0], source="x", kind="status"
            )
            session.add_all([event, report])
            session.flush()
        assert ping_id == last["pings"] + 1
        assert event.id == last["events"] + 1
        assert report.id == last["device_reports"] + 1
    finally:
        store.dispose()


def text_exists(session: Session, relation: str) -> bool:
    """Whether a table of that name exists."""
    return session.execute(text("SELECT to_regclass(:r)"), {"r": relation}).scalar() is not None


@pytest.mark.parametrize("backend", ["postgis"])
def test_partitioned_keys_include_the_time(database_url: str) -> None:
    store = Store.from_url(database_url)
    try:
        with store.read() as session:
            keys = dict(
                session.execute(
                    text(
                        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE conrelid IN ('pings'::regclass, 'events'::regclass, "
                        "'device_reports'::regclass) AND contype IN ('p', 'u', 'f')"
                    )
                ).all()
            )
            sequence = session.execute(text("SELECT pg_get_serial_sequence('pings', 'id')"))
            assert sequence.scalar() == "public.pings_id_seq"
    finally:
        store.dispose()
    assert keys["pk_pings"] == "PRIMARY KEY (id, ts)"
    assert keys["pk_events"] == "PRIMARY KEY (id, ts)"
    assert keys["pk_device_reports"] == "PRIMARY KEY (id, ts)"
    assert keys["uq_pings_unit_id_ts_lat_lon"] == "UNIQUE (unit_id, ts, lat, lon)"
    assert keys["uq_pings_unit_id_client_ping_id_ts"] == "UNIQUE (unit_id, client_ping_id, ts)"
    assert "ON DELETE CASCADE" in keys["fk_pings_unit_id_units"]
    assert "ON DELETE SET NULL" in keys["fk_events_geofence_id_geofences"]


@pytest.mark.parametrize("backend", ["postgis"])
def test_partitions_ahead_and_default_rows_moved(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(partition_ahead_days=3)
    now = datetime(2032, 5, 10, 12, tzinfo=UTC)
    store = Store.from_url(database_url)
    try:
        unit_id = new_unit(store, "u1")
        # Rows for days that have no partition yet land in the default partition.
        seed(store, unit_id, [now + timedelta(days=1, hours=1), now + timedelta(days=3)])
        # ... and so do rows of a recent past day (stored while no scheduler ran), and of a
        # day long ago, which keeps its rows in the default partition.
        seed(store, unit_id, [now - timedelta(days=2), now - timedelta(days=30)])
        before = {t: digest(store.engine, t) for t in ALL_TABLES}
        with store.read() as session:
            assert session.execute(text("SELECT count(*) FROM pings_default")).scalar() == 12

        created = ensure_partitions(store, settings, now)

        days = [datetime(2032, 5, d, tzinfo=UTC) for d in (8, 10, 11, 12, 13)]
        expected = []
        for table in TIME_TABLES:
            per = 3 if table == "pings" else 1
            expected += [(table, partition_name(table, d), per if d.day in (8, 11, 13) else 0)
                         for d in days]  # fmt: skip
        assert sorted(created) == sorted(expected)
        assert {t: digest(store.engine, t) for t in ALL_TABLES} == before  # nothing lost
        with store.read() as session:
            count = session.execute(text("SELECT count(*) FROM pings_p20320511")).scalar()
            assert count == 3
            # Only the row of a day without a partition stays in the default.
            assert session.execute(text("SELECT count(*) FROM pings_default")).scalar() == 3
            assert session.execute(text("SELECT count(*) FROM events_default")).scalar() == 1
            assert session.execute(text("SELECT count(*) FROM events_p20320513")).scalar() == 1
        # A second pass finds nothing to do; new rows go to their day's partition.
        assert ensure_partitions(store, settings, now) == []
        with store.write() as session:
            insert_pings(session, [ping_row(unit_id, now + timedelta(days=2), 7)])
        with store.read() as session:
            assert session.execute(text("SELECT count(*) FROM pings_p20320512")).scalar() == 1
    finally:
        store.dispose()


@pytest.mark.parametrize("backend", ["postgis"])
def test_weekly_partitions_fill_around_daily_ones(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    daily = make_settings(partition_ahead_days=2)
    weekly = make_settings(partition_interval="week", partition_ahead_days=14)
    now = datetime(2033, 3, 9, 10, tzinfo=UTC)  # a Wednesday
    store = Store.from_url(database_url)
    try:
        ensure_partitions(store, daily, now)  # 9, 10 and 11 March
        created = [name for table, name, _ in ensure_partitions(store, weekly, now)]
        with store.read() as session:
            parts = [p for p in partitions(session.connection(), "pings") if p.start]
    finally:
        store.dispose()
    assert [n for n in created if n.startswith("pings_")] == [
        "pings_p20330307",  # Monday 7 March to the first daily partition
        "pings_p20330312",  # after the daily ones to the next Monday
        "pings_p20330314",
        "pings_p20330321",
    ]
    spans = [(p.start, p.end) for p in parts if p.start and p.start.year == 2033]
    assert spans == sorted(spans)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # no gap, no overlap
    assert spans[0][0] == datetime(2033, 3, 7, tzinfo=UTC)
    assert spans[-1][1] == period_end(datetime(2033, 3, 21, tzinfo=UTC), "week")


@pytest.mark.parametrize("backend", ["postgis"])
def test_window_query_reads_only_its_partitions(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(partition_ahead_days=6)
    start_day = datetime(2034, 2, 1, tzinfo=UTC)
    store = Store.from_url(database_url)
    try:
        ensure_partitions(store, settings, start_day)
        unit_id = new_unit(store, "u1")
        with store.write() as session:
            insert_pings(
                session,
                [ping_row(unit_id, start_day + timedelta(hours=6 * k), k) for k in range(24)],
            )
        start, end = datetime(2034, 2, 3, 6, tzinfo=UTC), datetime(2034, 2, 4, 6, tzinfo=UTC)
        compiled = eligible_fixes_query(start, end).compile(dialect=postgresql.dialect())
        with store.read() as session:
            plan = "\n".join(
                row[0]
                for row in session.connection().exec_driver_sql(
                    "EXPLAIN " + str(compiled), compiled.params
                )
            )
            fixes = eligible_fixes(session, start, end)
    finally:
        store.dispose()
    scanned = set(re.findall(r" on (pings_\w+)", plan))
    assert scanned == {"pings_p20340203", "pings_p20340204"}, plan
    assert len(fixes.t) == 4  # 06:00, 12:00, 18:00 on the 3rd and 00:00 on the 4th
