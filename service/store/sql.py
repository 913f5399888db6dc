"""SQL expressions that differ between PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class epoch(FunctionElement[float]):
    """Seconds since 1970-01-01 UTC of a timestamp column, as a float."""

    type = Float()
    inherit_cache = True


@compiles(epoch)
def _epoch_sqlite(element: epoch, compiler: Any, **kw: Any) -> str:
    # Timestamps are stored naive in UTC; julianday is accurate to about a millisecond.
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch, "postgresql")
def _epoch_pg(element: epoch, compiler: Any, **kw: Any) -> str:
    return f"date_part('epoch', {compiler.process(element.clauses, **kw)})"
