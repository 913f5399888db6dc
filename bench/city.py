"""Election day in the city: 1,000 polling stations, 20 routes, 200 units reporting every 5 s.

For each backend it loads the generated city scenario (service/demo/city.py) into a fresh
database and measures, against a baseline measured in the same run where one applies:
  - ingest capacity with events on: a real `uvicorn` server (one worker) and many trackers
    posting single simulated pings as fast as it takes them, next to the same load with events
    off (PATROLI_EVENTS_ENABLED=false);
  - the server's CPU seconds per 1,000 pings (from /proc), events on and off;
  - event latency: ping POST -> the event it raised on /api/v1/stream (p50/p95/p99), next to
    ping POST -> its position on the stream;
  - /maps/live with 200 markers in headless Chromium: time until all markers are drawn, JS heap,
    and frame time while positions stream (next to the idle frame time);
  - a whole simulated day of 5 s fixes of the 200 units (bulk insert): coverage of one route and
    presence at the KPU office, next to merely reading the day's fixes (`eligible_fixes`);
  - the database size that day adds (pings; on PostGIS with pg_total_relation_size of every
    partition), and the events table after the run.

    .venv/bin/python bench/city.py                          # PostGIS, 10 s per load run
    .venv/bin/python bench/city.py --backend both --seconds 20 --hours 24
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import CHROMIUM, CHROMIUM_ARGS, for_backends, print_table  # type: ignore[import-not-found]  # noqa: E402
from ingest import (  # type: ignore[import-not-found]  # noqa: E402
    ADMIN_KEY,
    SERVER_PIDS,
    http_request,
    make_backend,
    run_load,
    uvicorn_server,
)

from service.analytics.positions import eligible_fixes  # noqa: E402
from service.analytics.presence import geofence_presence  # noqa: E402
from service.analytics.tracks import stored_route_coverage  # noqa: E402
from service.areas.features import get_route  # noqa: E402
from service.areas.index import corridor_from_row  # noqa: E402
from service.config import Settings  # noqa: E402
from service.demo.city import KPU_NAME, City, generate_city, simulate_city  # noqa: E402
from service.demo.run import seed  # noqa: E402
from service.demo.simulate import SimPing  # noqa: E402
from service.store.bulk import insert_pings  # noqa: E402
from service.store.db import Store  # noqa: E402
from service.store.migrate import upgrade  # noqa: E402
from service.store.models import Geofence, Unit  # noqa: E402
from service.window import Window  # noqa: E402

Row = tuple[str, ...]
CHUNK = 20_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 where /proc is not there)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def best(repeat: int, work: Callable[[], object]) -> float:
    """Fastest of `repeat` runs of work(), in seconds (after one warm-up run)."""
    work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def load_city(url: str, city: City) -> dict[str, str]:
    """Migrate, store the scenario as `patroli demo --scenario city` does; device secrets."""
    store = Store.from_url(url)
    if not store.is_sqlite:
        with store.engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    upgrade(store.engine)
    settings = Settings(_env_file=None, database_url=url, admin_key=ADMIN_KEY)  # type: ignore[call-arg]
    seed(store, city.scenario, settings, city.unit_routes)
    from service.areas import units

    secrets = {}
    with store.write() as session:
        for unit in session.scalars(select(Unit)).all():
            secrets[unit.device_id] = units.rotate_secret(session, unit.id)
    store.dispose()
    return secrets


class StreamClient(threading.Thread):
    """Reads /api/v1/stream; when each ping's position and each event arrived (by ping id)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/api/v1/stream?key={ADMIN_KEY}"
        self.positions: dict[int, float] = {}
        self.events: list[tuple[int, float]] = []
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.stream("GET", self.url, timeout=None) as response:
            self.ready.set()
            kind = ""
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    now = time.monotonic()
                    data = json.loads(line[5:])
                    if kind == "position":
                        self.positions[int(data["id"])] = now
                    elif isinstance(data, dict) and data.get("ping_id") is not None:
                        self.events.append((int(data["ping_id"]), now))


def timeline(city: City, start: datetime, seconds: float) -> list[SimPing]:
    """Every unit's simulated pings over [start, start + seconds), in time order."""
    pings = [p for part in simulate_city(city, start, seconds) for p in part]
    pings.sort(key=lambda p: (p.ts, p.device_id))
    return pings


