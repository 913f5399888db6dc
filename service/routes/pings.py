"""HTTP route for posting pings (one object or a JSON array)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import TypeAdapter, ValidationError

from service.auth import Principal
from service.config import Settings
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
from service.ingest.writer import GroupCommitter, Outcome
from service.routes.deps import TrackerDep, get_settings, get_writer
from service.routes.openapi import PING_BODY
from service.schemas import PingBatchResult, PingIn, PingResult

router = APIRouter(
    prefix="/api/v1/pings", tags=["pings"], responses=error_responses(*COMMON_ERRORS)
)

_PING = TypeAdapter(PingIn)
_PINGS = TypeAdapter(list[PingIn])

BriefQuery = Annotated[
    bool,
    Query(
        description="Short answer: `results` lists only the pings not accepted (duplicates "
        "and rejected); the counts are as always."
    ),
]


def validate_pings(
    raw: list[Any], times: FixTimes = DEFAULT_FIX_TIMES
) -> tuple[list[tuple[int, PingIn]], dict[int, str]]:
    """Valid pings by index, and a readable reason for each invalid one."""
    context = {"fix_times": times, "now": datetime.now(UTC)}
    try:
        # One call for the whole batch (no Python loop); when any ping is invalid, each is
        # validated on its own below so every one gets its own verdict.
        return list(enumerate(_PINGS.validate_python(raw, context=context))), {}
    except ValidationError:
        pass
    valid: list[tuple[int, PingIn]] = []
    invalid: dict[int, str] = {}
    for index, item in enumerate(raw):
        try:
            valid.append((index, _PING.validate_python(item, context=context)))
        except ValidationError as exc:
            invalid[index] = describe_validation(exc.errors())
    return valid, invalid


async def store_pings(
    payload: Any,
    principal: Principal,
    settings: Settings,
    writer: GroupCommitter,
    *,
    brief: bool = False,
) -> bytes:
    """Validate and store a posted ping or batch; the JSON answer once committed.

    Raises the PatroliError to answer when the request is refused as a whole.
    """
    single = not isinstance(payload, list)
    raw: list[Any] = [payload] if single else payload
    if len(raw) > settings.max_batch:
        raise PayloadTooLarge(
            f"batch of {len(raw)} pings exceeds the limit of {settings.max_batch}"
        )
    if not raw:
        raise InvalidInput("empty batch: send a ping object or a non-empty array")
    valid, invalid = validate_pings(raw, FixTimes.of(settings))
    stored: list[PingResult] = []
    if valid:
        stored = (await writer.store(principal, valid, source="json", detail=not brief)).pings
    if invalid:
        by_index = {i: r for (i, _), r in zip(valid, stored, strict=True)}
        results = [
            by_index.get(i) or PingResult(index=i, status="rejected", reason=invalid[i])
            for i in range(len(raw))
        ]
    else:
        results = stored
    result = answer(Outcome(results, []), "json", single=single)
    if brief:
        result.results = [r for r in result.results if r.status != "accepted"]
    # Serialised here in one pass (pydantic-core), instead of FastAPI validating it again.
    return result.__pydantic_serializer__.to_json(result)


@router.post(
    "",
    response_model=PingBatchResult,
    responses=error_responses(*BODY_ERRORS, 404),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": PING_BODY}}}
    },
)
async def create_pings(
    payload: Annotated[Any, Body()],
    request: Request,
    principal: TrackerDep,
    brief: BriefQuery = False,
) -> Response:
    """Store one ping or a batch; each is reported accepted, duplicate or rejected (by index).

    The response is sent only after the accepted pings are committed to the database. With
    `brief=true` the answer lists only the pings that were not accepted.
    """
    settings, writer = get_settings(request), get_writer(request)  # hot path: no extra deps
    body = await store_pings(payload, principal, settings, writer, brief=brief)
    return Response(body, media_type="application/json")
