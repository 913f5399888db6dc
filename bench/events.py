"""Live-event benchmark: ping → SSE delivery latency under load, and what events cost ingest.

For each backend it starts a real uvicorn server (one worker), keeps a live-stream client
connected to /api/v1/stream, and drives many concurrent trackers posting single pings that cross
a geofence and leave their patrol route now and then. It prints:
  - ping → SSE latency (time from sending a ping to receiving it on the stream): p50/p95/p99;
  - ingest throughput with live events evaluated, next to the same run with events disabled
    (PATROLI_EVENTS_ENABLED=false), and their ratio;
  - how many events the run produced.

    .venv/bin/python bench/events.py                  # both backends
    .venv/bin/python bench/events.py --backend postgis --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import for_backends, print_table  # type: ignore[import-not-found]  # noqa: E402
from ingest import (  # type: ignore[import-not-found]  # noqa: E402
    ADMIN_KEY,
    LAT0,
    LON0,
    T0,
    http_request,
    make_backend,
    prepare,
    run_load,
    uvicorn_server,
)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class StreamClient(threading.Thread):
    """Reads /api/v1/stream and records when each ping id arrived."""

    def __init__(self, port: int, key: str) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/api/v1/stream?key={key}"
        self.arrivals: dict[int, float] = {}
        self.events = 0
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
                    data = json.loads(line[5:])
                    now = time.monotonic()
                    if kind == "position":
                        self.arrivals[int(data["id"])] = now
                    else:
                        self.events += 1


def workload(devices: list[str], secrets: dict[str, str], sent: dict[int, float], run: int):  # type: ignore[no-untyped-def]
    """Single-ping POSTs; every unit rides east along the route, now and then 80 m off it.

    Each run gets its own device times and ping ids, so no ping of one run is a duplicate of
    another's.
    """
    offset = 5_000_000 + run * 2_000_000

    def make(n: int) -> bytes:
        unit = n % len(devices)
        step = n // len(devices)
        lat = LAT0 + (0.0008 if step % 40 >= 30 else 0.0)  # 10 of every 40 fixes off route
        lon = LON0 + (step % 2000) * 5e-5
        ts = T0.timestamp() + offset + step * 5
        body = json.dumps(
            {
                "device_id": devices[unit],
                "lat": lat,
                "lon": lon,
                "ts": ts,
                "speed_mps": 8.0,
                "ping_id": f"{run}-{n}",
            }
        ).encode()
        sent[n] = time.monotonic()
        key = secrets[devices[unit]]
        return http_request("POST", "/api/v1/pings", body, f"Authorization: Bearer {key}\r\n")

    return make


def measure(name: str, args: argparse.Namespace, workdir: Path) -> list[tuple[str, ...]]:
    backend = make_backend(name, workdir)
    try:
        secrets = prepare(backend.url, args.units)
        devices = list(secrets)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("PATROLI_")}
        base_env.update(
            PATROLI_DATABASE_URL=backend.url,
            PATROLI_ADMIN_KEY=ADMIN_KEY,
            PATROLI_AUTO_MIGRATE="false",
            PYTHONPATH=str(ROOT),
        )
        results: dict[str, float] = {}
        latencies: list[float] = []
        events = 0
        for enabled in (False, True):
            env = {**base_env, "PATROLI_EVENTS_ENABLED": str(enabled).lower()}
            with uvicorn_server(["--factory", "service.app:create_app"], env, ROOT) as port:
                # Assign every unit to the route so off_route/on_route fire.
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                ) as http:
                    for uid in range(1, len(devices) + 1):
                        http.patch(f"/api/v1/units/{uid}", json={"patrol_route_ids": [1]})
                stream = StreamClient(port, ADMIN_KEY)
                stream.start()
                stream.ready.wait(10)
                time.sleep(0.5)
                sent: dict[int, float] = {}
                load = run_load(
                    port,
                    workload(devices, secrets, sent, int(enabled)),
                    connections=args.connections,
                    seconds=args.seconds,
                    count_accepted=True,
                )
                results["on" if enabled else "off"] = load.rate
                if enabled:
                    time.sleep(2.0)  # let the stream catch up
                    latencies = stream_latencies(backend.url, sent, stream.arrivals)
                    events = stream.events
                stream.stop.set()
        ratio = results["on"] / results["off"]
        return [
            (
                name,
                f"{percentile(latencies, 50) * 1000:.1f}",
                f"{percentile(latencies, 95) * 1000:.1f}",
                f"{percentile(latencies, 99) * 1000:.1f}",
                str(len(latencies)),
                f"{results['off']:,.0f} req/s",
                f"{results['on']:,.0f} req/s",
                f"{ratio:.0%}",
                str(events),
            )
        ]
    finally:
        backend.drop()


def stream_latencies(url: str, sent: dict[int, float], arrivals: dict[int, float]) -> list[float]:
    """Latency of each ping seen on the stream: arrival minus send time (matched by ping_id)."""
    from sqlalchemy import text

    from service.store.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, client_ping_id FROM pings WHERE client_ping_id IS NOT NULL")
        ).all()
    engine.dispose()
    out = []
    for db_id, client_id in rows:
        run, _, n_text = client_id.partition("-")
        if run != "1" or not n_text:
            continue
        n = int(n_text)
        if db_id in arrivals and n in sent:
            out.append(arrivals[db_id] - sent[n])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgis", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--units", type=int, default=100)
    args = parser.parse_args()
    rows = for_backends(args.backend, lambda name, tmp: measure(name, args, tmp))
    header = (
        "backend",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "pings seen",
        "ingest, events off",
        "ingest, events on",
        "ratio",
        "events",
    )
    print_table(header, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
