"""Several `patroli serve` instances on one PostGIS database, behind nginx (deploy/nginx).

Real processes: two instances on free ports and nginx (as a foreground process, with a
configuration made from deploy/nginx/patroli.conf). Without nginx the tests are skipped
locally and fail under CI, like the other tests that need a system package.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyproj import Geod
from sqlalchemy import select

from service.store.db import make_engine
from service.store.models import Ping
from tests.conftest import ADMIN_KEY, _truncate
from tests.helpers import LAT, LON0, T0, cli_env
from tests.ops.cluster import Instance, nginx_binary, running_cluster

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
GEOD = Geod(ellps="WGS84")
KPU = (116.8340, -1.2650)


@dataclass
class Cluster:
    """Two instances and nginx in front of them."""

    instances: list[Instance]
    proxy: str
    database_url: str
    nginx_log: Path  # nginx's error log: what it retried and why

    def admin(self, base: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=base or self.proxy, headers=ADMIN, timeout=30)

    def stored_pings(self) -> list[tuple[int, datetime]]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(Ping.id, Ping.unit_id, Ping.ts).order_by(Ping.id))
                return [(row.unit_id, row.ts) for row in rows]
        finally:
            engine.dispose()

    def stored_ping_ids(self) -> list[int]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return list(conn.scalars(select(Ping.id).order_by(Ping.id)))
        finally:
            engine.dispose()


@pytest.fixture
def cluster(postgis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Two `patroli serve` instances on one PostGIS database, and nginx in front of them."""
    nginx = nginx_binary()
    _truncate(postgis_url)
    env = cli_env(
        postgis_url,
        PATROLI_ADMIN_KEY=ADMIN_KEY,
        PATROLI_KEY_CACHE_S="1",
        PATROLI_SESSION_SECRET="the-same-secret-on-every-instance",
        PATROLI_WEBHOOK_ALLOW="127.0.0.1",
    )
    with running_cluster(nginx, env, tmp_path, 2) as running:
        yield Cluster(running.instances, running.proxy, postgis_url, running.nginx_log)


def _ping(device: str, dist_m: float, seconds: float) -> dict[str, Any]:
    lon, lat, _ = GEOD.fwd(*KPU, 0, dist_m)
    return {"device_id": device, "lon": lon, "lat": lat, "ts": T0.timestamp() + seconds}


