"""Test data for the time-partitioned tables: pings, events, device reports and deliveries."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from service.store.bulk import insert_pings
from service.store.db import Store
from service.store.models import (
    DeviceReportRow,
    Event,
    Unit,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)

_IDS = itertools.count(1)  # client ping ids, unique in the test run
TIME_TABLES = ("pings", "events", "device_reports")
ALL_TABLES = (*TIME_TABLES, "webhook_deliveries", "webhook_attempts")


def ping_row(unit_id: int, ts: datetime, k: int, client_id: str | None = None) -> dict:
    """A ping row as ingest writes it (positions differ by k)."""
    return {
        "unit_id": unit_id,
        "ts": ts,
        "received_at": ts,
        "lon": 116.83 + k * 1e-5,
        "lat": -1.268,
        "speed_mps": 3.5,
        "heading": 90.0,
        "accuracy_m": 5.0,
        "altitude_m": None,
        "battery": 80.0,
        "flags": 0,
        "source": "json",
        "client_ping_id": client_id,
        "attributes": {"k": k, "name": "Polwan <1>"},
    }


def new_unit(store: Store, device_id: str) -> int:
    """A unit's id (created)."""
    with store.write() as session:
        unit = Unit(name=device_id, device_id=device_id)
        session.add(unit)
        session.flush()
        return unit.id


def seed(store: Store, unit_id: int, times: Iterable[datetime], per_time: int = 3) -> None:
    """Per time: `per_time` pings, an event (with a webhook delivery and attempt) and a report."""
    with store.write() as session:
        hook = Webhook(url="https://hooks.example/p", event_types=[], secret="s", active=True)
        session.add(hook)
        session.flush()
        for n, t in enumerate(times):
            rows = [
                ping_row(unit_id, t + timedelta(seconds=10 * k), n * 100 + k, f"c{next(_IDS)}")
                for k in range(per_time)
            ]
            insert_pings(session, rows)
            # Only the columns every revision since 0004 has (the seed may run at 0004).
            values = {"type": "offline", "unit_id": unit_id, "ts": t, "lon": 116.83, "lat": -1.268}
            event_id = session.execute(insert(Event).values(values)).inserted_primary_key[0]
            session.add(
                DeviceReportRow(
                    unit_id=unit_id, ts=t, received_at=t, source="osmand", kind="status"
                )
            )
            session.flush()
            delivery = WebhookDelivery(
                webhook_id=hook.id, event_id=event_id, status="pending", attempts=1
            )
            session.add(delivery)
            session.flush()
            session.add(WebhookAttempt(delivery_id=delivery.id, status_code=500, error="HTTP 500"))


def digest(engine: Engine, table: str, where: str = "") -> tuple[int, str]:
    """Row count and a hash of every row of a table (ordered by id), as the driver reads them."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {table} {where} ORDER BY id")).all()
    return len(rows), hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()


def max_id(session: Session, table: str) -> int:
    """The largest id in a table (0 when empty)."""
    return int(session.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one())
