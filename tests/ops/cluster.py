"""Several `patroli serve` processes behind a foreground nginx, and the soak run over them.

Shared by tests/test_cluster.py (the cluster fixture), tests/ops/test_soak.py (a short soak)
and bench/soak.py (a long one, printing a table). Real processes only: instances on free
ports, nginx with a configuration made from deploy/nginx/patroli.conf, a webhook receiver,
a live-stream client and simulated trackers, all over HTTP.
"""

from __future__ import annotations

import asyncio
import hmac
import http.server
import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import uvloop
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.notify.webhooks import sign
from service.store.db import make_engine
from service.store.migrate import upgrade
from tests.conftest import _unavailable
from tests.helpers import PATROLI, along, circle_feature, cli_env, free_port, route_feature
from tests.ops.harness import Answer, Ledger
from tests.ops.wire import KeepAlive

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "patroli.conf"
SOAK_ADMIN_KEY = "soak-admin-key-0123456789"
SOAK_HOOK_SECRET = "soak-secret-1"
SOAK_REVISIT_S = 600.0  # route and circle: the overdue check looks back 2 x 600 s + max gap


def find_nginx() -> str | None:
    """The nginx executable, or None when it is not installed."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return shutil.which("nginx", path=path)


def nginx_binary() -> str:
    """The nginx executable (skip locally, fail under CI when it is missing)."""
    found = find_nginx()
    if found is None:
        _unavailable("nginx is not installed (scripts/install-system-deps.sh installs it)")
    assert found is not None
    return found


def nginx_config(
    tmp: Path, listen: int, upstreams: list[int], worker_connections: int = 512
) -> Path:
    """A complete nginx configuration around deploy/nginx/patroli.conf, for these ports.

    The upstream servers and the listen port are replaced; every other directive is the
    shipped file's own. Logs, pid and temporary files go under `tmp`.
    """
    text_ = NGINX_CONF.read_text()
    servers = "".join(
        f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;\n" for port in upstreams
    )
    text_, count = re.subn(r"(?m)^\s*server app2?:8000 [^;]*;\n", "", text_)
    assert count == 2, "expected the two compose upstream servers in patroli.conf"
    text_ = text_.replace("upstream patroli {\n", "upstream patroli {\n" + servers, 1)
    text_, count = re.subn(r"(?m)^(\s*)listen 80;$", rf"\1listen 127.0.0.1:{listen};", text_)
    assert count == 1
    (tmp / "patroli.conf").write_text(text_)
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / folder).mkdir(exist_ok=True)
    main = f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/patroli.conf;
}}
"""
    conf = tmp / "nginx.conf"
    conf.write_text(main)
    return conf


@dataclass
class Instance:
    """One `patroli serve` process."""

    port: int
    proc: subprocess.Popen[str]
    log: IO[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no answer to what is in flight."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def rss_mb(self) -> float:
        """Resident memory of the process (MB), from /proc; NaN once it has gone."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return math.nan
        match = re.search(r"(?m)^VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else math.nan

    def cpu_s(self) -> float:
        """CPU seconds the process has used (user + system), from /proc."""
        return cpu_seconds(self.proc.pid)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used; NaN once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(
    url: str, alive: Callable[[], bool], what: str, output: Callable[[], str] = str
) -> None:
    """Wait up to 60 s for `url` to answer 200; RuntimeError with `output()` otherwise."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready:\n{output()}")
        time.sleep(0.2)


@dataclass
class Running:
    """Instances and nginx in front of them."""

    instances: list[Instance]
    proxy: str
    nginx_log: Path
    nginx_pid: int


