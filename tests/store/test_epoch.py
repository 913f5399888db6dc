"""Fix times read back for analytics are exact on both backends, whatever their fraction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.analytics.positions import eligible_fixes
from service.store.bulk import insert_pings
from service.store.db import Store
from tests.helpers import add_unit

T0 = datetime(2024, 11, 26, 23, 0, tzinfo=UTC)


def test_eligible_fix_times_are_exact(database_url: str) -> None:
    offsets = [0.0, 0.9996, 1.4996, 1.9999995, 2.0, 60.0, 120.5, 180.999999]
    store = Store.from_url(database_url)
    try:
        with store.write() as session:
            unit = add_unit(session, "U", "u")
            rows = [
                {
                    "unit_id": unit.id,
                    "ts": T0 + timedelta(seconds=s),
                    "received_at": T0,
                    "lon": 116.83 + k * 1e-4,
                    "lat": -1.268,
                    "speed_mps": None,
                    "heading": None,
                    "accuracy_m": None,
                    "altitude_m": None,
                    "battery": None,
                    "flags": 0,
                    "source": "json",
                    "client_ping_id": None,
                    "attributes": None,
                }
                for k, s in enumerate(offsets)
            ]
            insert_pings(session, rows)
        with store.read() as session:
            fixes = eligible_fixes(session, T0, T0 + timedelta(hours=1))
    finally:
        store.dispose()
    expected = [(T0 + timedelta(seconds=s)).timestamp() for s in offsets]
    assert fixes.t.tolist() == expected  # exact: in order, and 60 s apart means 60.0
    assert fixes.t[5] - fixes.t[4] == 58.0 and fixes.t[6] - fixes.t[5] == 60.5
