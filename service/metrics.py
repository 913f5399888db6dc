"""Prometheus metrics: ping outcomes and request latency (served at /metrics)."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PINGS = Counter("patroli_pings_total", "Pings received, by outcome", ["status"])
REQUESTS = Histogram(
    "patroli_request_seconds",
    "HTTP request latency, by route template and status code",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def count_pings(statuses: list[str]) -> None:
    """Count the outcome of each ping of a request."""
    for status in statuses:
        PINGS.labels(status=status).inc()


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
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - began
            )


def exposition() -> Response:
    """The metrics in Prometheus' text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