@contextmanager
def running_cluster(
    nginx: str,
    env: dict[str, str],
    workdir: Path,
    count: int,
    worker_connections: int = 512,
) -> Iterator[Running]:
    """`count` instances of `patroli serve` with `env`, and nginx in front of them."""
    instances: list[Instance] = []
    nginx_proc: subprocess.Popen[bytes] | None = None
    try:
        for n in range(count):
            port = free_port()
            log = (workdir / f"instance{n}.log").open("w+")
            proc = subprocess.Popen(
                [*PATROLI, "serve", "--port", str(port)],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            instances.append(Instance(port, proc, log))
        for i in instances:
            wait_ready(f"{i.base}/readyz", i.running, f"instance {i.port}", i.output)
        listen = free_port()
        conf = nginx_config(workdir, listen, [i.port for i in instances], worker_connections)
        error_log = workdir / "error.log"
        nginx_proc = subprocess.Popen(
            [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(error_log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        proxy = f"http://127.0.0.1:{listen}"
        proc_ = nginx_proc
        wait_ready(
            f"{proxy}/readyz",
            lambda: proc_.poll() is None,
            "nginx",
            lambda: error_log.read_text() if error_log.exists() else "",
        )
        yield Running(instances, proxy, error_log, nginx_proc.pid)
    finally:
        if nginx_proc is not None:
            nginx_proc.terminate()
            nginx_proc.wait(30)
        for i in instances:
            if i.proc.poll() is None:
                i.proc.terminate()
                i.proc.wait(30)
            i.log.close()


@contextmanager
def fresh_database(admin_url: str, prefix: str = "patroli_soak") -> Iterator[str]:
    """A new PostGIS database on the server of `admin_url`, migrated to head, dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class _Receiver(http.server.BaseHTTPRequestHandler):
    hits: list[tuple[str, int, float]]  # (X-Patroli-Delivery, event id, when), as they came
    unsigned: list[str]  # deliveries whose signature did not match the body
    lock: threading.Lock

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        with self.lock:
            self.hits.append(
                (self.headers["X-Patroli-Delivery"], int(body["id"]), time.monotonic())
            )
            if not hmac.compare_digest(
                self.headers.get("X-Patroli-Signature", ""), sign(SOAK_HOOK_SECRET, raw)
            ):
                self.unsigned.append(self.headers["X-Patroli-Delivery"])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class HookReceiver:
    """A webhook receiver on 127.0.0.1, down (connections refused) until `up()` if asked."""

    url: str
    hits: list[tuple[str, int, float]]
    unsigned: list[str]
    up: Callable[[], None]
    came_up: list[float]  # time.monotonic() when it started answering


@contextmanager
def webhook_receiver(down: bool = False) -> Iterator[HookReceiver]:
    """A webhook receiver checking signatures; bound at once, listening at once or at `up()`."""
    hits: list[tuple[str, int, float]] = []
    unsigned: list[str] = []
    attrs = {"hits": hits, "unsigned": unsigned, "lock": threading.Lock()}
    handler = type("Receiver", (_Receiver,), attrs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
    server.allow_reuse_address = True
    server.server_bind()  # bound but not listening: connections are refused until up()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    came_up: list[float] = []

    def up() -> None:
        if not came_up:
            server.server_activate()
            thread.start()
            came_up.append(time.monotonic())

    if not down:
        up()
    try:
        yield HookReceiver(
            f"http://127.0.0.1:{server.server_address[1]}/hook", hits, unsigned, up, came_up
        )
    finally:
        if came_up:
            server.shutdown()
        server.server_close()


class LiveMap(threading.Thread):
    """A live-map client on /api/v1/stream through nginx: when each position (ping row id)
    arrived, and how many event messages; it reconnects with Last-Event-ID like a browser."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.key = key
        self.arrivals: dict[int, float] = {}
        self.events = 0
        self.connections = 0
        self.last_id: str | None = None
        self.opened = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            headers = {"Authorization": f"Bearer {self.key}"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(30, read=40)) as http,
                    http.stream("GET", self.url, headers=headers) as r,
                ):
                    if r.status_code == 200:
                        self.connections += 1
                        self.opened.set()
                        self._read(r)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def _read(self, response: httpx.Response) -> None:
        kind, data, msg_id = "message", "", None
        for line in response.iter_lines():
            if self.stop.is_set():
                return
            if line == "":
                if data and kind == "position":
                    self.arrivals[int(json.loads(data)["id"])] = time.monotonic()
                elif data:
                    self.events += 1
                if msg_id is not None:
                    self.last_id = msg_id
                kind, data, msg_id = "message", "", None
            elif line.startswith("id:"):
                msg_id = line[3:].strip()
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()


STEP_S = 5  # device seconds between a unit's fixes
STEP_M = 25.0  # metres along the route between a unit's fixes (5 m/s)


def fix_body(index: int, device: str, n: int, start: datetime) -> bytes:
    """Ping n of unit `index`: back and forth along the test route through the KPUD circle
    at its middle, 10 of every 40 fixes 60 m off the corridor (so off_route fires)."""
    x = (index * 37 + n * STEP_M) % 1800
    chainage = x if x <= 900 else 1800 - x
    offset = 60.0 if n % 40 >= 30 else 0.0
    lon, lat = along(chainage, offset)
    ts = start + timedelta(seconds=n * STEP_S)
    body: dict[str, object] = {"device_id": device, "ping_id": f"{device}-{n}"}
    body.update(ts=ts.isoformat(), lat=round(lat, 7), lon=round(lon, 7), speed_mps=5.0)
    return json.dumps(body).encode()


@dataclass
class Load:
    """What the simulated trackers sent and were answered."""

    ledger: Ledger = field(default_factory=Ledger)
    latencies: list[float] = field(default_factory=list)  # every attempt, s
    sent: list[float] = field(default_factory=list)  # every attempt: s after the load began
    began: float = 0.0  # time.monotonic() when the load began
    acked_at: dict[str, float] = field(default_factory=dict)  # ping id -> acked attempt's send
    refused: list[tuple[str, int]] = field(default_factory=list)  # 4xx answers
    seconds: float = 0.0


async def _tracker(
    index: int,
    device: str,
    client: KeepAlive,
    interval: float,
    end: float,
    start_ts: datetime,
    load: Load,
) -> None:
    """One tracker: a ping every `interval` s (slots missed while waiting are skipped), each
    retried with the same ping id until acknowledged, as Traccar Client and OwnTracks do."""
    # Phases spread evenly over the interval (golden-ratio steps), as unsynchronised trackers.
    next_at = time.monotonic() + interval * (index * 0.6180339887 % 1.0)
    n = 0
    while True:
        now = time.monotonic()
        if next_at > now:
            await asyncio.sleep(next_at - now)
        elif now - next_at > interval:
            next_at = now
        if time.monotonic() >= end:
            return
        n += 1
        body = fix_body(index, device, n, start_ts)
        ping_id = f"{device}-{n}"
        while True:
            sent = time.monotonic()
            status = 0
            with suppress(OSError, TimeoutError):
                status = await client.post("/api/v1/pings", body)
            done = time.monotonic()
            load.latencies.append(done - sent)
            load.sent.append(sent - load.began)
            load.ledger.record(Answer(ping_id, status, None, done))
            if status == 200:
                load.acked_at[ping_id] = sent
                break
            if 400 <= status < 500:
                load.refused.append((ping_id, status))
                break
            await asyncio.sleep(0.2)
        next_at += interval


def run_trackers(
    proxy: str, secrets: dict[str, str], rate: float, seconds: float, start_ts: datetime
) -> Load:
    """Every unit posting single JSON pings through `proxy` at `rate` pings/s in all, each on
    its own keep-alive connection (a lean client: the load generator shares the machine)."""
    load = Load()
    interval = len(secrets) / rate

    async def main() -> None:
        clients = {
            d: KeepAlive(
                proxy,
                {"Authorization": f"Bearer {secrets[d]}", "Content-Type": "application/json"},
            )
            for d in sorted(secrets)
        }
        end = time.monotonic() + seconds
        begin = load.began = time.monotonic()
        try:
            await asyncio.gather(
                *(
                    _tracker(i, d, client, interval, end, start_ts, load)
                    for i, (d, client) in enumerate(clients.items())
                )
            )
        finally:
            for client in clients.values():
                client.close()
        load.seconds = time.monotonic() - begin

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    return load


@dataclass
class SoakResult:
    """Everything a soak run measured."""

    units: int
    rate: float
    instances: int
    load: Load
    stored: Counter[str]  # client ping id -> rows stored
    sse_latencies: list[float]  # acknowledged pings seen on the stream: arrival - send, s
    sse_missing: list[str]  # acknowledged pings whose position never came on the stream
    rss: dict[int, list[tuple[float, float]]]  # instance port -> (s since start, MB)
    events: list[int]  # event ids stored
    deliveries: Counter[int]  # event id -> deliveries received
    delivery_ids: Counter[str]  # X-Patroli-Delivery -> times received
    stream_events: int
    warmup_s: float
    cpu: dict[str, float]  # process -> share of one core during the load
    unsigned: list[str]  # deliveries whose signature did not match
    out_of_order: list[int]  # units whose events reached the receiver out of order
    receiver_down_s: float
    drained_s: float  # from the receiver answering to the last delivery

    @property
    def acked(self) -> set[str]:
        return self.load.ledger.acked

    @property
    def lost(self) -> int:
        """Acknowledged but not stored."""
        return len(self.acked - set(self.stored))

    @property
    def twice(self) -> int:
        """Pings stored more than once."""
        return sum(1 for n in self.stored.values() if n > 1)


def _register(proxy: str, units: int, hook: str) -> dict[str, str]:
    """The route, the KPUD circle (both with a revisit_s, so the overdue check has work), the
    webhook and the units (on the route); device secrets."""
    headers = {"Authorization": f"Bearer {SOAK_ADMIN_KEY}"}
    secrets: dict[str, str] = {}
    with httpx.Client(base_url=proxy, headers=headers, timeout=30) as http:
        route = http.post(
            "/api/v1/patrol-routes", json=route_feature(corridor_m=30, revisit_s=SOAK_REVISIT_S)
        )
        route_id = route.raise_for_status().json()["id"]
        lon, lat = along(450)
        site = circle_feature(lon, lat, 150, revisit_s=SOAK_REVISIT_S)
        http.post("/api/v1/geofences", json=site).raise_for_status()
        http.post("/api/v1/webhooks", json={"url": hook, "secret": SOAK_HOOK_SECRET})
        for i in range(units):
            device = f"soak-{i:04d}"
            unit = {"name": f"Unit {i}", "device_id": device, "patrol_route_ids": [route_id]}
            r = http.post("/api/v1/units", json=unit)
            secrets[device] = r.raise_for_status().json()["device_secret"]
    return secrets


def _rows(url: str, query: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query)))
    finally:
        engine.dispose()


def soak(
    database_url: str,
    workdir: Path,
    nginx: str,
    *,
    units: int,
    rate: float,
    seconds: float,
    instances: int = 2,
    sample_s: float = 10.0,
    settle_s: float = 60.0,
    receiver_down_s: float = 0.0,
    say: Callable[[str], None] = lambda _: None,
) -> SoakResult:
    """A soak run on an empty, migrated PostGIS database; returns what it measured.

    With `receiver_down_s`, the webhook receiver refuses connections for that long from the
    start of the load; the run then waits (up to `settle_s`) until every event is delivered.
    """
    env = cli_env(
        database_url,
        PATROLI_ADMIN_KEY=SOAK_ADMIN_KEY,
        PATROLI_SESSION_SECRET="the-same-secret-on-every-instance",
        PATROLI_WEBHOOK_ALLOW="127.0.0.1",
        PATROLI_AUTO_MIGRATE="false",
        # Device times lie in the past (below): no unit may count as offline meanwhile.
        PATROLI_OFFLINE_AFTER_S=str(30 * 86400),
    )
    per_unit = math.ceil(seconds * rate / units) + 10
    start_ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=per_unit * STEP_S + 600)
    with (
        webhook_receiver(down=receiver_down_s > 0) as receiver,
        running_cluster(nginx, env, workdir, instances, 2 * units + 256) as cluster,
    ):
        say(f"{instances} instances behind nginx at {cluster.proxy}; registering {units} units")
        secrets = _register(cluster.proxy, units, receiver.url)
        live = LiveMap(f"{cluster.proxy}/api/v1/stream", SOAK_ADMIN_KEY)
        live.start()
        if not live.opened.wait(30):
            raise RuntimeError("the live-map client could not connect")
        rss: dict[int, list[tuple[float, float]]] = {i.port: [] for i in cluster.instances}
        sampling = threading.Event()
        began = time.monotonic()

        def sample() -> None:
            while True:
                for i in cluster.instances:
                    rss[i.port].append((time.monotonic() - began, i.rss_mb()))
                if sampling.wait(sample_s):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        say(f"load: {rate:g} pings/s target for {seconds:g} s")

        def cpu_now() -> dict[str, float]:
            out = {f"instance {n + 1}": i.cpu_s() for n, i in enumerate(cluster.instances)}
            out["nginx"] = cpu_seconds(cluster.nginx_pid)
            out["trackers + live map (this process)"] = time.process_time()
            return out

        cpu_before = cpu_now()
        back = threading.Timer(receiver_down_s, receiver.up)
        back.start()
        try:
            load = run_trackers(cluster.proxy, secrets, rate, seconds, start_ts)
        finally:
            sampling.set()
            sampler.join()
            back.join()  # a receiver down longer than the load comes back after it
        cpu = {k: (v - cpu_before[k]) / load.seconds for k, v in cpu_now().items()}
        say(f"load done ({len(load.ledger.acked):,} acknowledged); letting stream and hooks settle")
        rows = _rows(database_url, "SELECT id, client_ping_id FROM pings")
        db_id = {client: row_id for row_id, client in rows}
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            events = [r[0] for r in _rows(database_url, "SELECT id FROM events ORDER BY id")]
            seen = {e for _, e, _ in list(receiver.hits)}
            on_stream = all(db_id[p] in live.arrivals for p in load.ledger.acked if p in db_id)
            if on_stream and seen >= set(events):
                break
            time.sleep(1)
        time.sleep(min(5.0, settle_s))  # anything delivered twice would come now
        live.stop.set()
        event_rows = _rows(database_url, "SELECT id, unit_id FROM events ORDER BY id")
        events = [r[0] for r in event_rows]
        arrivals = dict(live.arrivals)
        got = list(receiver.hits)
    latencies, missing = [], []
    for ping_id in sorted(load.ledger.acked):
        row_id = db_id.get(ping_id)
        if row_id is not None and row_id in arrivals:
            latencies.append(arrivals[row_id] - load.acked_at[ping_id])
        else:
            missing.append(ping_id)
    return SoakResult(
        units=units,
        rate=rate,
        instances=instances,
        load=load,
        stored=Counter(client for _, client in rows),
        sse_latencies=latencies,
        sse_missing=missing,
        rss=rss,
        events=events,
        deliveries=Counter(event for _, event, _ in got),
        delivery_ids=Counter(delivery for delivery, _, _ in got),
        unsigned=list(receiver.unsigned),
        out_of_order=_out_of_order(got, {e: u for e, u in event_rows}),
        receiver_down_s=receiver_down_s,
        drained_s=max((t for _, _, t in got), default=math.nan) - receiver.came_up[0],
        stream_events=live.events,
        warmup_s=min(60.0, seconds / 5),
        cpu=cpu,
    )


