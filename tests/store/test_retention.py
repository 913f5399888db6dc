"""Retention: whole partitions dropped (PostgreSQL), batched deletes (SQLite), by the scheduler
once across instances, `patroli retention`, and what ingest and unit deletion rely on."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select, text

from service.areas.index import GeoCache
from service.config import Settings
from service.events.scheduler import Scheduler
from service.notify.webhooks import enqueue
from service.store.db import Store
from service.store.models import Event, Webhook, WebhookAttempt, WebhookDelivery
from service.store.partitions import partition_name
from service.store.retention import (
    apply_retention,
    ensure_partitions,
    maintain,
    plan_retention,
    retention_cutoff,
)
from tests.helpers import cli_env, run_patroli
from tests.store.timeseries import ALL_TABLES, TIME_TABLES, digest, new_unit, seed

LOCK_KEY = 0x70617274  # the upkeep's advisory lock (service/store/retention.py)


def _restore_partitions(store: Store, settings: Settings) -> None:
    """Partitions from today on again, after a test dropped everything before its own dates."""
    ensure_partitions(store, settings, datetime.now(UTC))


def _exists(store: Store, relation: str) -> bool:
    with store.read() as session:
        found = session.execute(text("SELECT to_regclass(:r)"), {"r": relation})
        return found.scalar() is not None


def _counts(store: Store) -> dict[str, int]:
    with store.read() as session:
        count = "SELECT count(*) FROM {}"
        return {t: session.execute(text(count.format(t))).scalar_one() for t in ALL_TABLES}


def _since(cutoff: datetime) -> str:
    return f"WHERE ts >= '{cutoff.strftime('%Y-%m-%d %H:%M:%S')}+00'"


@contextmanager
def _deletes(engine: Engine, table: str) -> Iterator[list[int]]:
    """Rows removed by each DELETE statement on a table (or its partitions) meanwhile."""
    removed: list[int] = []
    pattern = re.compile(rf'^DELETE FROM "?{table}(_default)?"? ')

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if pattern.match(statement):
            removed.append(cursor.rowcount)

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield removed
    finally:
        event.remove(engine, "after_cursor_execute", after)


@pytest.mark.parametrize("backend", ["postgis"])
def test_retention_drops_whole_partitions(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    now = datetime(2031, 1, 10, 12, tzinfo=UTC)
    settings = make_settings(partition_ahead_days=9)
    store = Store.from_url(database_url)
    try:
        ensure_partitions(store, settings, now - timedelta(days=8))  # 2 to 11 January
        unit_id = new_unit(store, "u1")
        days = [datetime(2031, 1, d, 9, tzinfo=UTC) for d in range(2, 10)]
        seed(store, unit_id, days)
        # In the default partition: one row long expired, one in the future.
        seed(store, unit_id, [datetime(2030, 6, 1, tzinfo=UTC), datetime(2031, 3, 1, tzinfo=UTC)])
        cutoff = now - timedelta(days=3)  # 7 January, 12:00
        kept = {t: digest(store.engine, t, _since(datetime(2031, 1, 7, tzinfo=UTC)))
                for t in TIME_TABLES}  # fmt: skip

        plan = plan_retention(store, cutoff)
        mine = [r for r in plan if (r.partition and "2031" in r.partition) or not r.drop]
        lines = [r.describe(dry_run=True) for r in mine if r.table == "pings"]
        assert lines == [
            f"pings: would drop partition pings_p203101{d:02d} "
            f"[2031-01-{d:02d}T00:00:00Z, 2031-01-{d + 1:02d}T00:00:00Z): 3 rows"
            for d in range(2, 7)
        ] + ["pings: would delete 3 rows older than 2031-01-07T12:00:00Z (from pings_default)"]
        assert _counts(store)["pings"] == 30  # a plan changes nothing

        with _deletes(store.engine, "pings") as removed:
            done = apply_retention(store, cutoff, batch=2)
        assert [r.describe() for r in done] == [r.describe() for r in plan]
        assert removed == [2, 1]  # the default partition's expired rows, in batches of 2
        for d in range(2, 7):
            assert not _exists(store, f"pings_p203101{d:02d}")
            assert not _exists(store, f"events_p203101{d:02d}")
            assert not _exists(store, f"device_reports_p203101{d:02d}")
        assert _exists(store, "pings_p20310107")  # only partly expired: kept whole
        # What is kept is untouched; the deliveries (and attempts) of dropped events are gone.
        for table in TIME_TABLES:
            assert digest(store.engine, table) == kept[table]
        counts = _counts(store)
        assert counts["pings"] == 3 * 4 and counts["events"] == 4
        assert counts["webhook_deliveries"] == 4 and counts["webhook_attempts"] == 4
        with store.read() as session:
            orphans = session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(~select(Event.id).where(Event.id == WebhookDelivery.event_id).exists())
            )
        assert orphans == 0
    finally:
        _restore_partitions(store, settings)
        store.dispose()


def test_retention_deletes_in_bounded_batches(database_url: str) -> None:
    store = Store.from_url(database_url)
    try:
        unit_id = new_unit(store, "u1")
        old = [datetime(2019, 3, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(23)]
        seed(store, unit_id, old, per_time=1)
        seed(store, unit_id, [datetime(2019, 4, 2, tzinfo=UTC)], per_time=2)
        cutoff = datetime(2019, 4, 1, tzinfo=UTC)
        kept = {t: digest(store.engine, t, _since(cutoff)) for t in TIME_TABLES}
        with _deletes(store.engine, "pings") as pings, _deletes(store.engine, "events") as events:
            done = apply_retention(store, cutoff, batch=5)
        assert pings == [5, 5, 5, 5, 3]
        assert events == [5, 5, 5, 5, 3]
        assert {r.table: r.rows for r in done if not r.drop} == {
            "pings": 23,
            "events": 23,
            "device_reports": 23,
        }
        for table in TIME_TABLES:
            assert digest(store.engine, table) == kept[table]
        counts = _counts(store)
        assert counts["webhook_deliveries"] == 1 and counts["webhook_attempts"] == 1
    finally:
        store.dispose()


def test_scheduler_keeps_partitions_and_applies_retention(
    database_url: str, backend: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(retention_days=10, retention_batch=2)
    now = datetime(2035, 6, 15, 12, tzinfo=UTC)
    store = Store.from_url(database_url)
    try:
        if backend == "postgis":
            earlier = make_settings(partition_ahead_days=2)
            ensure_partitions(store, earlier, now - timedelta(days=20))
        unit_id = new_unit(store, "u1")
        seed(store, unit_id, [now - timedelta(days=20), now - timedelta(days=19, hours=1)])
        seed(store, unit_id, [now - timedelta(days=1)])
        kept = {t: digest(store.engine, t, _since(now - timedelta(days=10))) for t in TIME_TABLES}

        scheduler = Scheduler(store, GeoCache(), settings, upkeep_every_s=3600)
        scheduler.run_once(now)
        upkeep = scheduler.last_upkeep
        assert upkeep is not None
        assert {r.table for r in upkeep.removed} == set(TIME_TABLES)
        for table in TIME_TABLES:
            assert digest(store.engine, table) == kept[table]
        assert _counts(store)["webhook_deliveries"] == 1
        if backend == "postgis":
            assert not _exists(store, "pings_p20350526")  # dropped whole
            assert _exists(store, partition_name("pings", datetime(2035, 6, 22, tzinfo=UTC)))
            assert any(name == "events_p20350615" for _, name, _ in upkeep.created)
        else:
            assert upkeep.created == []
        scheduler.run_once(now + timedelta(minutes=1))  # not due again before an hour
        assert scheduler.last_upkeep is upkeep
    finally:
        _restore_partitions(store, settings)
        store.dispose()


@pytest.mark.parametrize("backend", ["postgis"])
def test_upkeep_runs_on_one_instance_only(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(retention_days=1, partition_ahead_days=2)
    now = datetime(2036, 8, 1, 12, tzinfo=UTC)
    store = Store.from_url(database_url)
    other = Store.from_url(database_url)
    try:
        unit_id = new_unit(store, "u1")
        seed(store, unit_id, [now - timedelta(days=5)])
        # Another instance holds the upkeep lock: this one does nothing.
        with other.engine.connect() as conn:
            assert conn.execute(text(f"SELECT pg_try_advisory_lock({LOCK_KEY})")).scalar()
            upkeep = maintain(store, settings, now)
            assert upkeep.created == [] and upkeep.removed == []
            assert not _exists(store, "pings_p20360801")
            assert _counts(store)["pings"] == 3
            conn.execute(text(f"SELECT pg_advisory_unlock({LOCK_KEY})"))
        upkeep = maintain(store, settings, now)
        assert _exists(store, "pings_p20360801")
        assert _counts(store)["pings"] == 0
        assert maintain(store, settings, now).created == []  # done once
    finally:
        _restore_partitions(store, settings)
        store.dispose()
        other.dispose()


def test_retention_command_dry_run_then_apply(
    database_url: str, backend: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    store = Store.from_url(database_url)
    try:
        if backend == "postgis":
            ensure_partitions(store, make_settings(partition_ahead_days=1), old)
        unit_id = new_unit(store, "u1")
        seed(store, unit_id, [old])
        seed(store, unit_id, [now - timedelta(days=1)], per_time=2)
        before = {t: digest(store.engine, t) for t in ALL_TABLES}
        env = cli_env(database_url)

        off = run_patroli("retention", "--dry-run", env=env, cwd=tmp_path)
        assert off.returncode == 0, off.stderr
        assert "retention is off" in off.stdout

        dry = run_patroli("retention", "--dry-run", "--days", "30", env=env, cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert {t: digest(store.engine, t) for t in ALL_TABLES} == before  # nothing changed
        assert "retention: 30 days, cutoff " in dry.stdout
        if backend == "postgis":
            name = partition_name("pings", old.replace(hour=0, minute=0, second=0, microsecond=0))
            assert f"pings: would drop partition {name} [" in dry.stdout
            assert re.search(rf"pings: would drop partition {name} \[.*\): 3 rows", dry.stdout)
        else:
            assert re.search(r"^pings: would delete 3 rows older than \S+Z$", dry.stdout, re.M)
            assert re.search(r"^events: would delete 1 rows older than", dry.stdout, re.M)
        assert re.search(r"^would remove \d+ rows \(dry run: nothing changed\)$", dry.stdout, re.M)

        applied = run_patroli("retention", "--days", "30", env=env, cwd=tmp_path)
        assert applied.returncode == 0, applied.stderr
        assert "would" not in applied.stdout
        if backend == "postgis":
            assert f"pings: drop partition {name} [" in applied.stdout
            assert not _exists(store, name)
        else:
            assert re.search(r"^pings: delete 3 rows older than", applied.stdout, re.M)
        counts = _counts(store)
        assert counts["pings"] == 2 and counts["events"] == 1 and counts["device_reports"] == 1
        assert counts["webhook_deliveries"] == 1
    finally:
        store.dispose()


def test_repeated_pings_are_duplicates_across_partitions(client: TestClient) -> None:
    assert client.post("/api/v1/units", json={"name": "U1", "device_id": "u1"}).status_code == 201
    day = datetime.now(UTC) - timedelta(days=2)

    def post(ts: datetime, ping_id: str, lon: float = 116.83) -> str:
        body = {"device_id": "u1", "lat": -1.268, "lon": lon, "ts": ts.isoformat()}
        response = client.post("/api/v1/pings", json={**body, "ping_id": ping_id})
        assert response.status_code == 200, response.text
        return str(response.json()["results"][0]["status"])

    assert post(day, "a") == "accepted"
    assert post(day, "a") == "duplicate"  # a retry
    assert post(day, "b") == "duplicate"  # same time and position
    assert post(day + timedelta(days=1), "a") == "duplicate"  # same ping_id, another day
    assert post(day + timedelta(days=1), "c", lon=116.831) == "accepted"
    assert post(day + timedelta(days=1, seconds=5), "c", lon=116.832) == "duplicate"


def test_deleting_a_unit_deletes_its_webhook_deliveries(
    client: TestClient, settings: Settings
) -> None:
    store = Store.from_url(settings.database_url)
    try:
        gone, stays = new_unit(store, "gone"), new_unit(store, "stays")
        with store.write() as session:
            session.add(Webhook(url="https://hooks.example/p", event_types=[], secret="s"))
            events = [
                Event(type="offline", unit_id=unit_id, ts=datetime(2025, 1, 1, tzinfo=UTC))
                for unit_id in (gone, stays)
            ]
            session.add_all(events)
            session.flush()
            assert enqueue(session, events) == 2
            for delivery in session.scalars(select(WebhookDelivery)):
                session.add(WebhookAttempt(delivery_id=delivery.id, status_code=500))
        assert client.delete(f"/api/v1/units/{gone}").status_code == 204
        with store.read() as session:
            left = session.execute(
                select(Event.unit_id, WebhookDelivery.id).join(
                    Event, Event.id == WebhookDelivery.event_id
                )
            ).all()
            assert [unit_id for unit_id, _ in left] == [stays]
            assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
            assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 1
    finally:
        store.dispose()


@pytest.mark.parametrize("backend", ["postgis"])
def test_migrate_creates_missing_partitions_ahead(database_url: str, tmp_path: Path) -> None:
    day = (datetime.now(UTC) + timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
    name = partition_name("events", day)
    store = Store.from_url(database_url)
    try:
        with store.write() as session:
            session.execute(text(f"DROP TABLE IF EXISTS {name}"))
        assert not _exists(store, name)
        migrated = run_patroli("migrate", env=cli_env(database_url), cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        assert f"created partition {name} of events (0 rows moved from the default)" in (
            migrated.stdout
        )
        assert _exists(store, name)
    finally:
        store.dispose()


def test_retention_setting_unset_or_zero_keeps_everything() -> None:
    now = datetime(2030, 1, 31, tzinfo=UTC)
    for value in ("", "0", None):
        settings = Settings(_env_file=None, retention_days=value)  # type: ignore[call-arg]
        assert retention_cutoff(settings, now) is None
    settings = Settings(_env_file=None, retention_days="30")  # type: ignore[call-arg]
    assert retention_cutoff(settings, now) == datetime(2030, 1, 1, tzinfo=UTC)
    assert retention_cutoff(settings, now, days=0) is None  # `--days 0`
    with pytest.raises(ValueError, match="retention_days"):
        Settings(_env_file=None, retention_days=-1)  # type: ignore[call-arg]
