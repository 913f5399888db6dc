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
    # strftime sees only "YYYY-MM-DD HH:MM:SS": given the fraction it would round to the nearest
    # millisecond first and could count .9995 s and up as the next second.
    whole = f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER)"
    return f"({whole} + CAST(substr({column}, 20) AS REAL))"


@compiles(epoch, "postgresql")
def _epoch_pg(element: epoch, compiler: Any, **kw: Any) -> str:
    return f"date_part('epoch', {compiler.process(element.clauses, **kw)})"