def _out_of_order(hits: list[tuple[str, int, float]], unit_of: dict[int, Any]) -> list[int]:
    """Units whose deliveries did not arrive in the order of their events (ids)."""
    last: dict[Any, int] = {}
    bad: set[Any] = set()
    for _, event, _ in hits:
        unit = unit_of.get(event)
        if event < last.get(unit, 0):
            bad.add(unit)
        last[unit] = max(event, last.get(unit, 0))
    return sorted(bad, key=str)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values (NaN when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def soak_table(result: SoakResult) -> list[tuple[str, str]]:
    """The run as (measure, value) rows."""
    load = result.load
    acked = len(result.acked)
    ms = [x * 1000 for x in load.latencies]
    sse = [x * 1000 for x in result.sse_latencies]

    def pcts(values: list[float]) -> str:
        return " / ".join(f"{percentile(values, q):.0f}" for q in (50, 95, 99))

    rows = [
        ("instances, units", f"{result.instances}, {result.units}"),
        ("target", f"{result.rate:g} pings/s"),
        ("run", f"{load.seconds:.0f} s"),
        (
            "achieved (acknowledged pings/s)",
            f"{acked / load.seconds:.0f} ({acked / load.seconds / result.rate:.0%} of target)",
        ),
        ("requests (incl. retries), non-200", f"{len(ms):,}, {len(ms) - acked:,}"),
        ("request latency p50 / p95 / p99", f"{pcts(ms)} ms"),
        (
            f"  sent after the {result.warmup_s:.0f} s warm-up",
            f"{pcts([x for x, t in zip(ms, load.sent, strict=True) if t >= result.warmup_s])} ms",
        ),
        ("ping → SSE p50 / p95 / p99", f"{pcts(sse)} ms ({len(sse):,} positions)"),
    ]
    for n, (_port, samples) in enumerate(sorted(result.rss.items())):
        mbs = [mb for _, mb in samples if not math.isnan(mb)]
        warm = [mb for t, mb in samples if t >= result.warmup_s and not math.isnan(mb)]
        growth = warm[-1] - warm[0] if warm else math.nan
        rows.append(
            (
                f"RSS instance {n + 1} (every {samples[1][0] - samples[0][0]:.0f} s)"
                if len(samples) > 1
                else f"RSS instance {n + 1}",
                f"first {mbs[0]:.0f}, max {max(mbs):.0f}, last {mbs[-1]:.0f} MB; "
                f"{growth:+.1f} MB after {result.warmup_s:.0f} s warm-up",
            )
        )
        if samples and samples[-1][0] >= 180:  # long runs: the course, to tell a plateau
            step = 60.0 if samples[-1][0] < 1800 else 300.0
            course: dict[int, float] = {}
            for t, mb in samples:
                if not math.isnan(mb):
                    course.setdefault(int(t // step), mb)
            rows.append((f"  every {step:.0f} s", " ".join(f"{mb:.0f}" for mb in course.values())))
    rows += [(f"CPU {name}", f"{share:.2f} cores") for name, share in result.cpu.items()]
    twice_hooks = sum(1 for n in result.deliveries.values() if n > 1)
    rows += [
        ("acknowledged / stored", f"{acked:,} / {sum(result.stored.values()):,}"),
        ("lost / stored twice", f"{result.lost} / {result.twice}"),
        ("acknowledged not on the stream", f"{len(result.sse_missing)}"),
        (
            "events stored / webhook deliveries",
            f"{len(result.events):,} / {sum(result.deliveries.values()):,} "
            f"({len(set(result.events) - set(result.deliveries))} missing, {twice_hooks} twice)",
        ),
        (
            "webhook order per unit, signatures",
            f"{len(result.out_of_order)} units out of order, {len(result.unsigned)} bad signatures",
        ),
    ]
    if result.receiver_down_s:
        rows.append(
            (
                "webhook receiver down",
                f"{result.receiver_down_s:g} s from the start; last delivery "
                f"{result.drained_s:.0f} s after it came back",
            )
        )
    return rows
