"""Initial schema: units, patrol routes, geofences, pings, events, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _geom(geometry_type: str) -> sa.types.TypeEngine:
    # PostGIS geometry with SRID 4326 on PostgreSQL; WKB bytes on SQLite.
    if _pg():
        return Geometry(geometry_type, srid=4326, spatial_index=False)
    return sa.LargeBinary()


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if _pg():
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("device_id", name="uq_units_device_id"),
    )
    op.create_table(
        "unit_states",
        sa.Column(
            "unit_id",
            sa.Integer(),
            sa.ForeignKey("units.id", ondelete="CASCADE", name="fk_unit_states_unit_id_units"),
            primary_key=True,
        ),
        sa.Column("last_ping_id", _BIGID),
        sa.Column("last_ts", _ts()),
        sa.Column("last_lon", sa.Float()),
        sa.Column("last_lat", sa.Float()),
        sa.Column("last_speed_mps", sa.Float()),
        sa.Column("last_flags", sa.Integer(), nullable=False),
        sa.Column("good_ts", _ts()),
        sa.Column("good_lon", sa.Float()),
        sa.Column("good_lat", sa.Float()),
        sa.Column("received_at", _ts()),
    )
    op.create_table(
        "patrol_routes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("corridor_m", sa.Float(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("geom", _geom("LINESTRING"), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
    )
    op.create_table(
        "unit_patrol_routes",
        sa.Column(
            "unit_id",
            sa.Integer(),
            sa.ForeignKey(
                "units.id", ondelete="CASCADE", name="fk_unit_patrol_routes_unit_id_units"
            ),
            primary_key=True,
        ),
        sa.Column(
            "patrol_route_id",
            sa.Integer(),
            sa.ForeignKey(
                "patrol_routes.id",
                ondelete="CASCADE",
                name="fk_unit_patrol_routes_patrol_route_id_patrol_routes",
            ),
            primary_key=True,
        ),
    )
    op.create_table(
        "geofences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("geom", _geom("GEOMETRY"), nullable=False),
        sa.Column("radius_m", sa.Float()),
        sa.Column("min_dwell_s", sa.Float()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
    )
    op.create_table(
        "pings",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "unit_id",
            sa.Integer(),
            sa.ForeignKey("units.id", ondelete="CASCADE", name="fk_pings_unit_id_units"),
            nullable=False,
        ),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("geom", _geom("POINT"), nullable=False),
        sa.Column("speed_mps", sa.Float()),
        sa.Column("heading", sa.Float()),
        sa.Column("accuracy_m", sa.Float()),
        sa.Column("altitude_m", sa.Float()),
        sa.Column("battery", sa.Float()),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("client_ping_id", sa.String(200)),
        sa.Column("attributes", sa.JSON()),
        sa.UniqueConstraint("unit_id", "ts", "lat", "lon", name="uq_pings_unit_id_ts_lat_lon"),
        sa.UniqueConstraint("unit_id", "client_ping_id", name="uq_pings_unit_id_client_ping_id"),
    )
    op.create_index("ix_pings_ts", "pings", ["ts"])
    op.create_table(
        "events",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column(
            "unit_id",
            sa.Integer(),
            sa.ForeignKey("units.id", ondelete="CASCADE", name="fk_events_unit_id_units"),
        ),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("lon", sa.Float()),
        sa.Column("lat", sa.Float()),
        sa.Column(
            "patrol_route_id",
            sa.Integer(),
            sa.ForeignKey(
                "patrol_routes.id",
                ondelete="SET NULL",
                name="fk_events_patrol_route_id_patrol_routes",
            ),
        ),
        sa.Column(
            "geofence_id",
            sa.Integer(),
            sa.ForeignKey(
                "geofences.id", ondelete="SET NULL", name="fk_events_geofence_id_geofences"
            ),
        ),
        sa.Column("ping_id", _BIGID),
        sa.Column("details", sa.JSON()),
        sa.Column("created_at", _ts(), nullable=False),
    )
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_index("ix_events_unit_id_ts", "events", ["unit_id", "ts"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column(
            "unit_id",
            sa.Integer(),
            sa.ForeignKey("units.id", ondelete="CASCADE", name="fk_api_keys_unit_id_units"),
        ),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("revoked_at", _ts()),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )

    if _pg():
        # GiST indexes for spatial queries; the geography one serves ST_DWithin in metres.
        op.create_index("ix_patrol_routes_geom", "patrol_routes", ["geom"], postgresql_using="gist")
        op.create_index("ix_geofences_geom", "geofences", ["geom"], postgresql_using="gist")
        op.create_index("ix_pings_geom", "pings", ["geom"], postgresql_using="gist")
        op.execute("CREATE INDEX ix_pings_geog ON pings USING gist ((geom::geography))")


def downgrade() -> None:
    for table in (
        "api_keys",
        "events",
        "pings",
        "geofences",
        "unit_patrol_routes",
        "patrol_routes",
        "unit_states",
        "units",
    ):
        op.drop_table(table)
