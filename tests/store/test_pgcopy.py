"""Binary COPY reads into NumPy and transaction-local planner settings (PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from service.store.db import Store
from service.store.pgcopy import copy_columns, copy_pieces, local_settings


def test_copy_columns_reads_typed_arrays(postgis_url: str) -> None:
    store = Store.from_url(postgis_url)
    with store.read() as session:
        unit, t, value = copy_columns(
            session,
            "SELECT g::integer, g * 1.5::float8, "
            "CASE WHEN mod(g, 2) = 0 THEN 'NaN'::float8 ELSE g::float8 END "
            "FROM generate_series(1, %(n)s) AS g ORDER BY 1",
            {"n": 5},
            ["i4", "f8", "f8"],
        )
        empty = copy_columns(session, "SELECT 1::integer WHERE false", {}, ["i4"])
    store.dispose()
    assert unit.tolist() == [1, 2, 3, 4, 5] and unit.dtype == np.int32
    assert t.tolist() == [1.5, 3.0, 4.5, 6.0, 7.5]
    assert np.isnan(value[[1, 3]]).all() and value[[0, 2, 4]].tolist() == [1.0, 3.0, 5.0]
    assert empty[0].size == 0


@pytest.mark.parametrize("rows", [1, 7, 4096, 29_999, 30_000, 30_001, None])
def test_copy_pieces_stream_the_rows_in_order(postgis_url: str, rows: int | None) -> None:
    store = Store.from_url(postgis_url)
    query = "SELECT g::integer, g::bigint * 3, g / 7.0::float8 FROM generate_series(1, 30000) g"
    with store.read() as session:
        pieces = list(copy_pieces(session, query, {}, ["i4", "i8", "f8"], rows))
        none = list(copy_pieces(session, "SELECT 1::integer WHERE false", {}, ["i4"], rows))
    store.dispose()
    assert none == []
    assert [len(p[0]) for p in pieces[:-1]] == [rows] * (len(pieces) - 1)
    assert 0 < len(pieces[-1][0]) <= (rows or 30_000)
    g = np.arange(1, 30_001)
    unit, tripled, seventh = (np.concatenate([p[k] for p in pieces]) for k in range(3))
    assert (unit == g).all() and unit.dtype == np.int32
    assert (tripled == g * 3).all() and tripled.dtype == np.int64
    assert np.allclose(seventh, g / 7.0)


def test_copy_columns_refuses_nulls_and_wrong_types(postgis_url: str) -> None:
    store = Store.from_url(postgis_url)
    with store.read() as session, pytest.raises(RuntimeError, match="NULL"):
        copy_columns(session, "SELECT NULL::float8, 1::integer", {}, ["f8", "i4"])
    with store.read() as session, pytest.raises(RuntimeError, match="unexpected COPY output"):
        copy_columns(session, "SELECT 1::integer, 2::integer", {}, ["i4", "i8"])
    with store.read() as session, pytest.raises(RuntimeError, match="NULL"):
        query = "SELECT g::integer, CASE WHEN g = 900 THEN NULL ELSE 1.0 END::float8"
        query += " FROM generate_series(1, 1000) g"
        list(copy_pieces(session, query, {}, ["i4", "f8"], 100))
    store.dispose()


def test_local_settings_apply_inside_the_block_only(postgis_url: str) -> None:
    store = Store.from_url(postgis_url)
    show = text("SELECT current_setting('work_mem'), current_setting('enable_nestloop')")
    with store.read() as session:
        before = session.execute(show).one()
        with local_settings(session, {"work_mem": "77MB", "enable_nestloop": "off"}):
            assert tuple(session.execute(show).one()) == ("77MB", "off")
        assert session.execute(show).one() == before
    store.dispose()
