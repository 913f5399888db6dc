"""The benchmarks' data: throw-away databases, and a day of patrol fixes on a 20 km route.

Units go back and forth along a winding road east of Balikpapan's centre at about 8 m/s, with
off-route detours, loaded with the bulk insert (pings only; see each benchmark for more).
"""

from __future__ import annotations

import os
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

from service.areas.index import corridor_from_row
from service.geo.projection import LocalProjection
from service.store.bulk import insert_pings
from service.store.db import Store
from service.store.migrate import upgrade
from service.store.models import Geofence, PatrolRoute, Unit

PG_ADMIN_URL = os.environ.get(
    "PATROLI_BENCH_PG_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)
T0 = datetime(2024, 11, 26, 16, 0, tzinfo=UTC)  # midnight WITA
LON0, LAT0 = 116.8300, -1.2683
CHUNK = 50_000


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
    route: PatrolRoute,
    unit_id: int,
    hours: float,
    interval_s: float,
    seed: int,
    start: datetime = T0,
) -> Iterator[dict[str, Any]]:
    """One unit's pings from `start`: back and forth along the route at ~8 m/s, with off-route
    detours."""
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
        ts = start + timedelta(seconds=float(t[k]))
        yield {
            "unit_id": unit_id, "ts": ts, "received_at": ts, "lon": float(lon[k]),
            "lat": float(lat[k]), "speed_mps": float(speed[k]), "heading": None,
            "accuracy_m": 5.0, "altitude_m": None, "battery": None, "flags": 0,
            "source": "json", "client_ping_id": None, "attributes": None,
        }  # fmt: skip


def load(
    store: Store, units: int, hours: float, interval_s: float, start: datetime = T0
) -> tuple[int, int]:
    """Route, units and pings from `start`; returns (route id, pings stored)."""
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
        for row in unit_rows(route, unit_id, hours, interval_s, seed, start):
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


# The pings of the `:span` s before `:now` again, `:shift` later, received now.
_MORE = """
INSERT INTO pings (unit_id, ts, received_at, lon, lat, geom, speed_mps, heading, accuracy_m,
                   altitude_m, battery, flags, source)
SELECT unit_id, ts + :shift, clock_timestamp(), lon, lat, geom, speed_mps, heading, accuracy_m,
       altitude_m, battery, flags, source
FROM pings WHERE ts >= CAST(:now AS timestamptz) - make_interval(secs => :span) AND ts < :now
"""


def more_pings(store: Store, now: datetime, span_s: float, shift: timedelta) -> int:
    """Store the pings of the `span_s` before `now` again, `shift` later, as just received (as
    the next pings of the same units); the number stored. PostgreSQL only."""
    with store.write() as session:
        params = {"now": now, "span": span_s, "shift": shift}
        return int(session.execute(text(_MORE), params).rowcount)  # type: ignore[attr-defined]


def arrival_order(store: Store) -> None:
    """Rewrite the pings in the order they were received, as a live table holds them (`load`
    writes unit after unit), so that indexes relying on it (BRIN on received_at) work as live."""
    with store.write() as session:
        session.execute(text("CREATE TEMP TABLE arrived AS SELECT * FROM pings"))
        session.execute(text("TRUNCATE pings"))
        session.execute(text("INSERT INTO pings SELECT * FROM arrived ORDER BY received_at, id"))
        session.execute(text("DROP TABLE arrived"))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE pings"))


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
