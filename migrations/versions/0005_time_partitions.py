"""Time partitions: pings, events and device reports range-partitioned by `ts` on PostgreSQL.

Each table is rebuilt in place: a partitioned twin is created with a default partition and one
partition per period (PATROLI_PARTITION_INTERVAL) that holds rows, plus the periods ahead; the
rows are copied, the old table dropped and the twin renamed; the id sequence moves over, so ids
continue. Primary and unique keys gain `ts` (PostgreSQL requires the partition column in them).
Webhook deliveries no longer reference events by a foreign key (it cannot follow rows moved
between partitions); deleting a unit or expiring events deletes their deliveries instead.
On SQLite only that foreign key changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from service.store.partitions import (
    TABLES,
    default_name,
    partition_name,
    period_end,
    period_start,
)

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENT_FK = "fk_webhook_deliveries_event_id_events"
_EVENT_IX = "ix_webhook_deliveries_event_id"


def _keys(table: str, partitioned: bool) -> list[str]:
    """Keys, foreign keys and indexes of a table, partitioned or plain."""
    ts = ", ts" if partitioned else ""
    cascade = "REFERENCES units (id) ON DELETE CASCADE"
    if table == "pings":
        client = "uq_pings_unit_id_client_ping_id" + ("_ts" if partitioned else "")
        return [
            f"ALTER TABLE pings ADD CONSTRAINT pk_pings PRIMARY KEY (id{ts})",
            "ALTER TABLE pings ADD CONSTRAINT uq_pings_unit_id_ts_lat_lon "
            "UNIQUE (unit_id, ts, lat, lon)",
            f"ALTER TABLE pings ADD CONSTRAINT {client} UNIQUE (unit_id, client_ping_id{ts})",
            f"ALTER TABLE pings ADD CONSTRAINT fk_pings_unit_id_units FOREIGN KEY (unit_id) {cascade}",
            "CREATE INDEX ix_pings_ts ON pings (ts)",
            "CREATE INDEX ix_pings_geom ON pings USING gist (geom)",
            "CREATE INDEX ix_pings_geog ON pings USING gist ((geom::geography))",
        ]
    if table == "events":
        return [
            f"ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id{ts})",
            f"ALTER TABLE events ADD CONSTRAINT fk_events_unit_id_units FOREIGN KEY (unit_id) "
            f"{cascade}",
            "ALTER TABLE events ADD CONSTRAINT fk_events_patrol_route_id_patrol_routes "
            "FOREIGN KEY (patrol_route_id) REFERENCES patrol_routes (id) ON DELETE SET NULL",
            "ALTER TABLE events ADD CONSTRAINT fk_events_geofence_id_geofences "
            "FOREIGN KEY (geofence_id) REFERENCES geofences (id) ON DELETE SET NULL",
            "CREATE INDEX ix_events_ts ON events (ts)",
            "CREATE INDEX ix_events_unit_id_ts ON events (unit_id, ts)",
        ]
    return [
        f"ALTER TABLE device_reports ADD CONSTRAINT pk_device_reports PRIMARY KEY (id{ts})",
        "ALTER TABLE device_reports ADD CONSTRAINT fk_device_reports_unit_id_units "
        f"FOREIGN KEY (unit_id) {cascade}",
        "CREATE INDEX ix_device_reports_unit_id_ts ON device_reports (unit_id, ts)",
    ]


def _lit(t: datetime) -> str:
    return "'" + t.strftime("%Y-%m-%d %H:%M:%S+00") + "'"


def _rebuild(table: str, partitioned: bool) -> None:
    """Replace a table by a partitioned (or plain) copy holding the same rows and ids."""
    bind = op.get_bind()
    twin = f"{table}_rebuild"
    seq = bind.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
    if seq is None:
        raise RuntimeError(f"{table}.id has no sequence")
    op.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    by = " PARTITION BY RANGE (ts)" if partitioned else ""
    op.execute(f"CREATE TABLE {twin} (LIKE {table} INCLUDING DEFAULTS){by}")
    if partitioned:
        from service.config import get_settings

        settings = get_settings()
        interval = settings.partition_interval
        op.execute(f"CREATE TABLE {default_name(table)} PARTITION OF {twin} DEFAULT")
        # A partition for every period that holds rows, and for the periods ahead.
        unit = "week" if interval == "week" else "day"
        starts = {
            period_start(d.replace(tzinfo=UTC), interval)
            for (d,) in bind.execute(
                sa.text(f"SELECT DISTINCT date_trunc('{unit}', ts AT TIME ZONE 'UTC') FROM {table}")
            )
        }
        now = datetime.now(UTC)
        at = period_start(now, interval)
        while at < now + timedelta(days=settings.partition_ahead_days):
            starts.add(at)
            at = period_end(at, interval)
        for start in sorted(starts):
            op.execute(
                f"CREATE TABLE {partition_name(table, start)} PARTITION OF {twin} "
                f"FOR VALUES FROM ({_lit(start)}) TO ({_lit(period_end(start, interval))})"
            )
    op.execute(f"INSERT INTO {twin} SELECT * FROM {table}")
    op.execute(f"ALTER SEQUENCE {seq} OWNED BY NONE")
    op.execute(f"DROP TABLE {table}")  # with its partitions, when it had them
    op.execute(f"ALTER TABLE {twin} RENAME TO {table}")
    op.execute(f"ALTER SEQUENCE {seq} OWNED BY {table}.id")
    for statement in _keys(table, partitioned):
        op.execute(statement)
    op.execute(f"ANALYZE {table}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("webhook_deliveries") as batch:
            batch.drop_constraint(_EVENT_FK, type_="foreignkey")
        op.create_index(_EVENT_IX, "webhook_deliveries", ["event_id"])
        return
    op.drop_constraint(_EVENT_FK, "webhook_deliveries", type_="foreignkey")
    op.create_index(_EVENT_IX, "webhook_deliveries", ["event_id"])
    for table in TABLES:
        _rebuild(table, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            _rebuild(table, partitioned=False)
    # Deliveries of events deleted meanwhile would break the foreign key: they go first.
    op.execute(
        "DELETE FROM webhook_deliveries WHERE NOT EXISTS "
        "(SELECT 1 FROM events WHERE events.id = webhook_deliveries.event_id)"
    )
    op.drop_index(_EVENT_IX, "webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.create_foreign_key(
            _EVENT_FK, "events", ["event_id"], ["id"], ondelete="CASCADE"
        )
