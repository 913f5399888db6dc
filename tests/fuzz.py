"""The fuzz gate: schemathesis against a running `patroli serve`, every operation, each backend.

The test suite runs a short, deterministic pass (tests/test_fuzz.py); the long run is

    .venv/bin/python -m tests.fuzz --backend both --examples 600 --seed 1

which creates its own throw-away databases, prints the number of cases and failures per backend
and exits non-zero on any failure. Checks: no server error, every status code and content type
documented, every response body valid against its documented schema (headers too).

This module is also the schemathesis hooks module of those runs (SCHEMATHESIS_HOOKS): its hooks
steer part of the generated ids towards the seeded rows, so operations on existing units, routes
and geofences are exercised and not only their 404s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "fuzz-admin-key-0123456789"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
PHASES = "examples,coverage,fuzzing"
# The live stream never ends by itself: read each for two seconds.
CONFIG = """
[[operations]]
include-path = "/api/v1/stream"
request-timeout = 2
"""
# Webhook deliveries of fuzzed webhooks go to this closed local port (as their HTTP proxy):
# nothing a fuzz run registers ever reaches another host.
BLACKHOLE_PROXY = "http://127.0.0.1:9"
PG_ADMIN_URL = os.environ.get(
    "PATROLI_TEST_PG_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)


@dataclass
class FuzzResult:
    """What one schemathesis run found."""

    backend: str
    generated: int
    failures: list[dict[str, Any]]
    errors: list[Any]
    exit_code: int
    seconds: float
    output: str = field(repr=False)
    server_log: str = field(repr=False)

    @property
    def passed(self) -> bool:
        """No failure, no error, no unexpected traceback, and schemathesis agrees."""
        return (
            self.exit_code == 0
            and not self.failures
            and not self.errors
            and not unexpected_tracebacks(self.server_log)
        )

    def summary(self) -> str:
        """One line: backend, cases, failures, time."""
        failed = sum(int(f.get("count", 1)) for f in self.failures)
        return (
            f"{self.backend}: {self.generated} cases, {failed} failures, "
            f"{len(self.errors)} errors in {self.seconds:.0f} s"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    database_url: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """`patroli serve` on a free local port for the database; yields its base URL."""
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PATROLI_") and key.lower() not in ("no_proxy",)
    }
    env.update(
        PATROLI_DATABASE_URL=database_url,
        PATROLI_ADMIN_KEY=ADMIN_KEY,
        PATROLI_AUTO_MIGRATE="true",
        HTTP_PROXY=BLACKHOLE_PROXY,
        HTTPS_PROXY=BLACKHOLE_PROXY,
        ALL_PROXY=BLACKHOLE_PROXY,
    )
    env.update(extra_env or {})
    log_path = workdir / "server.log"
    patroli = Path(sys.executable).with_name("patroli")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(patroli), "serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"patroli serve exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"patroli serve did not start: {log_path.read_text()}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def seed(base: str) -> None:
    """A few rows for the fuzzer to find: routes, geofences, units with pings, a key."""
    lat, lon0, lon1 = -1.268, 116.830, 116.839
    now = datetime.now(UTC).replace(microsecond=0)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        for n in range(2):
            route = {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[lon0, lat], [lon1, lat]]},
                "properties": {"name": f"Route {n + 1}", "corridor_m": 30, "revisit_s": 3600},
            }
            http.post("/api/v1/patrol-routes", json=route).raise_for_status()
            fence = {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon0 + 0.002 * n, lat]},
                "properties": {"name": f"Site {n + 1}", "radius_m": 150},
            }
            http.post("/api/v1/geofences", json=fence).raise_for_status()
        for n in range(2):
            unit = {"name": f"Unit {n + 1}", "device_id": f"fuzz-{n + 1}", "patrol_route_ids": [1]}
            http.post("/api/v1/units", json=unit).raise_for_status()
            pings = [
                {
                    "device_id": f"fuzz-{n + 1}",
                    "lat": lat,
                    "lon": lon0 + (lon1 - lon0) * i / 30,
                    "ts": (now - timedelta(minutes=60 - 2 * i)).isoformat(),
                }
                for i in range(30)
            ]
            http.post("/api/v1/pings", json=pings).raise_for_status()
        http.post("/api/v1/keys", json={"name": "viewer", "role": "viewer"}).raise_for_status()
        # May be refused by the webhook target policy; the routes are fuzzed either way.
        http.post("/api/v1/webhooks", json={"url": "http://fuzz.invalid/hook"})


def run_schemathesis(
    base: str, examples: int, seed_value: int, workdir: Path, deterministic: bool = True
) -> tuple[dict[str, Any], str, int]:
    """Run the schemathesis CLI against a server; the JSON report, the output and exit code."""
    report = workdir / "schemathesis.json"
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {ADMIN_KEY}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        PHASES,
        "--max-examples",
        str(examples),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-shrink",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    command += ["--generation-deterministic"] if deterministic else ["--seed", str(seed_value)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz", "PYTHONPATH": str(ROOT)}
    # In the work directory: schemathesis keeps a cache of its own in its working directory.
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)
    data = json.loads(report.read_text()) if report.exists() else {}
    return data, done.stdout + done.stderr, done.returncode


def fuzz(
    database_url: str,
    backend: str,
    examples: int,
    workdir: Path,
    seed_value: int = 1,
    deterministic: bool = True,
) -> FuzzResult:
    """Serve the database, seed it, fuzz every operation; what schemathesis found."""
    started = time.monotonic()
    with running_server(database_url, workdir) as base:
        seed(base)
        report, output, code = run_schemathesis(base, examples, seed_value, workdir, deterministic)
    return FuzzResult(
        backend=backend,
        generated=int(report.get("test_cases", {}).get("generated", 0)),
        failures=list(report.get("failures", [])),
        errors=list(report.get("errors", [])),
        exit_code=code,
        seconds=time.monotonic() - started,
        output=output,
        server_log=(workdir / "server.log").read_text(errors="replace"),
    )


# ---- schemathesis hooks --------------------------------------------------------------------

try:
    import schemathesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - only the runs need them
    schemathesis = None  # type: ignore[assignment]

SEEDED_IDS = (1, 2)

if schemathesis is not None:

    @schemathesis.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Keep the generated ids, or point them at seeded rows (as often as not)."""
        ids = [name for name, value in (path_parameters or {}).items() if isinstance(value, int)]
        if not ids:
            return st.just(path_parameters)
        seeded = [{**path_parameters, **dict.fromkeys(ids, n)} for n in SEEDED_IDS]
        return st.sampled_from([path_parameters, *seeded])


