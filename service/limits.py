"""Limits on what one request may cost: body size and read time, request head, attributes.

- `BodySizeLimit` (ASGI): a body over the limit gets 413, whether its length is declared or it
  arrives chunked, before more than the limit is held in memory; a body that does not arrive
  within the body timeout gets 408. Either answer closes the connection.
- `HeadTimeout` protocols (uvicorn): a connection that has not sent a complete request head
  within the head timeout (after connecting, or after its previous response) is answered 408
  and closed, as is one whose head grows beyond the head size limit (431). Uvicorn itself only
  times out idle keep-alive connections, so a client sending half a header line would otherwise
  hold its connection for ever.
- `attributes_refusal`: a ping's or device report's attributes larger than allowed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.config import Settings, get_settings

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; larger heads get 431 (h11: 400)


def too_large(max_bytes: int) -> str:
    """Why a request body is refused with 413."""
    return f"request body exceeds the limit of {max_bytes} bytes"


def too_slow(timeout_s: float) -> str:
    """Why a request body is refused with 408."""
    return f"the request body did not arrive within {timeout_s:g} s"


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, 408 for bodies slower than `timeout_s`."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_refusal(send, 413, too_large(self.max_bytes))
            return

        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        received = 0
        body_done = False
        started = False  # a response has been started (by the app or by this middleware)
        refused = False  # this middleware answered; whatever the app sends is dropped

        async def refuse(status: int, detail: str) -> Message:
            nonlocal started, refused
            if not started:
                await send_refusal(send, status, detail)
                started = True
            refused = True
            return {"type": "http.disconnect"}  # the app sees a client that went away

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if refused:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            try:
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                async with asyncio.timeout(remaining):
                    message = await receive()
            except TimeoutError:
                assert self.timeout_s is not None
                return await refuse(408, too_slow(self.timeout_s))
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    return await refuse(413, too_large(self.max_bytes))
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not refused:  # the app failed on the cut-off body: already answered
                raise


async def send_refusal(send: Send, status: int, detail: str) -> None:
    """Answer `status` with `{"detail": …}` and close the connection (the body is not read)."""
    body = json.dumps({"detail": detail}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---- request heads (uvicorn protocols) -----------------------------------------------------


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadTimeout:
    """Mixin for uvicorn's HTTP protocols: bound the time and size of each request head.

    A timer runs whenever no request is being served (after connecting and after each
    response); a complete request head stops it. If it fires, or the bytes received while it
    runs pass the head size limit, the client gets 408 (or 431) and the connection is closed.
    """

    head_timeout_s: ClassVar[float | None] = None

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def connection_made(self, transport: Any) -> None:
        """Start the head timer for the connection's first request."""
        super().connection_made(transport)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._await_head()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does; stop the timer once a head is complete, or refuse the head."""
        waiting = self._head_timer is not None
        super().data_received(data)  # type: ignore[misc]
        if not waiting or self.transport.is_closing():
            return
        if self._serving():
            self._stop_head_timer()
            return
        self._head_bytes += len(data)
        limit = MAX_HEAD_BYTES
        if self._head_bytes > limit:
            self._refuse(431, "Request Header Fields Too Large", f"request head over {limit} bytes")

    def on_response_complete(self) -> None:
        """Restart the timer for the next request head unless a pipelined one is being served."""
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing() and not self._serving():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer."""
        self._stop_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _serving(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _timeout(self) -> float:
        if HeadTimeout.head_timeout_s is None:
            configure_heads(get_settings())  # a worker process started by uvicorn
        assert HeadTimeout.head_timeout_s is not None
        return HeadTimeout.head_timeout_s

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self._timeout(), self._head_timed_out)

    def _stop_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._serving() or self.transport.is_closing():
            return
        detail = f"the request head did not arrive within {self._timeout():g} s"
        self._refuse(408, "Request Timeout", detail)

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._stop_head_timer()
        self.transport.write(_raw_response(status, reason, detail))
        self.transport.close()


class H11HeadTimeout(HeadTimeout, H11Protocol):
    """Uvicorn's h11 protocol with request-head limits."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
    HttpProtocol: type[asyncio.Protocol] = H11HeadTimeout
else:

    class HttpToolsHeadTimeout(HeadTimeout, HttpToolsProtocol):
        """Uvicorn's httptools protocol with request-head limits."""

    HttpProtocol = HttpToolsHeadTimeout


def configure_heads(settings: Settings) -> None:
    """Set the request-head limits of this process's protocols from the settings."""
    HeadTimeout.head_timeout_s = settings.head_timeout_s


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` that bound slow and oversized request heads."""
    configure_heads(settings)
    return {
        # A class, not a name: uvicorn's multi-process mode imports it again in each worker,
        # where it reads the same settings from the environment.
        "http": HttpProtocol,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "timeout_keep_alive": 5,
    }


# ---- attributes ---------------------------------------------------------------------------


def attributes_size(attributes: Mapping[str, Any] | None) -> int:
    """Bytes the attributes take as compact UTF-8 JSON (as they are stored)."""
    if not attributes:
        return 0
    text = json.dumps(attributes, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode())


def attributes_refusal(attributes: Mapping[str, Any] | None, max_bytes: int) -> str | None:
    """Why attributes are refused (larger than `max_bytes` as JSON), or None when they fit."""
    size = attributes_size(attributes)
    if size <= max_bytes:
        return None
    return (
        f"attributes take {size} bytes as JSON; at most {max_bytes} are accepted "
        "(PATROLI_MAX_ATTRIBUTES_BYTES)"
    )
