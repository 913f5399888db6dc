"""Several uvicorn workers on PostGIS: every transition fires exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from pyproj import Geod

from tests.conftest import ADMIN_KEY, _truncate
from tests.helpers import PATROLI, T0, cli_env, run_server

GEOD = Geod(ellps="WGS84")
KPU = (116.8340, -1.2650)


def _ping(dist_m: float, seconds: float) -> dict[str, Any]:
    lon, lat, _ = GEOD.fwd(*KPU, 0, dist_m)
    ts = T0.timestamp() + seconds
    return {"device_id": "w1", "lon": lon, "lat": lat, "ts": ts}


def test_two_workers_fire_each_transition_once(postgis_url: str, tmp_path: Path) -> None:
    _truncate(postgis_url)
    env = cli_env(postgis_url, PATROLI_ADMIN_KEY=ADMIN_KEY, PATROLI_KEY_CACHE_S="0")
    serve = [*PATROLI, "serve", "--workers", "2"]
    with run_server(serve, env, tmp_path, ready_s=60) as (base, _):
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            circle = {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(KPU)},
                "properties": {"name": "KPU", "radius_m": 150},
            }
            http.post("/api/v1/geofences", json=circle).raise_for_status()
            http.post("/api/v1/units", json={"name": "W1", "device_id": "w1"}).raise_for_status()
            # Into the circle five times and out four, one ping per request, each request sent
            # twice at the same moment (a tracker retry racing its original) on fresh
            # connections, so the two copies land on either worker.
            track = [_ping(400 if (i // 3) % 2 == 0 else 50, 10 * i) for i in range(30)]

            def post(p: dict[str, Any]) -> int:
                with httpx.Client(base_url=base, headers=headers, timeout=30) as one:
                    return int(one.post("/api/v1/pings", json=p).status_code)

            with ThreadPoolExecutor(2) as pool:
                for p in track:
                    assert list(pool.map(post, [p, p])) == [200, 200]
            events = http.get("/api/v1/events", params={"limit": 1000}).json()["events"]
            stored = len(
                [
                    f
                    for f in http.get(
                        "/api/v1/units/1/track", params={"from": "2024-11-10", "to": "2024-12-10"}
                    ).json()["features"]
                    if f["properties"]["kind"] == "fix"
                ]
            )
    assert stored == 30  # each retried ping stored once
    types = [e["type"] for e in events if e["type"].startswith("geofence")]
    assert types == ["geofence_enter", "geofence_exit"] * 4 + ["geofence_enter"]
