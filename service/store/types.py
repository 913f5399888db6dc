"""Column types shared by both backends: Shapely geometries and UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import shapely
from geoalchemy2 import Geometry
from shapely.geometry.base import BaseGeometry
from sqlalchemy import DateTime, LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

SRID = 4326


class _FromWKB(FunctionElement[Any]):
    """Bound WKB turned into a geometry on PostGIS, kept as a blob on SQLite."""

    inherit_cache = True


class _AsWKB(FunctionElement[Any]):
    """A geometry column read back as WKB on PostGIS, the blob itself on SQLite."""

    inherit_cache = True


@compiles(_FromWKB)
@compiles(_AsWKB)
def _wkb_default(element: _FromWKB | _AsWKB, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_FromWKB, "postgresql")
def _from_wkb_pg(element: _FromWKB, compiler: Any, **kw: Any) -> str:
    return f"ST_GeomFromWKB({compiler.process(element.clauses, **kw)}, {SRID})"


@compiles(_AsWKB, "postgresql")
def _as_wkb_pg(element: _AsWKB, compiler: Any, **kw: Any) -> str:
    return f"ST_AsBinary({compiler.process(element.clauses, **kw)})"


class GeometryType(TypeDecorator[BaseGeometry]):
    """A Shapely geometry: PostGIS geometry (SRID 4326) on PostgreSQL, WKB on SQLite."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, geometry_type: str = "GEOMETRY") -> None:
        super().__init__()
        self.geometry_type = geometry_type

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(
                Geometry(self.geometry_type, srid=SRID, spatial_index=False)
            )
        return dialect.type_descriptor(LargeBinary())

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return _FromWKB(bindvalue)

    def column_expression(self, colexpr: Any) -> ColumnElement[Any]:
        expr = _AsWKB(colexpr)
        expr.type = self  # so results still pass through process_result_value
        return expr

    def process_bind_param(self, value: BaseGeometry | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return bytes(shapely.to_wkb(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> BaseGeometry | None:
        if value is None:
            return None
        data = getattr(value, "data", value)  # geoalchemy2 wraps PostGIS results in WKBElement
        if isinstance(data, str):
            return shapely.from_wkb(bytes.fromhex(data))
        return shapely.from_wkb(bytes(data))


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both backends (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
