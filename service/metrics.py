"""Prometheus metrics (served at /metrics), correct across worker processes.

With several worker processes (`patroli serve --workers N`) every process writes its values to
files in PROMETHEUS_MULTIPROC_DIR, which `patroli serve` creates empty at each start; whichever
worker answers /metrics adds up the files of all of them. Counters of a worker that died keep
counting in the totals; its live gauges (queue depth, stream clients) are dropped.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Ingest doors and ping outcomes, created up front so that every series exists from zero.
DOORS = ("json", "gpx", "osmand", "owntracks", "mqtt")
PING_STATUSES = ("accepted", "duplicate", "rejected")

PINGS = Counter(
    "patroli_pings_total", "Pings received, by outcome and ingest door", ["status", "door"]
)
REQUESTS = Histogram(
    "patroli_request_seconds",
    "HTTP request latency, by route template and status code",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_PINGS = Histogram(
    "patroli_commit_batch_pings",
    "Pings and device reports stored per group-commit transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
COMMIT_SECONDS = Histogram(
    "patroli_commit_seconds",
    "Time of one group-commit transaction, from its first statement to its commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITER_QUEUE = Gauge(
    "patroli_writer_queue_requests",
    "Requests waiting for the group-commit writer",
    multiprocess_mode="livesum",
)
EVENTS = Counter("patroli_events_total", "Events stored, by type", ["type"])
STREAM_CLIENTS = Gauge(
    "patroli_stream_clients", "Open live-stream (SSE) connections", multiprocess_mode="livesum"
)
WEBHOOK_ATTEMPTS = Counter(
    "patroli_webhook_attempts_total",
    "Webhook POSTs, by result: delivered, failed (to be retried) or dead (given up)",
    ["result"],
)
SCHEDULER_RUNS = Counter(
    "patroli_scheduler_runs_total", "Passes of the offline/overdue scheduler", ["outcome"]
)
SCHEDULER_SECONDS = Histogram(
    "patroli_scheduler_run_seconds",
    "Time of one scheduler pass",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

for _status in PING_STATUSES:
    for _door in DOORS:
        PINGS.labels(status=_status, door=_door)
for _result in ("delivered", "failed", "dead"):
    WEBHOOK_ATTEMPTS.labels(result=_result)
for _outcome in ("ok", "failed"):
    SCHEDULER_RUNS.labels(outcome=_outcome)


def count_pings(statuses: list[str], door: str) -> None:
    """Count the outcome of each ping of a request that came in through `door`."""
    for status in statuses:
        PINGS.labels(status=status, door=door).inc()


def count_events(types: Iterable[str]) -> None:
    """Count committed events by type."""
    for kind in types:
        EVENTS.labels(type=kind).inc()


def init_event_types(types: Iterable[str]) -> None:
    """Create the event counter of each type at zero."""
    for kind in types:
        EVENTS.labels(type=kind)


class RequestTimer:
    """ASGI middleware timing each request by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            observe_request(scope["method"], route, status, began)


def observe_request(method: str, route: str | None, status: int, began: float) -> None:
    """Count a request's duration (since `began`, a perf_counter) by route template and status."""
    REQUESTS.labels(method, route or "unmatched", str(status)).observe(time.perf_counter() - began)


# ---- several processes ---------------------------------------------------------------------


def multiproc_dir() -> Path | None:
    """The folder shared by the worker processes, when metrics are kept across processes."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped by its parent) is dead
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def mark_dead_workers(path: Path) -> list[int]:
    """Drop the live gauges of processes that no longer run (killed workers); their pids."""
    dead = []
    files = (_LIVE_FILE.fullmatch(f.name) for f in path.glob("gauge_live*.db"))
    pids = {int(m.group(1)) for m in files if m}
    for pid in sorted(pids):
        if pid != os.getpid() and not _alive(pid):
            multiprocess.mark_process_dead(pid, str(path))
            dead.append(pid)
    return dead


def worker_exit() -> None:
    """Drop this process's live gauges as it stops (multi-process mode only)."""
    path = multiproc_dir()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), str(path))


def outbox_families(counts: dict[str, int] | None) -> list[Metric]:
    """The webhook outbox gauges from the database's counts (None: the database did not answer)."""
    up = GaugeMetricFamily(
        "patroli_database_up", "Whether the database answered this scrape (1) or not (0)"
    )
    up.add_metric([], 0 if counts is None else 1)
    if counts is None:
        return [up]
    backlog = GaugeMetricFamily(
        "patroli_webhook_backlog", "Webhook deliveries waiting to be sent (pending), all instances"
    )
    backlog.add_metric([], counts.get("pending", 0))
    dead = GaugeMetricFamily(
        "patroli_webhook_dead", "Webhook deliveries given up on (dead), all instances"
    )
    dead.add_metric([], counts.get("dead", 0))
    return [up, backlog, dead]


class _Families:
    """A collector of metric families made at scrape time (e.g. read from the database)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        """The families given."""
        return self._families


def exposition(extra: Iterable[Metric] = ()) -> Response:
    """The metrics in Prometheus' text format: of every worker process, plus `extra`."""
    path = multiproc_dir()
    if path is not None:
        mark_dead_workers(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(path))
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    extra_registry = CollectorRegistry(auto_describe=False)
    extra_registry.register(_Families(extra))
    return Response(body + generate_latest(extra_registry), media_type=CONTENT_TYPE_LATEST)
