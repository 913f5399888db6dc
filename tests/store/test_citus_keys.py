"""The time-series tables stay ready to be distributed by unit (docs/scaling.md, Citus): every
unique key holds `unit_id`, but for the surrogate keys listed here, which that move changes."""

from __future__ import annotations

from sqlalchemy import text

from service.store.db import make_engine

DISTRIBUTED = ("pings", "events", "device_reports", "unit_states")
# Surrogate primary keys that moving to Citus turns into (unit_id, id, ts): see docs/scaling.md.
KNOWN_SURROGATES = {
    ("pings", ("id", "ts")),
    ("events", ("id", "ts")),
    ("device_reports", ("id", "ts")),
}

_UNIQUE_KEYS = text(
    """
    SELECT t.relname, array_agg(a.attname ORDER BY k.n) AS columns
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace ns ON ns.oid = t.relnamespace AND ns.nspname = current_schema()
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
    WHERE i.indisunique AND t.relname = ANY(:tables)
    GROUP BY i.indexrelid, t.relname
    """
)


def test_every_unique_key_of_a_time_series_table_holds_the_unit(postgis_url: str) -> None:
    engine = make_engine(postgis_url)
    try:
        with engine.connect() as conn:
            keys = {
                (table, tuple(columns))
                for table, columns in conn.execute(_UNIQUE_KEYS, {"tables": list(DISTRIBUTED)})
            }
    finally:
        engine.dispose()
    assert {table for table, _ in keys} == set(DISTRIBUTED)  # every table has its keys read
    without_unit = {(t, cols) for t, cols in keys if "unit_id" not in cols}
    assert without_unit == KNOWN_SURROGATES
    # The natural keys that find a repeated ping hold the unit.
    assert ("unit_states", ("unit_id",)) in keys
    assert any(
        t == "pings" and cols[:1] == ("unit_id",) and "client_ping_id" in cols for t, cols in keys
    )
