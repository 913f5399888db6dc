"""The HTTP API gathered in one router: the ingest routes first, then one module per prefix."""

from __future__ import annotations

from fastapi import APIRouter

from service.routes import (
    areas,
    coverage,
    docs,
    events,
    health,
    keys,
    maps,
    pings,
    positions,
    presence,
    report_pages,
    reports,
    stream,
    trackers,
    units,
    webhooks,
)

api_router = APIRouter()
# The ingest routes come first: routes are matched in order, and they carry the load.
for _module in (
    pings,
    trackers,
    health,
    units,
    areas,
    positions,
    events,
    coverage,
    presence,
    reports,
    report_pages,
    keys,
    maps,
    stream,
    webhooks,
    docs,
):
    api_router.include_router(_module.router)
