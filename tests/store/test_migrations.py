"""Alembic migrations: the schema they build matches the models, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from geoalchemy2 import alembic_helpers
from shapely.geometry import LineString, Point
from sqlalchemy import inspect, select

from service.store.db import Store
from service.store.migrate import current_revision, head_revision, upgrade
from service.store.models import Base, Geofence, PatrolRoute
from service.store.partitions import is_partition_name


def _compared(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
    # GiST and BRIN indexes exist on PostGIS only and are declared in the migrations, not the
    # models.
    if type_ == "index" and name and name.endswith(("_geom", "_geog", "_brin")):
        return False
    # The QGIS layers are PostGIS-only views and tables declared in migration 0007.
    if name and name.startswith("qgis_"):
        return False
    # Time partitions (PostgreSQL) are made by the migration and the scheduler, not the models.
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    if table and is_partition_name(table):
        return False
    return bool(alembic_helpers.include_object(obj, name, type_, reflected, other))


# On PostgreSQL a unique key of a partitioned table must include the partition column: the
# models' (unit_id, client_ping_id) is (unit_id, client_ping_id, ts) there (tests/store/
# test_partitions.py checks those keys, and that ingest still refuses a repeated ping_id).
PARTITIONED_KEYS = {"uq_pings_unit_id_client_ping_id", "uq_pings_unit_id_client_ping_id_ts"}


def _compared_pg(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
    if type_ == "unique_constraint" and name in PARTITIONED_KEYS:
        return False
    return _compared(obj, name, type_, reflected, other)


def test_migrated_schema_matches_models(database_url: str, backend: str) -> None:
    store = Store.from_url(database_url)
    compared = _compared_pg if backend == "postgis" else _compared
    try:
        assert current_revision(store.engine) == head_revision()
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={"include_object": compared, "compare_type": False},
            )
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == []
    finally:
        store.dispose()


def test_upgrade_is_idempotent_and_spatial_indexes_exist(database_url: str, backend: str) -> None:
    store = Store.from_url(database_url)
    try:
        upgrade(store.engine)  # already at head: a no-op
        indexes = {ix["name"] for ix in inspect(store.engine).get_indexes("pings")}
        if backend == "postgis":
            assert {"ix_pings_geom", "ix_pings_geog", "ix_pings_ts"} <= indexes
        else:
            assert "ix_pings_ts" in indexes
    finally:
        store.dispose()


def test_geometries_round_trip_as_shapely(database_url: str) -> None:
    store = Store.from_url(database_url)
    line = LineString([(116.83, -1.268), (116.839, -1.268)])
    try:
        with store.write() as session:
            session.add(PatrolRoute(name="r", corridor_m=30, closed=False, geom=line))
            session.add(
                Geofence(name="g", kind="critical_site", geom=Point(116.834, -1.268), radius_m=150)
            )
        with store.read() as session:
            route = session.scalars(select(PatrolRoute)).one()
            fence = session.scalars(select(Geofence)).one()
        assert route.geom.equals(line)
        assert fence.geom.equals(Point(116.834, -1.268))
        assert route.created_at.tzinfo is not None
        assert route.created_at <= datetime.now(UTC)
    finally:
        store.dispose()
