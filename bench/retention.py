"""Retention cost: dropping a day's partition versus deleting the same rows in batches.

Loads `--days` days of pings (`--rows` a day, 50 units, COPY on PostGIS), then removes the
oldest day with batched deletes (what SQLite, and the default partition on PostgreSQL, get) and
the next day by retention proper (on PostGIS: dropping its partition), and prints both with
their ratio. Throw-away databases, as in the other benchmarks:

    .venv/bin/python bench/retention.py                  # SQLite and PostGIS
    .venv/bin/python bench/retention.py --backend postgis --rows 200000
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import Row, for_backends, print_table  # type: ignore[import-not-found]  # noqa: E402
from dataset import backend_url  # type: ignore[import-not-found]  # noqa: E402

from service.config import Settings  # noqa: E402
from service.store.bulk import insert_pings  # noqa: E402
from service.store.db import Store  # noqa: E402
from service.store.models import Unit, UnitState  # noqa: E402
from service.store.retention import (  # noqa: E402
    apply_retention,
    delete_in_batches,
    ensure_partitions,
)

START = datetime(2026, 1, 5, tzinfo=UTC)
UNITS = 50


def _load(store: Store, days: int, rows: int) -> None:
    with store.write() as session:
        for u in range(UNITS):
            unit = Unit(name=f"u{u}", device_id=f"u{u}")
            session.add(unit)
            session.flush()
            session.add(UnitState(unit_id=unit.id, last_flags=0))
    step = 86_400 / (rows / UNITS)
    for day in range(days):
        batch = []
        for k in range(rows):
            ts = START + timedelta(days=day, seconds=(k // UNITS) * step)
            batch.append(
                {"unit_id": k % UNITS + 1, "ts": ts, "received_at": ts,
                 "lon": 116.83 + (k % 997) * 1e-5, "lat": -1.268, "speed_mps": 5.0,
                 "heading": 90.0, "accuracy_m": 5.0, "altitude_m": None, "battery": 80.0,
                 "flags": 0, "source": "json", "client_ping_id": None, "attributes": None}
            )  # fmt: skip
            if len(batch) == 50_000:
                with store.write() as session:
                    insert_pings(session, batch)
                batch = []
        if batch:
            with store.write() as session:
                insert_pings(session, batch)


def _count(store: Store) -> int:
    with store.read() as session:
        return int(session.execute(text("SELECT count(*) FROM pings")).scalar_one())


def bench(name: str, args: argparse.Namespace, workdir: Path) -> list[Row]:
    """Figures for one backend."""
    with backend_url(name, workdir) as url:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, database_url=url, partition_ahead_days=args.days
        )
        store = Store.from_url(url)
        try:
            ensure_partitions(store, settings, START)
            _load(store, args.days, args.rows)
            before = _count(store)
            t0 = time.perf_counter()
            deleted = delete_in_batches(store, "pings", None, START + timedelta(days=1), args.batch)
            batched = time.perf_counter() - t0
            t0 = time.perf_counter()
            removed = apply_retention(store, START + timedelta(days=2), args.batch)
            retention = time.perf_counter() - t0
            dropped = sum(r.rows for r in removed if r.table == "pings")
            assert before - deleted - dropped == _count(store) == (args.days - 2) * args.rows
        finally:
            store.dispose()
    how = "drop partition" if name == "postgis" else "batched delete"
    return [
        (name, "batched delete", str(deleted), f"{batched:.2f}",
         f"{deleted / batched:,.0f}", "1.0"),
        (name, f"retention ({how})", str(dropped), f"{retention:.3f}",
         f"{dropped / retention:,.0f}", f"{batched / retention:.1f}"),
    ]  # fmt: skip


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgis", "both"], default="both")
    parser.add_argument("--days", type=int, default=3, help="days of pings loaded (>= 3)")
    parser.add_argument("--rows", type=int, default=50_000, help="pings a day")
    parser.add_argument("--batch", type=int, default=5000, help="rows per delete transaction")
    args = parser.parse_args()
    rows = for_backends(args.backend, lambda name, workdir: bench(name, args, workdir))
    print_table(("backend", "removes one day by", "rows", "s", "rows/s", "x faster"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
