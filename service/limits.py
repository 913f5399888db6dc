"""Size limits: the request body (enforced before it is read) and a ping's attributes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised inside the app when a streamed body passes the limit."""


class BodySizeLimit:
    """ASGI middleware answering 413 to bodies over `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"request body exceeds the limit of {self.max_bytes} bytes"}
        ).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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
