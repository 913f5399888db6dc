"""Helpers shared by the benchmarks: running each backend and printing the table."""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

Row = tuple[str, ...]


def for_backends(choice: str, run: Callable[[str, Path], list[Row]]) -> list[Row]:
    """Rows of `run(backend, workdir)` for "sqlite", "postgis" or "both", in a temp workdir."""
    names = ["sqlite", "postgis"] if choice == "both" else [choice]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="patroli-bench-") as tmp:
        for name in names:
            print(f"running {name} ...", file=sys.stderr)
            rows += run(name, Path(tmp))
    return rows


def print_table(header: Row, rows: Sequence[Row]) -> None:
    """Print rows as an aligned text table under a header and a rule."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def serve(app: Any, timeout: float = 10.0) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a background thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("bench server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
