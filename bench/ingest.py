"""Ingest benchmark: Patroli's ping endpoints against the bare-endpoint and raw-COPY ceilings.

Runs, on SQLite and on PostGIS, against real uvicorn servers (one worker each):
  (a) single-ping requests from many concurrent simulated trackers: JSON POST /api/v1/pings and
      OsmAnd GET /api/v1/osmand, next to a bare FastAPI endpoint doing no work;
  (b) 1,000-ping JSON batches, next to the bare endpoint receiving the same bodies and a raw
      bulk insert of the same rows (COPY on PostGIS, executemany on SQLite).
After each run it checks that every acknowledged ping is stored.

    .venv/bin/python bench/ingest.py                     # both backends, defaults
    .venv/bin/python bench/ingest.py --backend postgis --seconds 20 --connections 64
    PATROLI_BENCH_PG_URL=postgresql+psycopg://... .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import for_backends, print_table  # type: ignore[import-not-found]  # noqa: E402

from service.store.db import make_engine  # noqa: E402
from service.store.migrate import upgrade  # noqa: E402

ADMIN_KEY = "bench-admin-key-" + uuid.uuid4().hex
PG_ADMIN_URL = os.environ.get(
    "PATROLI_BENCH_PG_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)
# Device times start four years back (whole hour), so every fix of a run, however long, lies in
# the valid range of fix times (never more than a day ahead of the server clock).
T0 = (datetime.now(UTC) - timedelta(days=4 * 365)).replace(minute=0, second=0, microsecond=0)
LAT0, LON0 = -1.2683, 116.8300

BARE_APP = """
from fastapi import FastAPI, Request, Response
app = FastAPI()

@app.post("/bare")
async def bare_post(request: Request) -> Response:
    await request.body()
    return Response(b'{"accepted":1}', media_type="application/json")

@app.get("/bare")
async def bare_get() -> Response:
    return Response(b"")
"""


# ---- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PIDS: dict[int, int] = {}  # port -> server process id (for its memory)


def rss_mb(port: int) -> float:
    """Resident memory of the server on `port` (MB; 0 where /proc is not there)."""
    try:
        status = Path(f"/proc/{SERVER_PIDS[port]}/status").read_text()
    except (KeyError, OSError):
        return 0.0
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), "0")
    return int(kb) / 1024


@contextmanager
def uvicorn_server(
    target: list[str], env: dict[str, str], cwd: Path, workers: int = 1
) -> Iterator[int]:
    """Run `uvicorn <target>` (`workers` processes) and yield its port once it answers."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd)
    SERVER_PIDS[port] = proc.pid
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server {target} did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            print(f"server {target} did not stop in 30 s; killed", file=sys.stderr)
            proc.kill()
            proc.wait()


# ---- a lean HTTP/1.1 load generator (same client for every figure, so ratios are fair) ----


@dataclass
class Load:
    """Result of a load run."""

    requests: int
    seconds: float
    failures: int
    acknowledged: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def _worker(
    port: int,
    make: Callable[[int], bytes],
    counter: list[int],
    stop_at: float,
    limit: int | None,
    result: dict[str, int],
    count_accepted: bool,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at and (limit is None or counter[0] < limit):
            n = counter[0]
            counter[0] += 1
            writer.write(make(n))
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length) if length else b""
            status = int(status_line.split()[1])
            result["requests"] += 1
            if status != 200:
                result["failures"] += 1
                if result["failures"] == 1:
                    print(f"first error: {status} {body[:300]!r}", file=sys.stderr)
            elif count_accepted:
                result["acknowledged"] += json.loads(body)["accepted"] if body else 1
    finally:
        writer.close()


def run_load(
    port: int,
    make: Callable[[int], bytes],
    *,
    connections: int,
    seconds: float,
    limit: int | None = None,
    count_accepted: bool = False,
) -> Load:
    """Drive `connections` keep-alive connections for `seconds` (or `limit` requests)."""

    async def main() -> Load:
        result = {"requests": 0, "failures": 0, "acknowledged": 0}
        counter = [0]
        began = time.monotonic()
        stop_at = began + seconds
        await asyncio.gather(
            *(
                _worker(port, make, counter, stop_at, limit, result, count_accepted)
                for _ in range(connections)
            )
        )
        return Load(
            result["requests"], time.monotonic() - began, result["failures"], result["acknowledged"]
        )

    return asyncio.run(main())


def warm_up(port: int, make: Callable[[int], bytes], units: int, connections: int) -> None:
    """20 pings of every unit, dated before the measured run's, before measuring: a tracker's
    first request (its key not yet known to the worker) takes the slower path that looks the
    key up; later ones do not."""
    ahead = units * 20
    run_load(port, lambda n: make(n - ahead), connections=connections, seconds=60, limit=ahead)


