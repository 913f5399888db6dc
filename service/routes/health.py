"""Liveness and readiness probes, and the Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from service.metrics import exposition, outbox_families
from service.notify.webhooks import outbox_counts
from service.routes.deps import StoreDep, ViewerDep
from service.store.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(_: ViewerDep, store: StoreDep) -> Response:
    """Prometheus metrics of every worker of this instance, and the webhook outbox (viewer key)."""
    counts: dict[str, int] | None
    try:
        with store.read() as session:
            counts = outbox_counts(session)
    except SQLAlchemyError:
        counts = None
    return exposition(outbox_families(counts))


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


class ReadyOut(BaseModel):
    """Readiness: `ok` with the schema revision, or `unavailable` with the reason."""

    status: Literal["ok", "unavailable"]
    schema_: str | None = Field(None, alias="schema", description="Applied schema revision.")
    detail: str | None = Field(None, description="Why the service is not ready.")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready (database or schema)."}},
)
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