def test_events_fire_once_whichever_instance_takes_the_pings(cluster: Cluster) -> None:
    a, b = (i.base for i in cluster.instances)
    with cluster.admin() as http:
        circle = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": list(KPU)},
            "properties": {"name": "KPU", "radius_m": 150},
        }
        http.post("/api/v1/geofences", json=circle).raise_for_status()
        http.post("/api/v1/units", json={"name": "W1", "device_id": "w1"}).raise_for_status()
    # Into the circle five times and out four. Ping i goes to one instance, and at the same
    # moment its copy (a tracker retry racing the original) to the other.
    track = [_ping("w1", 400 if (i // 3) % 2 == 0 else 50, 10 * i) for i in range(30)]

    def post(base: str, p: dict[str, Any]) -> int:
        with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as one:
            return int(one.post("/api/v1/pings", json=p).status_code)

    with ThreadPoolExecutor(2) as pool:
        for n, p in enumerate(track):
            first, second = (a, b) if n % 2 == 0 else (b, a)
            assert list(pool.map(post, [first, second], [p, p])) == [200, 200]
    with cluster.admin() as http:
        events = http.get("/api/v1/events", params={"limit": 1000}).json()["events"]
    assert len(cluster.stored_pings()) == 30
    types = [e["type"] for e in events if e["type"].startswith("geofence")]
    assert types == ["geofence_enter", "geofence_exit"] * 4 + ["geofence_enter"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    hits: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.hits.append({"delivery": self.headers["X-Patroli-Delivery"], **json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: its URL and the deliveries it got."""
    hits: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", hits
    finally:
        server.shutdown()
        server.server_close()


def test_scheduler_and_webhooks_do_each_job_once(
    cluster: Cluster, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, hits = receiver
    units = 24
    with cluster.admin() as http:
        hook = {"url": url, "event_types": ["offline"], "secret": "hook-secret-123"}
        http.post("/api/v1/webhooks", json=hook).raise_for_status()
        for n in range(units):
            unit = {"name": f"U{n}", "device_id": f"u{n}"}
            http.post("/api/v1/units", json=unit).raise_for_status()
    # One fix each, long ago: every unit is offline at the next scheduler pass of either
    # instance (both run theirs every 5 s).
    for n in range(units):
        base = cluster.instances[n % 2].base
        with cluster.admin(base) as http:
            fix = {"device_id": f"u{n}", "lat": LAT, "lon": LON0, "ts": T0.timestamp() + n}
            assert http.post("/api/v1/pings", json=fix).status_code == 200
    deadline = time.monotonic() + 60
    while len(hits) < units and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(12)  # two more passes of each scheduler and dispatcher: nothing more may come
    with cluster.admin() as http:
        events = http.get("/api/v1/events", params={"type": "offline", "limit": 1000}).json()
    offline = Counter(e["unit_id"] for e in events["events"])
    assert len(offline) == units and set(offline.values()) == {1}, offline
    delivered = Counter(hit["delivery"] for hit in hits)
    assert set(delivered.values()) == {1}, delivered
    assert sorted(hit["id"] for hit in hits) == sorted(e["id"] for e in events["events"])


@dataclass
class StreamClient:
    """A live-stream client through nginx that reconnects with Last-Event-ID, like a browser."""

    url: str
    may_reconnect: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)
    positions: list[int] = field(default_factory=list)
    last_id: str | None = None
    connections: int = 0
    resumed_with: list[str] = field(default_factory=list)

    def run(self) -> None:
        self.may_reconnect.set()
        while not self.stop.is_set():
            self.may_reconnect.wait()
            headers = dict(ADMIN)
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
                self.resumed_with.append(self.last_id)
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(30, read=5)) as http,
                    http.stream("GET", self.url, headers=headers, params={"keepalive": 1}) as r,
                ):
                    if r.status_code != 200:
                        time.sleep(0.2)
                        continue
                    self.connections += 1
                    self.opened.set()
                    self._read(r)
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def _read(self, response: httpx.Response) -> None:
        kind, data, msg_id = "message", "", None
        for line in response.iter_lines():
            if self.stop.is_set():
                return
            if line == "":
                if data and kind == "position":
                    self.positions.append(json.loads(data)["id"])
                if msg_id is not None:
                    self.last_id = msg_id
                kind, data, msg_id = "message", "", None
            elif line.startswith("id:"):
                msg_id = line[3:].strip()
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()


def _stream_clients(base: str) -> float:
    with httpx.Client(base_url=base, headers=ADMIN, timeout=10) as http:
        text = http.get("/metrics").text
    match = re.search(r"(?m)^patroli_stream_clients (\S+)$", text)
    return float(match.group(1)) if match else 0.0


def test_a_stream_resumes_on_the_other_instance_when_its_own_is_killed(cluster: Cluster) -> None:
    with cluster.admin() as http:
        http.post("/api/v1/units", json={"name": "S1", "device_id": "s1"}).raise_for_status()
    client = StreamClient(f"{cluster.proxy}/api/v1/stream")
    reader = threading.Thread(target=client.run, daemon=True)
    reader.start()
    try:
        assert client.opened.wait(30)
        deadline = time.monotonic() + 10
        holder = None
        while holder is None and time.monotonic() < deadline:
            counts = [_stream_clients(i.base) for i in cluster.instances]
            holder = counts.index(1.0) if sorted(counts) == [0.0, 1.0] else None
            time.sleep(0.1)
        assert holder is not None, "no instance holds the stream"
        survivor = cluster.instances[1 - holder]
        sent = 0

        def send(base: str, count: int) -> None:
            nonlocal sent
            with cluster.admin(base) as http:
                for _ in range(count):
                    fix = {"device_id": "s1", "lat": LAT, "lon": LON0, "ts": T0.timestamp() + sent}
                    assert http.post("/api/v1/pings", json=fix).status_code == 200
                    sent += 1

        send(cluster.proxy, 20)  # through nginx: to both instances
        deadline = time.monotonic() + 20
        while len(client.positions) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(client.positions) == 20
        # The instance holding the stream dies; while the client is cut off, more pings are
        # stored (by the survivor); then the client reconnects through nginx.
        client.may_reconnect.clear()
        cluster.instances[holder].kill()
        send(survivor.base, 20)
        # nginx takes reads to the survivor: a GET that finds its instance gone is retried.
        for _ in range(4):
            with cluster.admin() as http:
                assert http.get("/api/v1/units").status_code == 200
        client.may_reconnect.set()
        stored = cluster.stored_ping_ids()
        assert len(stored) == 40
        deadline = time.monotonic() + 30
        while len(client.positions) < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.stop.set()
        client.may_reconnect.set()
        reader.join(30)
    assert client.positions == stored, "every position once, in order, none missed"
    assert client.connections >= 2 and client.resumed_with, "the client reconnected"
    deadline = time.monotonic() + 15
    while _stream_clients(survivor.base) != 0:  # the resumed stream ends with its client
        assert time.monotonic() < deadline, "the stream client is still counted"
        time.sleep(0.2)


def test_every_acknowledged_ping_is_stored_when_an_instance_dies_mid_load(
    cluster: Cluster,
) -> None:
    devices = [f"k{n}" for n in range(8)]
    units = {}
    with cluster.admin() as http:
        for d in devices:
            r = http.post("/api/v1/units", json={"name": d, "device_id": d})
            units[d] = r.raise_for_status().json()["id"]
    total = 400
    kill_now = threading.Event()
    acknowledged: list[tuple[str, float]] = []
    failures: list[int | str] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        device = devices[i % len(devices)]
        ts = T0.timestamp() + i
        fix = {"device_id": device, "lat": LAT, "lon": LON0 + (i % 50) * 1e-5, "ts": ts}
        # A tracker: a new connection per fix, and a retry after a failure (502 while nginx
        # finds the instance gone, or a connection lost mid-request).
        for _ in range(5):
            try:
                with httpx.Client(headers=ADMIN, timeout=30) as one:
                    r = one.post(f"{cluster.proxy}/api/v1/pings", json=fix)
            except httpx.TransportError as exc:
                with lock:
                    failures.append(type(exc).__name__)
                continue
            if r.status_code == 200:
                with lock:
                    acknowledged.append((device, ts))
                    if len(acknowledged) == total // 4:
                        kill_now.set()
                return
            with lock:
                failures.append(r.status_code)
            time.sleep(0.2)

    def kill() -> None:
        kill_now.wait(60)
        cluster.instances[0].kill()

    killer = threading.Thread(target=kill)
    killer.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(total)))
    killer.join()
    assert cluster.instances[0].proc.poll() is not None, "the instance was killed mid-load"
    assert set(failures) <= {502, 503, "RemoteProtocolError", "ReadError", "ConnectError"}, failures
    stored = Counter(
        (unit_id, ts.replace(tzinfo=UTC).timestamp() if ts.tzinfo is None else ts.timestamp())
        for unit_id, ts in cluster.stored_pings()
    )
    assert set(stored.values()) == {1}, "a ping stored twice"
    missing = [(d, ts) for d, ts in acknowledged if stored[(units[d], ts)] != 1]
    assert not missing, f"{len(missing)} acknowledged pings are not stored: {missing[:5]}"
    assert len(acknowledged) == total, f"{total - len(acknowledged)} pings never acknowledged"
