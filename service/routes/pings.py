"""HTTP route for posting pings (one object or a JSON array)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import TypeAdapter, ValidationError

from service.errors import (
    BODY_ERRORS,
    COMMON_ERRORS,
    InvalidInput,
    PayloadTooLarge,
    describe_validation,
    error_responses,
)
from service.fixtime import DEFAULT_FIX_TIMES, FixTimes
from service.ingest.results import answer
from service.ingest.writer import Outcome
from service.routes.deps import TrackerDep, get_settings, get_writer
from service.routes.openapi import PING_BODY
from service.schemas import PingBatchResult, PingIn, PingResult

router = APIRouter(
    prefix="/api/v1/pings", tags=["pings"], responses=error_responses(*COMMON_ERRORS)
)

_PING = TypeAdapter(PingIn)


def validate_pings(
    raw: list[Any], times: FixTimes = DEFAULT_FIX_TIMES
) -> tuple[list[tuple[int, PingIn]], dict[int, str]]:
    """Valid pings by index, and a readable reason for each invalid one."""
    valid: list[tuple[int, PingIn]] = []
    invalid: dict[int, str] = {}
    context = {"fix_times": times, "now": datetime.now(UTC)}
    for index, item in enumerate(raw):
        try:
            valid.append((index, _PING.validate_python(item, context=context)))
        except ValidationError as exc:
            invalid[index] = describe_validation(exc.errors())
    return valid, invalid


@router.post(
    "",
    response_model=PingBatchResult,
    responses=error_responses(*BODY_ERRORS, 404),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": PING_BODY}}}
    },
)
async def create_pings(
    payload: Annotated[Any, Body()], request: Request, principal: TrackerDep
) -> Response:
    """Store one ping or a batch; each is reported accepted, duplicate or rejected (by index).

    The response is sent only after the accepted pings are committed to the database.
    """
    settings, writer = get_settings(request), get_writer(request)  # hot path: no extra deps
    single = not isinstance(payload, list)
    raw: list[Any] = [payload] if single else payload
    if len(raw) > settings.max_batch:
        raise PayloadTooLarge(
            f"batch of {len(raw)} pings exceeds the limit of {settings.max_batch}"
        )
    if not raw:
        raise InvalidInput("empty batch: send a ping object or a non-empty array")
    valid, invalid = validate_pings(raw, FixTimes.of(settings))
    stored: dict[int, PingResult] = {}
    if valid:
        outcome = await writer.store(principal, valid, source="json")
        stored = {r.index: r for r in outcome.pings}
    results = [
        stored.get(i) or PingResult(index=i, status="rejected", reason=invalid[i])
        for i in range(len(raw))
    ]
    # Serialised here in one pass (pydantic-core), instead of FastAPI validating it again.
    body = answer(Outcome(results, []), "json", single=single).model_dump_json()
    return Response(body, media_type="application/json")
