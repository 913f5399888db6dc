"""PostgreSQL bulk reads: a query's rows as NumPy arrays through binary COPY."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_SIZES = {"i4": 4, "i8": 8, "f8": 8}


@contextmanager
def local_settings(session: Session, settings: Mapping[str, str]) -> Iterator[None]:
    """Set PostgreSQL settings for the statements inside the block, then restore them."""
    names = list(settings)
    # One round trip each way: set every value, returning what was there before.
    swap = text(
        "SELECT n, old, set_config(n, v, true) FROM ("
        " SELECT n, v, current_setting(n) AS old"
        " FROM unnest(CAST(:names AS text[]), CAST(:values AS text[])) AS s(n, v) OFFSET 0"
        ") AS each_setting"
    )
    before = {
        n: old
        for n, old, _ in session.execute(
            swap, {"names": names, "values": [settings[n] for n in names]}
        )
    }
    yield
    # (After an error the transaction is aborted and its rollback undoes the settings anyway.)
    session.execute(swap, {"names": names, "values": [before[n] for n in names]})


def copy_columns(
    session: Session, query: str, params: Mapping[str, Any], kinds: list[str]
) -> list[np.ndarray]:
    """Columns of a query's rows, read with COPY (FORMAT BINARY) into NumPy arrays.

    `query` uses psycopg's %(name)s placeholders; `kinds` gives each column's type as
    "i4", "i8" or "f8". No value may be NULL (coalesce to NaN in the query).
    """
    pieces = list(copy_pieces(session, query, params, kinds, None))
    if not pieces:
        return [np.zeros(0, dtype=kind) for kind in kinds]
    if len(pieces) == 1:
        return pieces[0]
    return [np.concatenate([p[k] for p in pieces]) for k in range(len(kinds))]


def copy_pieces(
    session: Session,
    query: str,
    params: Mapping[str, Any],
    kinds: list[str],
    rows_per_piece: int | None,
) -> Iterator[list[np.ndarray]]:
    """`copy_columns`, streamed: the columns of at most `rows_per_piece` rows at a time (all
    at once when None), in the query's order, so a long read holds one piece in memory."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k, kind in enumerate(kinds):
        fields += [(f"len{k}", ">i4"), (f"v{k}", f">{kind}")]
    record = np.dtype(fields)
    piece_bytes = None if rows_per_piece is None else rows_per_piece * record.itemsize
    raw = session.connection().connection.driver_connection
    buffer = bytearray()
    header = True
    statement = f"COPY ({query}) TO STDOUT (FORMAT BINARY)"
    with raw.cursor() as cursor, cursor.copy(statement, params) as copy:  # type: ignore[union-attr]
        for chunk in copy:
            buffer += chunk
            if header:
                if len(buffer) < 19:
                    continue
                if not buffer.startswith(_SIGNATURE):
                    raise RuntimeError("unexpected COPY output: no binary signature")
                extension = int.from_bytes(buffer[15:19], "big")
                if len(buffer) < 19 + extension:
                    continue
                del buffer[: 19 + extension]
                header = False
            while piece_bytes is not None and len(buffer) >= piece_bytes + 2:
                yield _columns(bytes(buffer[:piece_bytes]), record, kinds)
                del buffer[:piece_bytes]
    if header or not buffer.endswith(b"\xff\xff"):  # the trailer is a field count of -1
        raise RuntimeError("unexpected COPY output: no trailer")
    if len(buffer) > 2:
        yield _columns(memoryview(buffer)[:-2], record, kinds)  # (the buffer is not resized again)


def _columns(body: bytes | memoryview, record: np.dtype, kinds: list[str]) -> list[np.ndarray]:
    """The columns of whole binary COPY rows."""
    if len(body) % record.itemsize:
        raise RuntimeError("unexpected COPY output: rows do not match the column types (or a NULL)")
    rows = np.frombuffer(body, dtype=record)
    if not (rows["count"] == len(kinds)).all():
        raise RuntimeError("unexpected COPY output: wrong column count")
    for k, kind in enumerate(kinds):
        if not (rows[f"len{k}"] == _SIZES[kind]).all():
            raise RuntimeError(f"unexpected COPY output: column {k} is NULL or not {kind}")
    return [rows[f"v{k}"].astype(kind) for k, kind in enumerate(kinds)]
