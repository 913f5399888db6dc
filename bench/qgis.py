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
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import print_table  # type: ignore[import-not-found]  # noqa: E402

from service.analytics.positions import eligible_fixes  # noqa: E402
from service.analytics.qgis import current_shift, refresh_qgis  # noqa: E402
from service.analytics.tracks import stored_route_coverage  # noqa: E402
from service.areas.features import get_route  # noqa: E402
from service.areas.index import GeoCache, corridor_from_row  # noqa: E402
from service.config import Settings  # noqa: E402
from service.geo.projection import LocalProjection  # noqa: E402
from service.store.bulk import insert_pings  # noqa: E402
from service.store.db import Store  # noqa: E402
from service.store.migrate import upgrade  # noqa: E402
from service.store.models import Geofence, PatrolRoute, Unit  # noqa: E402
from service.window import Window  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "PATROLI_BENCH_PG_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)
LON0, LAT0 = 116.8300, -1.2683
CHUNK = 50_000
T0 = datetime(2024, 11, 26, 16, 0, tzinfo=UTC)  # set to now - hours before loading

# The data of bench/coverage.py: a winding 20 km route, units back and forth along it.


def route_line(length_m: float = 20_000.0, vertices: int = 400) -> LineString:
    """A winding 20 km road east of Balikpapan's centre, in WGS84."""
    projection = LocalProjection.for_point(LON0, LAT0)
    x0, y0 = projection.xy(np.array([LON0]), np.array([LAT0]))
    s = np.linspace(0.0, 1.0, vertices)
    x = s * 0.9 * length_m
    y = 600.0 * np.sin(s * 9.0 * np.pi) + 150.0 * np.sin(s * 37.0 * np.pi)
    metric = LineString(np.column_stack((x, y)))
    x, y = x * length_m / metric.length, y * length_m / metric.length
    lon, lat = projection.lonlat(x + x0[0], y + y0[0])
    return LineString(np.column_stack((lon, lat)))


def unit_rows(
    route: PatrolRoute, unit_id: int, hours: float, interval_s: float, seed: int
) -> Iterator[dict[str, Any]]:
    """One unit's pings: back and forth along the route at ~8 m/s, with off-route detours."""
    rng = np.random.default_rng(seed)
    corridor = corridor_from_row(route)
    length = corridor.length_m
    n = int(hours * 3600 / interval_s)
    t = np.arange(n) * interval_s + rng.uniform(0, interval_s)
    speed = np.clip(rng.normal(8.0, 2.0, n), 0.0, 15.0)
    travelled = rng.uniform(0, 2 * length) + np.cumsum(speed * interval_s)
    chainage = length - np.abs(np.mod(travelled, 2 * length) - length)
    points = shapely.line_interpolate_point(corridor.metric_line, chainage)
    xy = shapely.get_coordinates(points)
    lateral = rng.normal(0.0, 6.0, (n, 2))
    detour = (np.floor(t / 1800.0) % 10 == unit_id % 10) & (np.mod(t, 1800.0) < 300.0)
    lateral[detour] += 150.0
    lon, lat = corridor.projection.lonlat(xy[:, 0] + lateral[:, 0], xy[:, 1] + lateral[:, 1])
    for k in range(n):
        ts = T0 + timedelta(seconds=float(t[k]))
        yield {
            "unit_id": unit_id, "ts": ts, "received_at": ts, "lon": float(lon[k]),
            "lat": float(lat[k]), "speed_mps": float(speed[k]), "heading": None,
            "accuracy_m": 5.0, "altitude_m": None, "battery": None, "flags": 0,
            "source": "json", "client_ping_id": None, "attributes": None,
        }  # fmt: skip


def load(store: Store, units: int, hours: float, interval_s: float) -> tuple[int, int]:
    """Route, units and pings; returns (route id, pings stored)."""
    with store.write() as session:
        route = PatrolRoute(name="bench", corridor_m=30.0, closed=False, geom=route_line())
        unit_rows_ = [Unit(name=f"Unit {k}", device_id=f"bench-{k}") for k in range(units)]
        site_lon, site_lat = route.geom.interpolate(0.1, normalized=True).coords[0]
        site = Geofence(
            name="Kantor KPU", kind="critical_site", geom=Point(site_lon, site_lat), radius_m=150.0
        )
        session.add_all([route, site, *unit_rows_])
        session.flush()
        route_id, unit_ids = route.id, [u.id for u in unit_rows_]
    stored = 0
    for seed, unit_id in enumerate(unit_ids):
        batch: list[dict[str, Any]] = []
        for row in unit_rows(route, unit_id, hours, interval_s, seed):
            batch.append(row)
            if len(batch) == CHUNK:
                with store.write() as session:
                    stored += len(insert_pings(session, batch))
                batch = []
        if batch:
            with store.write() as session:
                stored += len(insert_pings(session, batch))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE pings" if not store.is_sqlite else "ANALYZE"))
    return route_id, stored


def best(repeat: int, work: Callable[[], object]) -> float:
    """Fastest of `repeat` runs of work(), in seconds (after one warm-up run)."""
    work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


@contextmanager
def backend_url(name: str, workdir: Path) -> Iterator[str]:
    """A throw-away database URL on the backend, migrated to head."""
    if name == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        store = Store.from_url(url)
        upgrade(store.engine)
        store.dispose()
        yield url
        return
    db = f"patroli_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    url = make_url(PG_ADMIN_URL).set(database=db).render_as_string(hide_password=False)
    try:
        store = Store.from_url(url)
        with store.engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        upgrade(store.engine)
        store.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


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
    global T0
    T0 = now - timedelta(hours=args.hours)  # the load ends now
    with tempfile.TemporaryDirectory() as tmp, backend_url("postgis", Path(tmp)) as url:
        store = Store.from_url(url)
        started = time.perf_counter()
        route_id, stored = load(store, args.units, args.hours, args.interval)
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