def unexpected_tracebacks(server_log: str) -> list[str]:
    """Tracebacks in a server log: any is a server fault, whatever the client saw."""
    return server_log.split("Traceback (most recent call last):")[1:]


# ---- standalone long run -------------------------------------------------------------------


@contextmanager
def throwaway_database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh database URL on the backend (a SQLite file, or a PostGIS database dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'fuzz.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"patroli_fuzz_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    """Fuzz each backend; print cases and failures; non-zero exit on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgis", "both"], default="both")
    parser.add_argument("--examples", type=int, default=600, help="cases per operation")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument(
        "--deterministic", action="store_true", help="derandomised, as the test suite's run"
    )
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgis"] if args.backend == "both" else [args.backend]
    ok = True
    for backend in backends:
        workdir = Path(tempfile.mkdtemp(prefix=f"patroli-fuzz-{backend}-"))
        try:
            with throwaway_database(backend, workdir) as url:
                result = fuzz(
                    url,
                    backend,
                    args.examples,
                    workdir,
                    seed_value=args.seed,
                    deterministic=args.deterministic,
                )
        finally:
            kept = workdir
        print(result.summary(), flush=True)
        if not result.passed:
            ok = False
            print(result.output[-20000:])
            for block in unexpected_tracebacks(result.server_log)[:5]:
                print("server traceback:", block[-3000:])
            print(f"server log and report kept in {kept}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
