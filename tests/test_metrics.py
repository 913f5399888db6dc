"""/metrics adds up every worker of `patroli serve --workers N`, and the Grafana dashboard's
metrics are all exported."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_KEY, _truncate
from tests.helpers import LAT, LON0, PATROLI, T0, cli_env, run_server

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "patroli.json"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(found: Samples, name: str, **want: str) -> float:
    """The sum of a metric's samples whose labels include `want`."""
    return sum(
        value
        for (sample, labels), value in found.items()
        if sample == name and set(want.items()) <= set(labels)
    )


def scrape(base: str) -> Samples:
    """/metrics on a new connection (so any worker may answer)."""
    with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    return samples(response.text)


def worker_pings(folder: Path, scratch: Path) -> list[float]:
    """The pings each worker process counted, read from its own file alone."""
    shares = []
    for counts in sorted(folder.glob("counter_*.db")):
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        shutil.copy(counts, scratch / counts.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(scratch))
        found = samples(generate_latest(registry).decode())
        shares.append(total(found, "patroli_pings_total"))
    return shares


def _proc_children(parent: int) -> list[int]:
    """The worker processes (multiprocessing spawns) whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def serve_parent(port: str) -> int:
    """The pid of the `patroli serve` process listening on `port`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"service.cli" in argv and b"serve" in argv and port.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no patroli serve on port {port}")