def workload(
    pings: list[SimPing], secrets: dict[str, str], sent: dict[int, float], run: str
) -> Callable[[int], bytes]:
    """The n-th single-ping POST of the timeline, by its unit's own tracker key."""

    def make(n: int) -> bytes:
        p = pings[n % len(pings)]
        body = {
            "device_id": p.device_id,
            "ts": p.ts.isoformat(),
            "lat": p.lat,
            "lon": p.lon,
            "speed_mps": p.speed_mps,
            "heading": p.heading,
            "accuracy_m": p.accuracy_m,
            "battery": p.battery,
            "ping_id": f"{run}-{n}",
        }
        sent[n] = time.monotonic()
        auth = f"Authorization: Bearer {secrets[p.device_id]}\r\n"
        return http_request("POST", "/api/v1/pings", json.dumps(body).encode(), auth)

    return make


@dataclass
class IngestRun:
    """One load run's figures."""

    rate: float
    pings: int
    cpu_per_1000: float
    event_ms: list[float]
    position_ms: list[float]
    events: int


def ingest_run(
    url: str, secrets: dict[str, str], pings: list[SimPing], events: bool, args: Any
) -> IngestRun:
    """Drive the server with single pings for args.seconds; rate, CPU and stream latencies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROLI_")}
    env.update(
        PATROLI_DATABASE_URL=url,
        PATROLI_ADMIN_KEY=ADMIN_KEY,
        PATROLI_AUTO_MIGRATE="false",
        PATROLI_EVENTS_ENABLED=str(events).lower(),
        PYTHONPATH=str(ROOT),
    )
    run = "on" if events else "off"
    with uvicorn_server(["--factory", "service.app:create_app"], env, ROOT) as port:
        stream = StreamClient(port)
        stream.start()
        stream.ready.wait(10)
        time.sleep(0.5)
        pid = SERVER_PIDS[port]
        cpu0 = cpu_seconds(pid)
        sent: dict[int, float] = {}
        load = run_load(
            port,
            workload(pings, secrets, sent, run),
            connections=args.connections,
            seconds=args.seconds,
            limit=len(pings),
            count_accepted=True,
        )
        cpu = cpu_seconds(pid) - cpu0
        time.sleep(2.0)  # let the stream catch up
        stream.stop.set()
        if load.failures:
            print(f"{run}: {load.failures} failed requests", file=sys.stderr)
        ids = client_ids(url, run)
        position_ms = [
            (stream.positions[db] - sent[n]) * 1000
            for db, n in ids.items()
            if db in stream.positions
        ]
        event_ms = [(at - sent[ids[db]]) * 1000 for db, at in stream.events if db in ids]
        return IngestRun(
            load.rate,
            load.acknowledged,
            cpu / max(load.acknowledged, 1) * 1000,
            event_ms,
            position_ms,
            len(stream.events),
        )


def client_ids(url: str, run: str) -> dict[int, int]:
    """Stored ping id -> request number n, for the run's pings."""
    store = Store.from_url(url)
    with store.read() as session:
        rows = session.execute(
            text("SELECT id, client_ping_id FROM pings WHERE client_ping_id LIKE :p"),
            {"p": f"{run}-%"},
        ).all()
    store.dispose()
    return {int(db): int(cid.partition("-")[2]) for db, cid in rows}


def live_map(url: str, city: City, secrets: dict[str, str], seconds: float) -> dict[str, float]:
    """/maps/live in Chromium: all markers drawn (ms), JS heap (MB), frame times (ms)."""
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROLI_")}
    env.update(
        PATROLI_DATABASE_URL=url,
        PATROLI_ADMIN_KEY=ADMIN_KEY,
        PATROLI_AUTO_MIGRATE="false",
        PYTHONPATH=str(ROOT),
    )
    units = len(city.scenario.units)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)
    pings = timeline(city, start, 40 * 60.0)
    with uvicorn_server(["--factory", "service.app:create_app"], env, ROOT) as port:
        base = f"http://127.0.0.1:{port}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--enable-precise-memory-info"]
            )
            try:
                page = browser.new_page()
                page.route(
                    "**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort()
                )
                began = time.monotonic()
                page.goto(f"{base}/maps/live?key={ADMIN_KEY}", wait_until="commit")
                # The latest positions are stored before the page opens: all markers at once.
                page.wait_for_function(
                    f"() => document.querySelectorAll('.patroli-unit').length >= {units}",
                    timeout=120_000,
                )
                drawn_ms = (time.monotonic() - began) * 1000
                idle = frame_times(page, seconds)
                feeder = threading.Thread(
                    target=feed, args=(port, pings, secrets, seconds + 2.0), daemon=True
                )
                feeder.start()
                time.sleep(1.0)
                streaming = frame_times(page, seconds)
                feeder.join()
                heap = page.evaluate("() => performance.memory.usedJSHeapSize") / 1e6
                markers = page.locator(".patroli-unit").count()
            finally:
                browser.close()
    return {
        "drawn_ms": drawn_ms,
        "heap_mb": heap,
        "idle_p50": percentile(idle, 50),
        "idle_p95": percentile(idle, 95),
        "stream_p50": percentile(streaming, 50),
        "stream_p95": percentile(streaming, 95),
        "markers": float(markers),
    }


