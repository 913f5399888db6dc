"""QGIS layers benchmark (PostGIS): what QGIS waits for, next to merely reading the pings.

Loads the coverage benchmark's data (as bench/coverage.py: 50 units patrolling a 20 km route every
5 s, and a critical site), ending now, so that "today" and the current shift hold real fixes,
and times in the same run:
  read                   eligible_fixes() of today so far: the floor;
  qgis_latest_positions  SELECT * of the view (one row per unit);
  qgis_tracks_today      SELECT * of the view (one line per unit through today's fixes);
  qgis_geofences         SELECT * of the view (today's presence at every geofence);
  refresh (coverage)     refresh_qgis(): the route's coverage over the current shift and the
                         table rewritten, as the scheduler does every PATROLI_QGIS_REFRESH_S;
  API coverage           the same route and window through stored_route_coverage (the API).
Each figure is the best of --repeat runs; the ratio is to the read time.

    .venv/bin/python bench/qgis.py
    .venv/bin/python bench/qgis.py --units 50 --hours 24 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import print_table  # type: ignore[import-not-found]  # noqa: E402
from dataset import backend_url, best, load  # type: ignore[import-not-found]  # noqa: E402

from service.analytics.positions import eligible_fixes  # noqa: E402
from service.analytics.qgis import current_shift, refresh_qgis  # noqa: E402
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
        with store.write() as session:
            session.execute(text(_STATES))
        print(f"loaded {stored:,} pings in {time.perf_counter() - started:.1f} s")
        settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        now = datetime.now(UTC)
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

        def refresh() -> object:
            with store.write() as session:
                return refresh_qgis(session, GeoCache().get(session), settings, now, force=True)

        t_refresh = best(args.repeat, refresh)
        hours = (now - shift.window.start).total_seconds() / 3600
        note = f"{shift.name} shift, {hours:.1f} h"
        rows.append(("refresh (coverage table)", f"{t_refresh * 1e3:,.0f}", "", note))
        rows.append(("API coverage, same window", f"{t_api * 1e3:,.0f}", "", note))
        store.dispose()
    print_table(("computation", "ms", "x read", ""), rows)
    print(f"refresh / API coverage: {t_refresh / t_api:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