@pytest.fixture
def two_workers(postgis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`patroli serve --workers 2` on PostGIS, its metrics folder holding a stale file first."""
    _truncate(postgis_url)
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale_counts(folder)  # a new start must not add them up
    env = cli_env(
        postgis_url,
        PATROLI_ADMIN_KEY=ADMIN_KEY,
        PATROLI_KEY_CACHE_S="0",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    with run_server([*PATROLI, "serve", "--workers", "2"], env, tmp_path, ready_s=90) as (base, _):
        yield base, folder


def _json_ping(i: int) -> dict[str, Any]:
    return {"device_id": "m1", "lat": LAT, "lon": LON0 + i * 1e-5, "ts": T0.timestamp() + i}


def test_metrics_add_up_every_worker(two_workers: tuple[str, Path]) -> None:
    base, folder = two_workers
    with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as http:
        http.post("/api/v1/units", json={"name": "M1", "device_id": "m1"}).raise_for_status()
    n = 160

    def send(i: int) -> int:
        # A new connection per ping: the kernel hands them to either worker.
        with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as one:
            if i % 2:
                r = one.post("/api/v1/pings", json=_json_ping(i))
            else:
                p = _json_ping(i)
                params = {"id": "m1", "lat": p["lat"], "lon": p["lon"], "timestamp": int(p["ts"])}
                r = one.get("/api/v1/osmand", params=params)
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(send, range(n))) == {200}
    # Each worker took some of the pings: no single worker's count is the total.
    shares = worker_pings(folder, folder.parent / "one")
    assert len(shares) == 2 and sum(shares) == n and min(shares) > 0, shares
    for _ in range(12):
        found = scrape(base)
        assert total(found, "patroli_pings_total") == n
        assert total(found, "patroli_pings_total", status="accepted", door="json") == n / 2
        assert total(found, "patroli_pings_total", status="accepted", door="osmand") == n / 2
        assert total(found, "patroli_commit_batch_pings_sum") == n
        assert total(found, "patroli_writer_queue_requests") == 0

    # A live-stream client counts once, whichever worker holds it.
    opened = threading.Event()
    done = threading.Event()

    def listen() -> None:
        try:
            with (
                httpx.Client(base_url=base, headers=ADMIN, timeout=30) as one,
                one.stream("GET", "/api/v1/stream", params={"keepalive": 1}) as r,
            ):
                for _ in r.iter_lines():
                    opened.set()
                    if done.is_set():
                        return
        except httpx.HTTPError:
            pass  # its worker was killed

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(30)
    assert total(scrape(base), "patroli_stream_clients") == 1

    # Both workers killed: uvicorn starts new ones; the counts of the dead ones still add up,
    # their live gauges (the stream client) are gone.
    parent = serve_parent(base.rsplit(":", 1)[1])
    workers = _proc_children(parent)
    assert len(workers) == 2, workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        fresh = _proc_children(parent)
        if len(fresh) == 2 and not set(fresh) & set(workers):
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        assert time.monotonic() < deadline, "the workers were not replaced"
        time.sleep(0.2)
    done.set()
    listener.join(30)
    for _ in range(6):
        found = scrape(base)
        assert total(found, "patroli_pings_total", status="accepted") == n
        assert total(found, "patroli_stream_clients") == 0
    assert not [f for f in folder.glob("gauge_live*.db") if any(str(p) in f.name for p in workers)]
    # Every worker's scheduler runs every 5 s.
    deadline = time.monotonic() + 20
    while total(scrape(base), "patroli_scheduler_runs_total", outcome="ok") < 2:
        assert time.monotonic() < deadline, "no scheduler passes counted"
        time.sleep(0.5)
    assert total(scrape(base), "patroli_scheduler_run_seconds_count") >= 2


def test_events_are_counted_by_type(client: TestClient) -> None:
    def alarms() -> float:
        return total(samples(client.get("/metrics").text), "patroli_events_total", type="alarm")

    client.post("/api/v1/units", json={"name": "M1", "device_id": "m1"}).raise_for_status()
    before = alarms()
    sos = {**_json_ping(1), "alarm": "sos"}
    assert client.post("/api/v1/pings", json=sos).status_code == 200
    assert alarms() - before == 1
    assert client.post("/api/v1/pings", json=sos).json()["duplicates"] == 1  # a retry
    assert alarms() - before == 1


def stale_counts(folder: Path) -> None:
    """Leave in `folder` the files of an earlier run that counted 1000 accepted JSON pings."""
    stale = "from service import metrics; metrics.count_pings(['accepted'] * 1000, 'json')"
    subprocess.run(
        [sys.executable, "-c", stale],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        check=True,
        timeout=60,
    )
    assert list(folder.glob("counter_*.db"))


def test_one_worker_with_a_metrics_folder_counts_from_zero(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale_counts(folder)
    env = cli_env(
        f"sqlite:///{tmp_path / 'patroli.db'}",
        PATROLI_ADMIN_KEY=ADMIN_KEY,
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    with run_server([*PATROLI, "serve"], env, tmp_path) as (base, _):
        with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as http:
            http.post("/api/v1/units", json={"name": "M1", "device_id": "m1"}).raise_for_status()
            assert http.post("/api/v1/pings", json=_json_ping(1)).status_code == 200
        found = scrape(base)
    assert total(found, "patroli_pings_total", status="accepted", door="json") == 1


# --- the Grafana dashboard ------------------------------------------------------------------

_METRIC = re.compile(r"\b(patroli_[a-z0-9_]+)\b")


def dashboard_metrics() -> set[str]:
    """Every metric name a query of the dashboard reads."""
    board = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            if isinstance(node.get("query"), str):
                exprs.append(node["query"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(board)
    assert exprs, "the dashboard has no queries"
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def test_every_metric_of_the_dashboard_is_exported(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200  # request latency is there from one request
    text = client.get("/metrics").text
    exported = {name for name, _ in samples(text)}
    wanted = dashboard_metrics()
    assert {"patroli_pings_total", "patroli_stream_clients", "patroli_webhook_backlog"} <= wanted
    missing = sorted(wanted - exported)
    assert not missing, f"the dashboard queries metrics /metrics does not export: {missing}"


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel.get("type") == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            # Several instances: every query adds up the instances (or names them).
            expr = target["expr"]
            assert re.search(r"\b(sum|max|min|histogram_quantile)\b", expr), expr
    names = [v["name"] for v in board["templating"]["list"]]
    assert "datasource" in names and "instance" in names