def http_request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


# ---- workload ------------------------------------------------------------------------------


def fix(unit: int, n: int) -> tuple[str, float, float, datetime]:
    """The n-th fix of a unit: device id, lat, lon, time (5 s apart; riding 5.5 m per fix
    back and forth along an 11 km street)."""
    rng = random.Random(unit * 1_000_003 + n)
    step = n % 4000
    along = step if step < 2000 else 4000 - step
    lat = LAT0 + (unit % 50) * 0.001 + rng.uniform(-2e-5, 2e-5)
    lon = LON0 + along * 5e-5 + rng.uniform(-2e-5, 2e-5)
    return f"bench-{unit:04d}", lat, lon, T0 + timedelta(seconds=n * 5)


def ping_json(unit: int, n: int) -> dict[str, object]:
    device, lat, lon, ts = fix(unit, n)
    return {
        "device_id": device,
        "lat": lat,
        "lon": lon,
        "ts": ts.isoformat(),
        "speed_mps": 8.0,
        "accuracy_m": 5.0,
    }


@dataclass
class Backend:
    """A database for one benchmark run."""

    name: str
    url: str
    drop: Callable[[], None]


def make_backend(name: str, workdir: Path) -> Backend:
    if name == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        return Backend(
            name,
            url,
            lambda: [p.unlink(missing_ok=True) for p in path.parent.glob(path.name + "*")] and None,
        )
    db = f"patroli_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    url = make_url(PG_ADMIN_URL).set(database=db).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()

    return Backend(name, url, drop)


def prepare(url: str, units: int) -> dict[str, str]:
    """Migrate, register units, return their device secrets."""
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    upgrade(engine)
    engine.dispose()
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    settings = Settings(_env_file=None, database_url=url, admin_key=ADMIN_KEY)  # type: ignore[call-arg]
    secrets = {}
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        route = {
            "type": "Feature",
            "properties": {"name": "Bench", "corridor_m": 30},
            "geometry": {"type": "LineString", "coordinates": [[LON0, LAT0], [LON0 + 0.2, LAT0]]},
        }
        c.post("/api/v1/patrol-routes", json=route).raise_for_status()
        fence = {
            "type": "Feature",
            "properties": {"name": "KPU", "radius_m": 150},
            "geometry": {"type": "Point", "coordinates": [LON0 + 0.004, LAT0]},
        }
        c.post("/api/v1/geofences", json=fence).raise_for_status()
        for u in range(units):
            r = c.post("/api/v1/units", json={"name": f"Unit {u}", "device_id": f"bench-{u:04d}"})
            secrets[f"bench-{u:04d}"] = r.json()["device_secret"]
    return secrets


