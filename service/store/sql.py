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
    # Timestamps are stored as naive UTC text ("YYYY-MM-DD HH:MM:SS[.ffffff]"): whole seconds
    # from strftime plus the fraction as written. julianday() would be off by up to ~50 µs,
    # enough to turn a fix exactly max_gap_s after another into one just beyond it.
    column = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) + CAST(substr({column}, 20) AS REAL))"


@compiles(epoch, "postgresql")
def _epoch_pg(element: epoch, compiler: Any, **kw: Any) -> str:
    return f"date_part('epoch', {compiler.process(element.clauses, **kw)})"
