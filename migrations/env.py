"""Alembic environment: migrates the database named by the service settings (or the caller)."""

from __future__ import annotations

from alembic import context
from geoalchemy2 import alembic_helpers

from service.store.db import make_engine
from service.store.models import Base
from service.store.partitions import is_partition_name

config = context.config


def _url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from service.config import get_settings

    return get_settings().database_url


def _include(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
    """Autogenerate leaves time partitions (the scheduler makes and drops them), the QGIS
    layers (PostGIS-only views and tables declared in migration 0007) and BRIN indexes
    (PostGIS-only, migration 0008) alone."""
    if name and name.startswith("qgis_"):
        return False
    if type_ == "index" and name and name.endswith("_brin"):
        return False
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    if table and is_partition_name(table):
        return False
    return bool(alembic_helpers.include_object(obj, name, type_, reflected, other))


def run_migrations() -> None:
    """Apply migrations on one connection, in one transaction per migration."""
    connection = config.attributes.get("connection")
    if connection is None:
        engine = make_engine(_url())
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=_include,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