def stored_pings(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM pings")).scalar_one())
    engine.dispose()
    return count


def raw_insert_rate(url: str, rows: list[dict[str, object]]) -> float:
    """Rows/s of a raw bulk insert of the same rows into a copy of the pings table."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS raw_pings"))
            if engine.dialect.name == "postgresql":
                conn.execute(text("CREATE TABLE raw_pings (LIKE pings INCLUDING ALL)"))
            else:
                conn.execute(text("CREATE TABLE raw_pings AS SELECT * FROM pings WHERE 0"))
        cols = (
            "unit_id",
            "ts",
            "received_at",
            "lon",
            "lat",
            "geom",
            "speed_mps",
            "accuracy_m",
            "flags",
            "source",
        )
        began = time.perf_counter()
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                with cur.copy(f"COPY raw_pings ({', '.join(cols)}) FROM STDIN") as copy:
                    for r in rows:
                        copy.write_row([r[c] for c in cols])
                raw.commit()
            finally:
                raw.close()
        else:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"INSERT INTO raw_pings ({', '.join(cols)}) VALUES "
                        f"({', '.join(':' + c for c in cols)})"
                    ),
                    rows,
                )
        elapsed = time.perf_counter() - began
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE raw_pings"))
        return len(rows) / elapsed
    finally:
        engine.dispose()


def raw_rows(n: int, postgis: bool) -> list[dict[str, object]]:
    """Rows like the ones ingest writes; geometry as hex EWKB (COPY) or WKB (SQLite)."""
    import shapely

    rows = []
    now = datetime.now(UTC)
    for i in range(n):
        _, lat, lon, ts = fix(i % 200, i // 200 + 100_000)
        point = shapely.points(lon, lat)
        geom = (
            shapely.to_wkb(shapely.set_srid(point, 4326), hex=True, include_srid=True)
            if postgis
            else shapely.to_wkb(point)
        )
        rows.append(
            {
                "unit_id": i % 200 + 1,
                "ts": ts if postgis else ts.replace(tzinfo=None),
                "received_at": now if postgis else now.replace(tzinfo=None),
                "lon": lon,
                "lat": lat,
                "geom": geom,
                "speed_mps": 8.0,
                "accuracy_m": 5.0,
                "flags": 0,
                "source": "raw",
            }
        )
    return rows


# ---- the benchmark -------------------------------------------------------------------------


def bench_backend(name: str, args: argparse.Namespace, workdir: Path) -> list[tuple[str, ...]]:
    backend = make_backend(name, workdir)
    table: list[tuple[str, ...]] = []
    try:
        secrets = prepare(backend.url, args.units)
        devices = list(secrets)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATROLI_")}
        env.update(
            PATROLI_DATABASE_URL=backend.url,
            PATROLI_ADMIN_KEY=ADMIN_KEY,
            PATROLI_AUTO_MIGRATE="false",
            PYTHONPATH=str(ROOT),
        )
        bare_file = workdir / "bare_app.py"
        bare_file.write_text(BARE_APP)
        auth = f"Authorization: Bearer {ADMIN_KEY}\r\n"
        conns = args.connections

        def single_json(n: int) -> bytes:
            unit = n % len(devices)
            body = json.dumps(ping_json(unit, n // len(devices))).encode()
            key = secrets[devices[unit]]
            return http_request("POST", "/api/v1/pings", body, f"Authorization: Bearer {key}\r\n")

        offset = 10_000_000  # OsmAnd fixes come later in device time than the JSON ones

        def osmand(n: int) -> bytes:
            unit = n % len(devices)
            device, lat, lon, ts = fix(unit, offset + n // len(devices))
            q = (
                f"/api/v1/osmand?id={device}&lat={lat:.7f}&lon={lon:.7f}"
                f"&timestamp={int(ts.timestamp())}&speed=15&key={secrets[device]}"
            )
            return http_request("GET", q)

        batch_offset = 20_000_000

        def batch(n: int, path: str = "/api/v1/pings") -> bytes:
            pings = [ping_json(u, batch_offset + n * 5 + k) for k in range(5) for u in range(200)]
            return http_request("POST", path, json.dumps(pings).encode(), auth)

        brief_offset = 1_000_000  # batch numbers of the brief run (its own device times)

        def brief_batch(n: int) -> bytes:
            return batch(brief_offset + n, "/api/v1/pings?brief=true")

        bare_single = http_request("POST", "/bare", json.dumps(ping_json(0, 0)).encode())
        bare_batch_body = batch(0).split(b"\r\n\r\n", 1)[1]
        bare_batch = http_request("POST", "/bare", bare_batch_body)

        with uvicorn_server(["bare_app:app"], env, workdir) as bare_port:
            bare_a = run_load(
                bare_port, lambda n: bare_single, connections=conns, seconds=args.seconds
            )
            bare_get = run_load(
                bare_port,
                lambda n: http_request("GET", "/bare"),
                connections=conns,
                seconds=args.seconds,
            )
            bare_b = run_load(bare_port, lambda n: bare_batch, connections=4, seconds=args.seconds)

        with uvicorn_server(["--factory", "service.app:create_app"], env, ROOT) as port:
            rss = [rss_mb(port)]
            warm_up(port, single_json, len(devices), conns)
            before = stored_pings(backend.url)
            a_json = run_load(
                port, single_json, connections=conns, seconds=args.seconds, count_accepted=True
            )
            a_json_stored = stored_pings(backend.url) - before
            before = stored_pings(backend.url)
            a_osm = run_load(port, osmand, connections=conns, seconds=args.seconds)
            a_osm_stored = stored_pings(backend.url) - before
            a_osm.acknowledged = a_osm.requests - a_osm.failures
            before = stored_pings(backend.url)
            b = run_load(port, batch, connections=4, seconds=args.seconds, count_accepted=True)
            b_stored = stored_pings(backend.url) - before
            before = stored_pings(backend.url)
            bb = run_load(
                port, brief_batch, connections=4, seconds=args.seconds, count_accepted=True
            )
            bb_stored = stored_pings(backend.url) - before
            rss.append(rss_mb(port))
            print(
                f"{name}: server memory (RSS) {rss[0]:,.0f} MB before the load runs, "
                f"{rss[1]:,.0f} MB after (a) and (b)"
            )
        scaling: list[tuple[int, Load, int]] = []
        # Several workers need PostgreSQL (SQLite allows one writer process).
        for workers in args.workers if name == "postgis" else []:
            # Own device times per run: a later run's fixes never look late or duplicate.
            base = 2_000_000 + workers * 1_000_000

            def single_later(n: int, base: int = base) -> bytes:
                return single_json(n + base * len(devices))

            with uvicorn_server(
                ["--factory", "service.app:create_app"], env, ROOT, workers=workers
            ) as port:
                warm_up(port, single_later, len(devices), conns)
                before = stored_pings(backend.url)
                load = run_load(
                    port, single_later, connections=conns, seconds=args.seconds, count_accepted=True
                )
                scaling.append((workers, load, stored_pings(backend.url) - before))

        raw = raw_insert_rate(backend.url, raw_rows(20_000, postgis=name == "postgis"))
        raw_name = "COPY" if name == "postgis" else "executemany"

        def row(
            label: str,
            value: float,
            unit: str,
            ceiling: float,
            ceil_label: str,
            load: Load | None,
            stored: int | None,
        ) -> tuple[str, ...]:
            check = (
                ""
                if load is None
                else (
                    f"{load.acknowledged} = {stored}"
                    if load.acknowledged == stored
                    else f"LOST {load.acknowledged} != {stored}"
                )
            )
            fails = "" if load is None else str(load.failures)
            return (
                name,
                label,
                f"{value:,.0f} {unit}",
                f"{ceiling:,.0f} {unit}",
                ceil_label,
                f"{value / ceiling:.0%}",
                fails,
                check,
            )

        table.append(
            row(
                "(a) JSON POST, 1 ping",
                a_json.rate,
                "req/s",
                bare_a.rate,
                "bare POST",
                a_json,
                a_json_stored,
            )
        )
        table.append(
            row(
                "(a) OsmAnd GET, 1 ping",
                a_osm.rate,
                "req/s",
                bare_get.rate,
                "bare GET",
                a_osm,
                a_osm_stored,
            )
        )
        b_pings = b.acknowledged / b.seconds
        table.append(
            row(
                "(b) 1000-ping batches",
                b_pings,
                "pings/s",
                bare_b.rate * 1000,
                "bare POST",
                b,
                b_stored,
            )
        )
        table.append(
            row("(b) 1000-ping batches", b_pings, "pings/s", raw, f"raw {raw_name}", None, None)
        )
        bb_pings = bb.acknowledged / bb.seconds
        table.append(
            row(
                "(b) 1000-ping batches, brief",
                bb_pings,
                "pings/s",
                raw,
                f"raw {raw_name}",
                bb,
                bb_stored,
            )
        )
        for workers, load, stored in scaling:
            first_workers, first, _ = scaling[0]
            table.append(
                row(
                    f"(c) JSON POST, 1 ping, {workers} worker(s)",
                    load.rate,
                    "req/s",
                    first.rate,
                    f"(c), {first_workers} worker(s)",
                    load,
                    stored,
                )
            )
    finally:
        backend.drop()
    return table


def print_before_after(before: list[dict[str, str]], rows: list[tuple[str, ...]]) -> None:
    """This run's figures and ratios next to a saved run's, workload by workload."""
    saved = {(b["backend"], b["workload"], b["ceiling is"]): b for b in before}
    table = []
    for r in rows:
        old = saved.get((r[0], r[1], r[4]))
        table.append(
            (
                r[0],
                r[1],
                r[4],
                old["patroli"] if old else "-",
                old["ratio"] if old else "-",
                r[2],
                r[5],
            )
        )
    print_table(("backend", "workload", "ceiling is", "before", "ratio", "after", "ratio"), table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgis", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load run")
    parser.add_argument("--connections", type=int, default=64, help="concurrent trackers")
    parser.add_argument("--units", type=int, default=200, help="simulated tracker units")
    parser.add_argument(
        "--workers",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[1, 2],
        help="(c): `patroli serve --workers` counts to run the single-ping load on, e.g. 1,2 "
        "(empty: skip)",
    )
    parser.add_argument("--save", type=Path, help="write the figures to this JSON file")
    parser.add_argument(
        "--compare", type=Path, help="a file from --save: shown as 'before' next to this run"
    )
    args = parser.parse_args()
    rows = for_backends(args.backend, lambda name, tmp: bench_backend(name, args, tmp))
    header = (
        "backend",
        "workload",
        "patroli",
        "ceiling",
        "ceiling is",
        "ratio",
        "errors",
        "acknowledged = stored",
    )
    print_table(header, rows)
    if args.save:
        args.save.write_text(json.dumps([dict(zip(header, r, strict=True)) for r in rows]))
    if args.compare:
        print()
        print_before_after(json.loads(args.compare.read_text()), rows)
    lost = any("LOST" in r[-1] for r in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
