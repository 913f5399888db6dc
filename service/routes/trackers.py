"""Tracker protocol endpoints: OsmAnd (Traccar Client) and OwnTracks HTTP mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import ValidationError

from service.config import Settings
from service.errors import (
    BODY_ERRORS,
    COMMON_ERRORS,
    BadRequest,
    InvalidInput,
    describe_validation,
    error_responses,
)
from service.fixtime import FixTimes
from service.ingest.results import store_parsed
from service.ingest.writer import GroupCommitter
from service.protocols import Parsed
from service.protocols.osmand import (
    parse_osmand,
    parse_osmand_json_list,
    parse_traccar_json_body,
)
from service.protocols.owntracks import (
    owntracks_device_id,
    owntracks_identity,
    parse_owntracks_body,
)
from service.routes.deps import SettingsDep, WriterDep, device_principal
from service.routes.openapi import OSMAND_GET, OSMAND_POST, OWNTRACKS_POST

router = APIRouter(
    prefix="/api/v1",
    tags=["tracker protocols"],
    responses=error_responses(*COMMON_ERRORS, 400, 404),
)
_basic = HTTPBasic(auto_error=False)
BasicDep = Annotated[HTTPBasicCredentials | None, Depends(_basic)]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadRequest("body is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of over 4300 digits
        raise BadRequest(f"body is not valid JSON: {str(exc)[:200]}") from None


def _parsed(parse: Any) -> list[Parsed]:
    """Run a protocol parser, turning range errors into a readable 422."""
    try:
        result = parse()
    except ValidationError as exc:
        raise InvalidInput(describe_validation(exc.errors())) from None
    return result if isinstance(result, list) else [result]


SECRET_IN_PATH = (
    "The unit's device secret as the last path segment, for trackers whose configured URL "
    "keeps only origin and path (Traccar Client). It is masked in the access log."
)
_STORED: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored; the body is empty.", "content": {}}
}
_OSMAND_POST_RESPONSES = {**_STORED, **error_responses(*BODY_ERRORS)}
_OWNTRACKS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "array", "maxItems": 0}}}},
    **error_responses(*BODY_ERRORS),
}


async def _osmand(
    request: Request,
    writer: GroupCommitter,
    settings: Settings,
    basic: HTTPBasicCredentials | None,
    secret: str | None,
) -> Response:
    now = datetime.now(UTC)
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    is_json = request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/json"
    )
    if request.method == "POST" and not is_json:
        form = await request.form()
        for name, field in form.multi_items():
            params.setdefault(name, []).append(str(field))
    keys = params.get("key")
    # Authenticate before parsing: callers without a secret learn nothing about the format.
    principal = await device_principal(
        request, secret or (keys[-1] if keys else None) or (basic.password if basic else None)
    )
    if is_json:
        body = _json(await request.body())
        if isinstance(body, list):
            parsed = _parsed(
                lambda: parse_osmand_json_list(
                    body,
                    now=now,
                    max_batch=settings.max_batch,
                    speed_unit=settings.osmand_speed_unit,
                    times=FixTimes.of(settings),
                )
            )
        else:
            parsed = _parsed(lambda: parse_traccar_json_body(body, now=now))
    else:
        parsed = _parsed(
            lambda: parse_osmand(
                params,
                now=now,
                speed_unit=settings.osmand_speed_unit,
                times=FixTimes.of(settings),
            )
        )
    await store_parsed(writer, principal, parsed, "osmand")
    return Response(status_code=200)


@router.get("/osmand", response_class=Response, responses=_STORED, openapi_extra=OSMAND_GET)
@router.post(
    "/osmand",
    response_class=Response,
    responses=_OSMAND_POST_RESPONSES,
    openapi_extra=OSMAND_POST,
)
async def osmand(
    request: Request, writer: WriterDep, settings: SettingsDep, basic: BasicDep
) -> Response:
    """OsmAnd protocol (Traccar Client): query string, form body, Traccar Client 9 JSON, or a list.

    A JSON list holds flat OsmAnd parameter objects (`[{"id": ..., "lat": ..., "lon": ...,
    "timestamp": ...}]`, at most PATROLI_MAX_BATCH), each read like one request.

    Set the tracker's server URL to this endpoint; answers 200 with an empty body once stored.
    The device secret goes in the URL path (`/osmand/<secret>`), a bearer or HTTP Basic
    `Authorization` header, or `key=`.
    """
    return await _osmand(request, writer, settings, basic, None)


@router.get(
    "/osmand/{secret}", response_class=Response, responses=_STORED, openapi_extra=OSMAND_GET
)
@router.post(
    "/osmand/{secret}",
    response_class=Response,
    responses=_OSMAND_POST_RESPONSES,
    openapi_extra=OSMAND_POST,
)
async def osmand_with_secret(
    secret: Annotated[str, Path(description=SECRET_IN_PATH)],
    request: Request,
    writer: WriterDep,
    settings: SettingsDep,
    basic: BasicDep,
) -> Response:
    """OsmAnd protocol with the device secret in the path: `/api/v1/osmand/<secret>`."""
    return await _osmand(request, writer, settings, basic, secret)


async def _owntracks(
    request: Request,
    writer: GroupCommitter,
    settings: Settings,
    basic: HTTPBasicCredentials | None,
    secret: str | None,
) -> JSONResponse:
    key = secret or request.query_params.get("key") or (basic.password if basic else None)
    principal = await device_principal(request, key)
    raw = await request.body()
    if not raw.strip():
        return JSONResponse([])  # the apps post an empty body when a friend is removed
    user, device = owntracks_identity(
        basic.username if basic else None, request.headers, request.query_params
    )
    device_id = owntracks_device_id(user, device)
    body = _json(raw)
    now = datetime.now(UTC)
    parsed = _parsed(
        lambda: parse_owntracks_body(
            body, device_id=device_id, now=now, times=FixTimes.of(settings)
        )
    )
    if parsed:
        await store_parsed(writer, principal, parsed, "owntracks")
    return JSONResponse([])


@router.post("/owntracks", responses=_OWNTRACKS_RESPONSES, openapi_extra=OWNTRACKS_POST)
async def owntracks(
    request: Request, writer: WriterDep, settings: SettingsDep, basic: BasicDep
) -> JSONResponse:
    """OwnTracks HTTP mode: the unit's device_id is "<user>/<device>"; answers `[]`.

    The device secret is the HTTP Basic password (or the last path segment, or a bearer key).
    """
    return await _owntracks(request, writer, settings, basic, None)


@router.post("/owntracks/{secret}", responses=_OWNTRACKS_RESPONSES, openapi_extra=OWNTRACKS_POST)
async def owntracks_with_secret(
    secret: Annotated[str, Path(description=SECRET_IN_PATH)],
    request: Request,
    writer: WriterDep,
    settings: SettingsDep,
    basic: BasicDep,
) -> JSONResponse:
    """OwnTracks HTTP mode with the device secret in the path: `/api/v1/owntracks/<secret>`."""
    return await _owntracks(request, writer, settings, basic, secret)
