"""Test data (a straight route and a circle near the KPUD Balikpapan office) and test servers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import uvicorn
from pyproj import Geod

from service.store.models import Unit
from tests.conftest import ADMIN_KEY

GEOD = Geod(ellps="WGS84")
LAT = -1.2680
LON0, LON1 = 116.8300, 116.8390  # a straight east-west line of about 1 km
T0 = datetime(2024, 11, 26, 23, 0, tzinfo=UTC)  # 07:00 WITA


def route_feature(name: str = "Jl. Sudirman", corridor_m: float = 30, **props: Any) -> dict:
    """A GeoJSON Feature for a straight patrol route along LAT."""
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[LON0, LAT], [LON1, LAT]]},
        "properties": {"name": name, "corridor_m": corridor_m, **props},
    }


def circle_feature(lon: float, lat: float, radius_m: float = 150, **props: Any) -> dict:
    """A GeoJSON Feature for a circular geofence."""
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "name": "Kantor KPU",
            "kind": "critical_site",
            "radius_m": radius_m,
            **props,
        },
    }


def along(chainage_m: float, offset_m: float = 0.0) -> tuple[float, float]:
    """(lon, lat) at a chainage along the test route, offset north by offset_m."""
    lon, lat, _ = GEOD.fwd(LON0, LAT, 90.0, chainage_m)
    if offset_m:
        lon, lat, _ = GEOD.fwd(lon, lat, 0.0 if offset_m > 0 else 180.0, abs(offset_m))
    return lon, lat


def ping(
    device_id: str, chainage_m: float, seconds: float, offset_m: float = 0.0, **kw: Any
) -> dict:
    """A JSON ping at a chainage of the test route, `seconds` after T0."""
    lon, lat = along(chainage_m, offset_m)
    ts = (T0 + timedelta(seconds=seconds)).isoformat()
    return {"device_id": device_id, "lat": lat, "lon": lon, "ts": ts, **kw}


def window(hours: float = 1.0) -> dict[str, str]:
    """Query parameters for [T0, T0 + hours)."""
    return {"from": T0.isoformat(), "to": (T0 + timedelta(hours=hours)).isoformat()}


def add_unit(session: Any, name: str, device_id: str) -> Unit:
    """A unit added to a store session and flushed (its id set)."""
    unit = Unit(name=name, device_id=device_id)
    session.add(unit)
    session.flush()
    return unit


_DATA_BLOCK = re.compile(
    r'<script type="application/json" id="patroli-data">(.*?)</script>', re.DOTALL
)


def page_data(page: str) -> dict[str, Any]:
    """The JSON data block of a rendered map page."""
    match = _DATA_BLOCK.search(page)
    assert match is not None, "the page has no data block"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def without_data(page: str) -> str:
    """A rendered map page without its JSON data block (what Folium's templates made)."""
    stripped, count = _DATA_BLOCK.subn("", page)
    assert count == 1, f"{count} data blocks"
    return stripped


def csp_violations(page: Any, found: list[str] | None = None) -> list[str]:
    """Console reports of Content-Security-Policy violations on a Playwright page, as they come.

    They are appended to `found` (a new list by default), which is returned.
    """
    found = [] if found is None else found

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", on_console)
    return found


LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def block_remote(page: Any, blocked: list[str] | None = None) -> list[str]:
    """Let a Playwright page reach only local servers: other requests are aborted and listed.

    They are appended to `blocked` (a new list by default), which is returned.
    """
    blocked = [] if blocked is None else blocked

    def local_only(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    return blocked


@contextmanager
def browser_page(
    browser: Any, blocked: list[str] | None = None, **context_options: Any
) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh browser context, offline but for local servers, with its errors.

    Script errors and Content-Security-Policy violations both count as errors: a page must
    work under its policy. Requests it may not make are appended to `blocked`. Options go to
    `browser.new_context` (viewport 1200x800 by default).
    """
    context = browser.new_context(**{"viewport": {"width": 1200, "height": 800}, **context_options})
    try:
        page = context.new_page()
        errors = csp_violations(page)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        block_remote(page, blocked)
        yield page, errors
    finally:
        context.close()


@contextmanager
def serve_app(
    app: Any, host: str = "127.0.0.1", timeout: float = 10.0, **config: Any
) -> Iterator[str]:
    """Run an ASGI `app` with uvicorn in a background thread; yields its base URL.

    `config` overrides uvicorn's settings (quiet, no access log, by default).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"test server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


@contextmanager
def live_app(app: Any) -> Iterator[tuple[str, httpx.Client]]:
    """The app served by uvicorn: its base URL and an HTTP client sending the admin key."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with serve_app(app) as base, httpx.Client(base_url=base, headers=admin, timeout=10) as http:
        yield base, http


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    """Environment for a `patroli` process: ours without PATROLI_*, plus the database and extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROLI_")}
    env.update({"PATROLI_DATABASE_URL": database_url, **extra})
    return env


PATROLI = [sys.executable, "-m", "service.cli"]


def run_patroli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `patroli` command to completion, its output captured as text."""
    return subprocess.run(
        [*PATROLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def run_server(
    command: list[str], env: dict[str, str], cwd: Path, ready_s: float = 30.0
) -> Iterator[tuple[str, list[str]]]:
    """Run a server command on a free port until /readyz answers 200.

    Yields its base URL and a list that holds its output lines once it has stopped.
    """
    port = free_port()
    output: list[str] = []
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_s
            while True:
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    log.seek(0)
                    pytest.fail(f"{' '.join(command)} did not become ready:\n{log.read()}")
                time.sleep(0.2)
            yield base, output
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.seek(0)
            output.extend(log.read().splitlines())


def zigzag_positions(n: int, lon: float = LON0, lat: float = LAT) -> list[list[float]]:
    """n positions zig-zagging east from (lon, lat): steps of ~24 m, teeth 15 m high.

    20,000 of them make the largest patrol route the default limits allow (~484 km).
    """
    east = np.arange(n) * (19.0 / 111_300.0)
    north = np.where(np.arange(n) % 2 == 1, 15.0 / 110_600.0, 0.0)
    return np.column_stack((lon + east, lat + north)).round(7).tolist()


def line_feature(positions: list[list[float]], name: str = "Jalur", **props: Any) -> dict:
    """A patrol route Feature from positions."""
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": positions},
        "properties": {"name": name, **props},
    }


def polygon_feature(rings: list[list[list[float]]], name: str = "Wilayah", **props: Any) -> dict:
    """A polygon geofence Feature from rings."""
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": rings},
        "properties": {"name": name, **props},
    }


def box_ring(lon: float, lat: float, width_deg: float, height_deg: float) -> list[list[float]]:
    """A closed rectangular ring with its south-west corner at (lon, lat)."""
    east, north = lon + width_deg, lat + height_deg
    return [[lon, lat], [east, lat], [east, north], [lon, north], [lon, lat]]
