"""A lean HTTP/1.1 keep-alive client for load generators: one connection, one request at a time.

httpx's connection pool walks every connection on every request; with hundreds of simulated
trackers in one process the load generator spent more CPU than the servers it measured
(profiled: ~5 ms per request, most of it in the pool). This client writes prepared request
bytes on an asyncio transport and parses the answer with httptools (uvicorn's parser), so a
request costs tens of microseconds and the measured latency is the server's.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit

import httptools


class _Answer(asyncio.Protocol):
    """The protocol of one connection: resolves a future per complete response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unparsable response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        """httptools callback: the response is complete."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.lost = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionError("connection closed before the response"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


class KeepAlive:
    """One keep-alive connection to `base` (http://host:port), reopened when it closes."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"{base!r}: only http://host:port is supported")
        self.host, self.port = parts.hostname, parts.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._conn: _Answer | None = None

    async def post(self, path: str, body: bytes, timeout: float = 30.0) -> int:
        """POST `body` to `path`; the status code (ConnectionError or TimeoutError on failure)."""
        conn = self._conn
        if conn is None or conn.lost:
            loop = asyncio.get_running_loop()
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Answer, self.host, self.port), timeout
            )
            self._conn = conn
        assert conn.transport is not None
        head = f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n"
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.transport.write(head.encode() + body)
        try:
            return await asyncio.wait_for(conn.waiter, timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None
