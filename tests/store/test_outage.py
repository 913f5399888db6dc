"""When the database is down, pings get 503 and nothing is acknowledged that is not stored.

Uses a private PostgreSQL server started for this test (never the machine's shared one).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.app import create_app
from service.config import Settings
from service.store.db import make_engine
from service.store.migrate import upgrade
from tests.conftest import ADMIN_KEY, IN_CI
from tests.helpers import ping


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temp dir, run as the `postgres` OS user."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir, self.data, self.port = bindir, root / "data", port
        self.socket_dir = root

    def _run(self, *args: str | Path) -> None:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(self.bindir / "initdb", "-D", self.data, "--auth=trust", "-U", "postgres")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
        log = self.socket_dir / "server.log"  # keeps the server off our output pipes
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", log, "-o", opts, "-w", "start")

    def stop(self) -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostGIS-enabled server, stopped and removed afterwards."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins or (os.geteuid() == 0 and shutil.which("runuser") is None):
        if IN_CI:
            pytest.fail("PostgreSQL server binaries not found")
        pytest.skip("PostgreSQL server binaries not found")
    root = Path(tempfile.mkdtemp(prefix="patroli-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(Path(bins[-1]).parent, root, _free_port())
    server.init()
    server.start()
    try:
        engine = make_engine(server.url)
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION postgis"))
        upgrade(engine)
        engine.dispose()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()  # may already be stopped by the test
        shutil.rmtree(root, ignore_errors=True)


def test_database_down_gives_503_and_loses_nothing(private_pg: PrivatePostgres) -> None:
    settings = Settings(_env_file=None, database_url=private_pg.url, admin_key=ADMIN_KEY)  # type: ignore[call-arg]
    acknowledged = 0
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        c.post("/api/v1/units", json={"name": "U", "device_id": "u"}).raise_for_status()
        secret = c.post("/api/v1/units", json={"name": "V", "device_id": "v"}).json()[
            "device_secret"
        ]
        r = c.post("/api/v1/pings", json=[ping("u", 0, 0), ping("u", 10, 5)])
        assert r.status_code == 200
        acknowledged += r.json()["accepted"]

        private_pg.stop()
        r = c.post("/api/v1/pings", json=[ping("u", 20, 10), ping("u", 30, 15)])
        assert r.status_code == 503, r.text
        assert "nothing was stored" in r.json()["detail"]
        assert r.headers["retry-after"]
        # A tracker whose key this worker has not looked up yet: the lookup cannot be made.
        for r in (
            c.post(
                "/api/v1/pings", json=ping("v", 0, 0), headers={"Authorization": f"Bearer {secret}"}
            ),
            c.get(f"/api/v1/osmand/{secret}", params={"id": "v", "lat": -1.27, "lon": 116.83}),
        ):
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"]

        private_pg.start()
        # The tracker retries the refused pings: they are stored now, exactly once.
        r = c.post("/api/v1/pings", json=[ping("u", 20, 10), ping("u", 30, 15)])
        assert r.status_code == 200, r.text
        acknowledged += r.json()["accepted"]
        r = c.post("/api/v1/pings", json=[ping("u", 20, 10)])
        assert r.json()["results"][0]["status"] == "duplicate"

    engine = make_engine(private_pg.url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM pings")).scalar_one()
    engine.dispose()
    assert acknowledged == 4
    assert stored == acknowledged
