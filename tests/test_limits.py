"""Limits on one request: oversize bodies get 413 however they are sent, and slow clients are
dropped (tested with raw sockets against a running `patroli serve`) while others are served."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import ADMIN_KEY
from tests.fuzz import running_server

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        part = b" " * min(size, total - sent)
        sent += len(part)
        yield part


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/pings", "application/json"),
        ("/api/v1/osmand", "application/x-www-form-urlencoded"),
        ("/api/v1/owntracks", "application/json"),
        ("/api/v1/units/1/gpx", "multipart/form-data; boundary=x"),
        ("/api/v1/units", "application/json"),
    ],
)
def test_chunked_body_over_the_limit_is_413(
    make_settings: Callable[..., Settings], path: str, content_type: str
) -> None:
    with TestClient(create_app(make_settings(max_body_bytes=100_000))) as c:
        # A generator body goes out chunked: no Content-Length to refuse up front.
        r = c.post(path, content=_chunks(6_000_000), headers={**AUTH, "Content-Type": content_type})
    assert r.status_code == 413, r.text
    assert "100000 bytes" in r.json()["detail"]
    assert r.headers["connection"] == "close"


def test_chunked_body_within_the_limit_is_read_as_usual(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings())) as c:
        body = (b'{"name": "A", ', b'"device_id": "d1"}')
        r = c.post(
            "/api/v1/units",
            content=iter(body),
            headers={**AUTH, "Content-Type": "application/json"},
        )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """`patroli serve` with short head (1 s) and body (2 s) timeouts; (host, port)."""
    workdir = Path(tmp_path_factory.mktemp("slow"))
    env = {"PATROLI_HEAD_TIMEOUT_S": "1", "PATROLI_BODY_TIMEOUT_S": "2"}
    with running_server(f"sqlite:///{workdir / 'slow.db'}", workdir, env) as base:
        parts = urlsplit(base)
        yield str(parts.hostname), int(parts.port or 80)


def _connect(server: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(server, timeout=10)
    return sock


def _until_closed(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent."""
    started, data = time.monotonic(), b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return time.monotonic() - started, data


def _served_meanwhile(server: tuple[str, int]) -> None:
    host, port = server
    started = time.monotonic()
    assert httpx.get(f"http://{host}:{port}/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "head",
    [
        b"",  # connects and says nothing
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aa",  # half a header line
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /heal",  # a second, unfinished request
    ],
)
def test_a_client_that_does_not_finish_its_request_head_is_dropped(
    server: tuple[str, int], head: bytes
) -> None:
    sock = _connect(server)
    sock.sendall(head)
    _served_meanwhile(server)
    waited, data = _until_closed(sock)
    assert 0.5 < waited < 3, waited
    assert data.endswith(b'{"detail": "the request head did not arrive within 1 s"}'), data
    assert b"408 Request Timeout" in data


def test_a_client_dribbling_its_head_is_dropped_all_the_same(server: tuple[str, int]) -> None:
    sock = _connect(server)
    started = time.monotonic()
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: " + b"a" * 100:
            sock.send(bytes([byte]))
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    _, data = _until_closed(sock)
    assert time.monotonic() - started < 4
    assert b"408 Request Timeout" in data


def test_a_head_over_the_size_limit_is_refused(server: tuple[str, int]) -> None:
    sock = _connect(server)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(200):
            sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    waited, data = _until_closed(sock)
    assert waited < 1
    assert data.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), data[:100]


def test_a_body_that_never_completes_is_answered_408_and_dropped(
    server: tuple[str, int],
) -> None:
    sock = _connect(server)
    sock.sendall(
        b"POST /api/v1/pings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
    )
    _served_meanwhile(server)
    waited, data = _until_closed(sock)
    assert 1.5 < waited < 4, waited
    assert b"408 Request Timeout" in data
    assert b"the request body did not arrive within 2 s" in data


def test_a_keep_alive_client_is_served_then_dropped_when_idle(server: tuple[str, int]) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)  # pipelined
    waited, data = _until_closed(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert waited < 7  # the keep-alive timeout (5 s) or the head timeout, whichever is first
