"""Overdue check benchmark (PostGIS): a pass of the scheduler's revisit check, before and now.

Loads the coverage benchmark's data (as bench/coverage.py: 50 units patrolling a 20 km route every
5 s, and a critical site), ending now and stored in the order received (as a live table is),
gives the route and the site a revisit_s (an hour by default: the check looks back
2 x 1 h + PATROLI_MAX_GAP_S), and times in the same run:
  read, row tuples       the look-back window's eligible fixes read as the driver's row
                         tuples, then made arrays (how every analytics read went before);
  read, binary COPY      eligible_fixes(): the same fixes through binary COPY into arrays;
  pass, window read      what each pass did before: read the whole look-back window (as row
                         tuples) and compute the route's coverage and the site's last
                         presence from it;
  pass, first            read_visits() with a fresh RunningCoverage (a process's first pass);
  pass, next 30 s        read_visits() as the scheduler calls it every 30 s: the same
                         RunningCoverage again, after 30 s of new pings from every unit.
Each figure is the best of --repeat runs; the ratio is to the window-read pass. The peak of
Python's traced memory during one run is printed beside it.

    .venv/bin/python bench/overdue.py
    .venv/bin/python bench/overdue.py --units 50 --hours 6 --revisit 3600 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import print_table  # type: ignore[import-not-found]  # noqa: E402
from dataset import (  # type: ignore[import-not-found]  # noqa: E402
    arrival_order,
    backend_url,
    best,
    load,
    more_pings,
)
from qgis import peak_mb as measure  # type: ignore[import-not-found]  # noqa: E402

from service.analytics.coverage import compute_coverage  # noqa: E402
from service.analytics.positions import (  # noqa: E402
    Fixes,
    eligible_fixes,
    eligible_fixes_query,
)
from service.analytics.running import RunningCoverage  # noqa: E402
from service.areas.index import GeoCache  # noqa: E402
from service.config import Settings  # noqa: E402
from service.events.overdue import lookback_start, read_visits  # noqa: E402
from service.store.db import Store  # noqa: E402
from service.window import Window  # noqa: E402


def main() -> int:
    """Load, time, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between pings")
    parser.add_argument("--revisit", type=float, default=3600.0, help="revisit_s of both places")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    start = datetime.now(UTC) - timedelta(hours=args.hours)  # the load ends now
    with tempfile.TemporaryDirectory() as tmp, backend_url("postgis", Path(tmp)) as url:
        store = Store.from_url(url)
        started = time.perf_counter()
        _, stored = load(store, args.units, args.hours, args.interval, start)
        arrival_order(store)
        with store.write() as session:
            session.execute(text("UPDATE patrol_routes SET revisit_s = :r"), {"r": args.revisit})
            session.execute(text("UPDATE geofences SET revisit_s = :r"), {"r": args.revisit})
        print(f"loaded {stored:,} pings in {time.perf_counter() - started:.1f} s")
        settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        now = start + timedelta(hours=args.hours)  # the load's end: the pings just before it
        with store.read() as session:
            index = GeoCache().get(session)
        window_from = lookback_start(index, settings, now)
        assert window_from is not None

        def read_tuples() -> Fixes:
            with store.read() as session:
                result = session.connection().execute(eligible_fixes_query(window_from, now))
                rows = result.cursor.fetchall() if result.cursor is not None else []
                arr = np.array(rows, dtype=np.float64)
            return Fixes(arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2], arr[:, 3])

        def read_copy() -> Fixes:
            with store.read() as session:
                return eligible_fixes(session, window_from, now)

        def window_pass() -> object:
            fixes = read_tuples()
            window = Window(window_from, now)
            for r in index.routes:
                compute_coverage(r.corridor, fixes, window, settings.segment_m, settings.max_gap_s)
            for f in index.fences:
                inside = f.fence.contains_many(fixes.lon, fixes.lat)
                _ = fixes.t[inside].max() if inside.any() else None
            return None

        def first_pass() -> object:
            with store.read() as session:
                return read_visits(session, index, settings, now, RunningCoverage())

        running = RunningCoverage()
        with store.read() as session:
            read_visits(session, index, settings, now, running)
        passes, added = 0, []

        def next_pass(traced: bool = False) -> tuple[float, float]:
            """30 s more pings stored (untimed), then the pass: (seconds, peak MB if traced)."""
            nonlocal passes
            passes += 1
            shift = timedelta(seconds=30 * passes)
            added.append(more_pings(store, now, 30.0, shift))
            with store.read() as session:
                work = lambda: read_visits(session, index, settings, now + shift, running)  # noqa: E731
                if traced:
                    return measure(work)
                began = time.perf_counter()
                work()
                return time.perf_counter() - began, 0.0

        fixes = len(read_copy().t)
        rows: list[tuple[str, ...]] = []
        timings = [
            ("read, row tuples", read_tuples),
            ("read, binary COPY (eligible_fixes)", read_copy),
            ("pass, window read (before)", window_pass),
            ("pass, first (fresh RunningCoverage)", first_pass),
            ("pass, next 30 s (kept RunningCoverage)", next_pass),
        ]
        base = None
        for name, work in timings:
            if work is next_pass:
                t = min(next_pass()[0] for _ in range(args.repeat + 1))
                mb = next_pass(traced=True)[1]
            else:
                t = best(args.repeat, work)
                _, mb = measure(work)
            if name.startswith("pass, window"):
                base = t
            rows.append((name, f"{t * 1e3:,.1f}", f"{mb:,.1f}", t))  # type: ignore[arg-type]
        assert base is not None
        store.dispose()
    print(f"look-back {2 * args.revisit + settings.max_gap_s:,.0f} s: {fixes:,} fixes")
    print(f"each next pass: {min(added):,} to {max(added):,} new fixes")
    print_table(
        ("computation", "ms", "peak MB", "x window pass"),
        [(n, ms, mb, f"{t / base:.3f}") for n, ms, mb, t in rows],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