def frame_times(page: Any, seconds: float) -> list[float]:
    """Intervals between animation frames over `seconds` (ms)."""
    script = """(ms) => new Promise((done) => {
      const out = []; let last = performance.now(); const end = last + ms;
      function tick(now) { out.push(now - last); last = now;
        if (now < end) requestAnimationFrame(tick); else done(out); }
      requestAnimationFrame(tick);
    })"""
    return [float(v) for v in page.evaluate(script, seconds * 1000)]


def feed(port: int, pings: list[SimPing], secrets: dict[str, str], seconds: float) -> None:
    """Post the timeline's pings in 5 s rounds (every unit once per round), as trackers do."""
    cut = len(pings) // 2  # the first half is stored before the page opens

    async def main() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            end = time.monotonic() + seconds
            i = cut
            while time.monotonic() < end and i < len(pings):
                round_start = time.monotonic()
                batch = pings[i : i + len(secrets)]
                i += len(batch)
                await asyncio.gather(*(post_one(http, p, secrets) for p in batch))
                await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - round_start)))

    asyncio.run(main())


async def post_one(http: httpx.AsyncClient, p: SimPing, secrets: dict[str, str]) -> None:
    """One tracker's ping."""
    body = {"device_id": p.device_id, "ts": p.ts.isoformat(), "lat": p.lat, "lon": p.lon}
    headers = {"Authorization": f"Bearer {secrets[p.device_id]}"}
    await http.post("/api/v1/pings", json=body, headers=headers)


def preload(url: str, city: City, secrets: dict[str, str]) -> None:
    """Store the first half of the live map's timeline, so every unit has a latest position."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)
    pings = timeline(city, start, 40 * 60.0)
    first = pings[: len(pings) // 2]
    settings = Settings(_env_file=None, database_url=url, admin_key=ADMIN_KEY)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        for i in range(0, len(first), 1000):
            body = [
                {"device_id": p.device_id, "ts": p.ts.isoformat(), "lat": p.lat, "lon": p.lon}
                for p in first[i : i + 1000]
            ]
            c.post("/api/v1/pings", json=body).raise_for_status()


def table_bytes(store: Store, table: str) -> int:
    """Bytes of a table with its indexes (on PostGIS, every partition; SQLite: whole file)."""
    if store.is_sqlite:
        path = store.engine.url.database or ""
        return sum(p.stat().st_size for p in Path(path).parent.glob(Path(path).name + "*"))
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT pg_total_relation_size(CAST(:t AS regclass)) + COALESCE(("
                    "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                    "WHERE inhparent = CAST(:t AS regclass)), 0)"
                ),
                {"t": table},
            ).scalar_one()
        )


def load_day(store: Store, city: City, day: datetime, hours: float) -> int:
    """Bulk-insert `hours` of simulated 5 s fixes of every unit from `day`; rows stored."""
    with store.read() as session:
        unit_ids = {u.device_id: u.id for u in session.scalars(select(Unit)).all()}
    stored = 0
    for part in simulate_city(city, day, hours * 3600.0, seed=11):
        rows = [
            {
                "unit_id": unit_ids[p.device_id],
                "ts": p.ts,
                "received_at": p.ts,
                "lon": p.lon,
                "lat": p.lat,
                "speed_mps": p.speed_mps,
                "heading": p.heading,
                "accuracy_m": p.accuracy_m,
                "altitude_m": None,
                "battery": p.battery,
                "flags": 0,
                "source": "json",
                "client_ping_id": None,
                "attributes": None,
            }
            for p in part
        ]
        for i in range(0, len(rows), CHUNK):
            with store.write() as session:
                stored += len(insert_pings(session, rows[i : i + CHUNK]))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE" if store.is_sqlite else "VACUUM ANALYZE pings"))
    return stored


def day_queries(store: Store, city: City, url: str, window: Window, repeat: int) -> list[Row]:
    """Coverage of one route and presence at the KPU office vs reading the day's fixes."""
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    with store.read() as session:
        route_id = 1
        corridor = corridor_from_row(get_route(session, route_id))
        site_id = session.scalars(select(Geofence.id).where(Geofence.name == KPU_NAME)).one()
        t_read = best(repeat, lambda: eligible_fixes(session, window.start, window.end))
        t_cov = best(repeat, lambda: stored_route_coverage(session, corridor, window, 50.0, 60.0))
        t_pres = best(repeat, lambda: geofence_presence(session, site_id, window, 60.0, settings))
    return [
        ("read the day's fixes (eligible_fixes)", f"{t_read * 1e3:,.0f} ms", "1.00"),
        ("coverage of one route", f"{t_cov * 1e3:,.0f} ms", f"{t_cov / t_read:.2f}"),
        ("presence at the KPU office", f"{t_pres * 1e3:,.0f} ms", f"{t_pres / t_read:.2f}"),
    ]


