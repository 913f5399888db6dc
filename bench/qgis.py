"""QGIS layers benchmark (PostGIS): what QGIS waits for, next to merely reading the pings.

Loads the coverage benchmark's data (as bench/coverage.py: 50 units patrolling a 20 km route every
5 s, and a critical site), ending now, so that "today" and the current shift hold real fixes,
and stored in the order received (as a live table is), and times in the same run:
  read                   eligible_fixes() of today so far: the floor;
  qgis_latest_positions  SELECT * of the view (one row per unit);
  qgis_tracks_today      SELECT * of the view (one line per unit through today's fixes);
  qgis_geofences         SELECT * of the view (today's presence at every geofence);
  refresh, whole shift   refresh_qgis() with a fresh RunningCoverage: the route's coverage over
                         the current shift read in one go and the table rewritten (what a
                         process does at its first refresh of a shift);
  refresh, next minute   refresh_qgis() as the scheduler does every PATROLI_QGIS_REFRESH_S:
                         the same RunningCoverage again, after a minute of new pings from every
                         unit (the last minute's fixes again, a minute later);
  API coverage           the same route and window through stored_route_coverage (the API).
Each figure is the best of --repeat runs; the ratio is to the read time. The peak of Python's
traced memory during each refresh is printed beside it.

    .venv/bin/python bench/qgis.py
    .venv/bin/python bench/qgis.py --units 50 --hours 24 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

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

from service.analytics.positions import eligible_fixes  # noqa: E402
from service.analytics.qgis import current_shift, refresh_qgis  # noqa: E402
from service.analytics.running import RunningCoverage  # noqa: E402
from service.analytics.tracks import stored_route_coverage  # noqa: E402
from service.areas.features import get_route  # noqa: E402
from service.areas.index import GeoCache, corridor_from_row  # noqa: E402
from service.config import Settings  # noqa: E402
from service.store.db import Store  # noqa: E402
from service.window import Window  # noqa: E402

# Each unit's newest fix, as ingest keeps it (the bulk load writes pings only).
_STATES = """
INSERT INTO unit_states (unit_id, last_ping_id, last_ts, last_lon, last_lat, last_speed_mps,
                         last_flags, received_at)
SELECT DISTINCT ON (unit_id) unit_id, id, ts, lon, lat, speed_mps, flags, received_at
FROM pings ORDER BY unit_id, ts DESC, id DESC
"""


def peak_mb(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak traced MB) of one run of work()."""
    tracemalloc.start()
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return elapsed, peak


def main() -> int:
    """Load, time, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between pings")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC)
    start = now - timedelta(hours=args.hours)  # the load ends now
    with tempfile.TemporaryDirectory() as tmp, backend_url("postgis", Path(tmp)) as url:
        store = Store.from_url(url)
        started = time.perf_counter()
        route_id, stored = load(store, args.units, args.hours, args.interval, start)
        arrival_order(store)
        with store.write() as session:
            session.execute(text(_STATES))
        print(f"loaded {stored:,} pings in {time.perf_counter() - started:.1f} s")
        settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        now = start + timedelta(hours=args.hours)  # the load's end: the pings just before it
        shift = current_shift(now, settings)
        window = Window(shift.window.start, now)
        today = datetime.combine(now.astimezone(settings.tz).date(), datetime.min.time())
        day_from = today.replace(tzinfo=settings.tz)
        rows: list[tuple[str, ...]] = []
        with store.write() as session:
            refresh_qgis(session, GeoCache().get(session), settings, now, force=True)
        with store.read() as session:
            corridor = corridor_from_row(get_route(session, route_id))
            t_read = best(args.repeat, lambda: eligible_fixes(session, day_from, now))
            rows.append(("read today (eligible_fixes)", f"{t_read * 1e3:,.0f}", "1.00", ""))
            for view in ("qgis_latest_positions", "qgis_tracks_today", "qgis_geofences"):
                count = len(session.execute(text(f"SELECT * FROM {view}")).all())
                t = best(
                    args.repeat, lambda v=view: session.execute(text(f"SELECT * FROM {v}")).all()
                )
                rows.append((view, f"{t * 1e3:,.0f}", f"{t / t_read:.2f}", f"{count} rows"))
            t_api = best(
                args.repeat,
                lambda: stored_route_coverage(session, corridor, window, 50.0, 60.0),
            )

        def refresh(at: datetime = now, coverage: RunningCoverage | None = None) -> object:
            with store.write() as session:
                index = GeoCache().get(session)
                return refresh_qgis(session, index, settings, at, force=True, coverage=coverage)

        t_whole = best(args.repeat, refresh)
        _, mb_whole = peak_mb(refresh)
        coverage = RunningCoverage()
        refresh(now, coverage)
        minutes = 0

        def next_minute() -> object:
            nonlocal minutes
            minutes += 1
            more_pings(store, now, 60.0, timedelta(minutes=minutes))
            return refresh(now + timedelta(minutes=minutes), coverage)

        t_next = best(args.repeat, next_minute)
        _, mb_next = peak_mb(next_minute)
        hours = (now - shift.window.start).total_seconds() / 3600
        note = f"{shift.name} shift, {hours:.1f} h"
        rows.append(
            (
                "refresh, whole shift",
                f"{t_whole * 1e3:,.0f}",
                "",
                f"{note}; {mb_whole:,.0f} MB peak",
            )
        )
        rows.append(
            (
                "refresh, next minute",
                f"{t_next * 1e3:,.0f}",
                "",
                f"{args.units} units; {mb_next:,.1f} MB peak",
            )
        )
        rows.append(("API coverage, same window", f"{t_api * 1e3:,.0f}", "", note))
        store.dispose()
    print_table(("computation", "ms", "x read", ""), rows)
    print(f"refresh, whole shift / API coverage: {t_whole / t_api:.2f}")
    print(f"refresh, next minute / whole shift: {t_next / t_whole:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
