"""Fault runs: a PostgreSQL server of one's own to stop and start, trackers that keep posting
and retrying as real ones do, and the ledger that says what was acknowledged and what stored.

Used by the fault tests (short runs) and by bench/faults.py (long runs, printing a table).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ADMIN_KEY = "fault-admin-key-0123456789"


def _pg_bindir() -> Path | None:
    """The newest PostgreSQL server binaries that have PostGIS beside them."""
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        major = bindir.parent.name
        if (bindir / "initdb").exists() and Path(
            f"/usr/share/postgresql/{major}/extension/postgis.control"
        ).exists():
            return bindir
    return None


class PrivatePostgres:
    """A PostgreSQL + PostGIS server of its own, on a free port, that a run may stop and start.

    The machine's shared server is never touched. As root the server runs as `postgres`
    (PostgreSQL refuses to run as root).
    """

    def __init__(self, port: int) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries with PostGIS are not installed")
        self.bindir = bindir
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="patroli-pg-"))
        self.folder.chmod(0o755)
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `patroli` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/patroli"

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self._as, *command], check=True, capture_output=True, text=True, timeout=120
        )

    def create(self) -> None:
        """initdb, start, and make the `patroli` database with PostGIS."""
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )
        self.start()
        admin = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE patroli"))
        admin.dispose()
        engine = create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION postgis"))
        engine.dispose()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: connections are cut, as in a restart; `immediate`: a crash)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stop the server if it runs and remove its files."""
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_postgres(port: int) -> Iterator[PrivatePostgres]:
    """A created and started PrivatePostgres, removed afterwards."""
    server = PrivatePostgres(port)
    try:
        server.create()
        yield server
    finally:
        server.destroy()


@dataclass
class Answer:
    """One answer a tracker got."""

    ping_id: str
    status: int  # 0: no answer (connection refused, reset, timed out)
    retry_after: str | None
    at: float  # time.monotonic()


@dataclass
class Ledger:
    """Every answer of every tracker, and which pings were acknowledged."""

    answers: list[Answer] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)
            self.sent.add(answer.ping_id)
            if answer.status == 200:
                self.acked.add(answer.ping_id)

    def between(self, start: float, end: float) -> list[Answer]:
        """The answers received in [start, end)."""
        with self.lock:
            return [a for a in self.answers if start <= a.at < end]


class Trackers:
    """Simulated trackers posting JSON pings with ping ids, retrying each until acknowledged,
    as Traccar Client and OwnTracks do: a ping is never dropped, only sent again."""

    def __init__(
        self,
        bases: list[str],
        secrets: dict[str, str],
        interval_s: float = 0.05,
        retry_s: float = 0.2,
    ) -> None:
        self.bases = bases
        self.secrets = secrets
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i, device), daemon=True)
            for i, device in enumerate(sorted(secrets))
        ]
        self.start_ts = datetime.now(UTC) - timedelta(minutes=30)

    def __enter__(self) -> Trackers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop making new pings; each tracker first gets its last ping acknowledged."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout)

    def _run(self, index: int, device: str) -> None:
        headers = {"Authorization": f"Bearer {self.secrets[device]}"}
        n = 0
        with httpx.Client(timeout=10) as http:
            while not self.stopping.is_set():
                n += 1
                ping_id = f"{device}-{n}"
                ts = self.start_ts + timedelta(seconds=n)
                body = {
                    "device_id": device,
                    "ping_id": ping_id,
                    "ts": ts.isoformat(),
                    "lat": -1.2654 + index * 1e-3,
                    "lon": 116.8312 + n * 1e-5,
                }
                attempt = 0
                while True:  # the same ping until it is acknowledged (or refused for good)
                    base = self.bases[(n + attempt) % len(self.bases)]
                    status, retry_after = 0, None
                    try:
                        r = http.post(f"{base}/api/v1/pings", json=body, headers=headers)
                        status, retry_after = r.status_code, r.headers.get("retry-after")
                    except httpx.TransportError:
                        pass
                    self.ledger.record(Answer(ping_id, status, retry_after, time.monotonic()))
                    if status == 200 or 400 <= status < 500:
                        break
                    attempt += 1
                    time.sleep(self.retry_s)
                time.sleep(self.interval_s)


def stored_ping_ids(database_url: str) -> list[str]:
    """The client ping ids stored, one per stored row (a ping stored twice appears twice)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT client_ping_id FROM pings")))
    finally:
        engine.dispose()


def add_trackers(base: str, count: int) -> dict[str, str]:
    """Create `count` units through the API; their device secrets by device id."""
    secrets: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for i in range(count):
            device = f"fault-{i:03d}"
            r = http.post("/api/v1/units", json={"name": f"Unit {i}", "device_id": device})
            r.raise_for_status()
            secrets[device] = r.json()["device_secret"]
    return secrets


def wait_ready(base: str, timeout: float) -> float | None:
    """Seconds until /readyz answers 200, or None if it does not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return None
