"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from service.deps import StoreDep
from service.store.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(store: StoreDep) -> JSONResponse:
    """The database answers and its schema is current (503 otherwise)."""
    try:
        current = current_revision(store.engine)
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc.__class__.__name__)}, 503)
    head = head_revision()
    if current != head:
        detail = f"schema at {current}, expected {head}: run `patroli migrate`"
        return JSONResponse({"status": "unavailable", "detail": detail}, 503)
    return JSONResponse({"status": "ok", "schema": current})