def measure(name: str, args: argparse.Namespace, workdir: Path) -> list[Row]:
    """Every figure of one backend, as (backend, figure, value, baseline, ratio) rows."""
    city = generate_city()
    backend = make_backend(name, workdir)
    rows: list[Row] = []

    def add(figure: str, value: str, baseline: str = "", ratio: str = "") -> None:
        rows.append((name, figure, value, baseline, ratio))

    try:
        began = time.perf_counter()
        secrets = load_city(backend.url, city)
        print(f"{name}: scenario stored in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        now = datetime.now(UTC).replace(microsecond=0)
        span = 3 * 3600.0
        off = ingest_run(
            backend.url, secrets, timeline(city, now - timedelta(hours=8), span), False, args
        )
        on = ingest_run(
            backend.url, secrets, timeline(city, now - timedelta(hours=4.5), span), True, args
        )
        add(
            "ingest, single pings, events on",
            f"{on.rate:,.0f} pings/s",
            f"{off.rate:,.0f} (events off)",
            f"{on.rate / off.rate:.2f}",
        )
        add(
            "server CPU per 1,000 pings",
            f"{on.cpu_per_1000:.2f} s",
            f"{off.cpu_per_1000:.2f} s (events off)",
            f"{on.cpu_per_1000 / off.cpu_per_1000:.2f}",
        )
        pos50 = percentile(on.position_ms, 50)
        for q in (50, 95, 99):
            ev, pos = percentile(on.event_ms, q), percentile(on.position_ms, q)
            add(
                f"ping -> event on stream, p{q}",
                f"{ev:,.1f} ms",
                f"{pos:,.1f} ms (-> position)",
                f"{ev / pos:.2f}",
            )
        add("events raised during the run", f"{on.events:,}", f"{on.pings:,} pings")
        print(f"{name}: position p50 {pos50:.1f} ms", file=sys.stderr)

        if args.no_browser or not Path(CHROMIUM).exists():
            print(f"{name}: live map not measured", file=sys.stderr)
        else:
            preload(backend.url, city, secrets)
            m = live_map(backend.url, city, secrets, args.frame_seconds)
            add(
                "/maps/live: all 200 markers drawn",
                f"{m['drawn_ms']:,.0f} ms",
                f"{m['markers']:.0f} markers",
            )
            add("/maps/live: JS heap used", f"{m['heap_mb']:.1f} MB")
            for q in ("p50", "p95"):
                s, i = m[f"stream_{q}"], m[f"idle_{q}"]
                add(
                    f"/maps/live: frame time {q}, streaming",
                    f"{s:.1f} ms",
                    f"{i:.1f} ms (idle)",
                    f"{s / i:.2f}",
                )

        store = Store.from_url(backend.url)
        before = table_bytes(store, "pings")
        day = (now - timedelta(days=10)).replace(hour=0, minute=0, second=0)
        began = time.perf_counter()
        stored = load_day(store, city, day, args.hours)
        loaded_s = time.perf_counter() - began
        grown = table_bytes(store, "pings") - before
        window = Window(day, day + timedelta(hours=args.hours))
        add(
            f"day loaded ({args.hours:g} h x 200 units x 5 s)",
            f"{stored:,} fixes",
            f"{loaded_s:.0f} s",
        )
        for figure, value, ratio in day_queries(store, city, backend.url, window, args.repeat):
            add(figure, value, "read", ratio)
        per_day = grown * 24 / args.hours
        label = "pings + indexes" if not store.is_sqlite else "database file"
        add(
            f"size per day ({label})",
            f"{per_day / 1e6:,.0f} MB",
            f"{grown / max(stored, 1):.0f} B/fix",
        )
        if not store.is_sqlite:
            add("events table after the run", f"{table_bytes(store, 'events') / 1e6:,.1f} MB")
        store.dispose()
        return rows
    finally:
        backend.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgis", "both"], default="postgis")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--hours", type=float, default=24.0, help="hours of the simulated day")
    parser.add_argument("--frame-seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    rows = for_backends(args.backend, lambda name, tmp: measure(name, args, tmp))
    print_table(("backend", "figure", "value", "baseline (same run)", "ratio"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
