"""Prometheus metrics: ping outcomes and request latency, exposed at /metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from service.deps import ViewerDep

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


def instrument(app: FastAPI) -> None:
    """Time every request and serve the metrics at /metrics."""

    @app.middleware("http")
    async def timing(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        REQUESTS.labels(request.method, template, str(response.status_code)).observe(
            time.perf_counter() - began
        )
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics(_: ViewerDep) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
