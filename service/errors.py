"""Domain errors and the one map from error to HTTP status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

log = logging.getLogger(__name__)


class PatroliError(Exception):
    """Base class of every error the service reports to callers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidGeometry(PatroliError, ValueError):
    """A geometry is malformed: open ring, self-intersection, too few points, bad coordinates."""


class BadRequest(PatroliError, ValueError):
    """A request is malformed in a way its protocol answers with 400 (e.g. no device id)."""


class InvalidInput(PatroliError, ValueError):
    """A request value is out of range or inconsistent."""


class NotFound(PatroliError):
    """The addressed resource does not exist."""


class Conflict(PatroliError):
    """The request conflicts with stored state (e.g. a device_id already in use)."""


class Unauthenticated(PatroliError):
    """No valid API key was presented."""


class Forbidden(PatroliError):
    """The API key's role does not allow this request."""


class PayloadTooLarge(PatroliError):
    """The request body or batch is larger than allowed."""


class StoreUnavailable(PatroliError):
    """The database could not durably store or read the data."""


class RendererUnavailable(PatroliError):
    """A document cannot be rendered here now (no PDF printer, or it is busy or failed)."""


ERROR_STATUS: dict[type[PatroliError], int] = {
    BadRequest: status.HTTP_400_BAD_REQUEST,
    InvalidGeometry: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Unauthenticated: status.HTTP_401_UNAUTHORIZED,
    Forbidden: status.HTTP_403_FORBIDDEN,
    PayloadTooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
    StoreUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    RendererUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}


class ValidationIssue(BaseModel):
    """One invalid value of a request."""

    loc: list[str | int] = Field(description="Where: e.g. ['body', 'lat'] or ['query', 'from'].")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="Kind of error, e.g. 'less_than_equal'.")


class ErrorOut(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What is wrong, in one line.")
    errors: list[ValidationIssue] | None = Field(
        None, description="Request validation errors (422): one entry per invalid value."
    )


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (tracker protocols: e.g. no device id; unreadable form or JSON).",
    401: "No valid API key (or device secret) was presented.",
    403: "The key's role or unit does not allow this request.",
    404: "The addressed resource does not exist.",
    408: "The request body did not arrive in time (PATROLI_BODY_TIMEOUT_S).",
    409: "The request conflicts with stored state (e.g. a device_id already in use).",
    413: "The request body or batch is larger than allowed (PATROLI_MAX_BODY_BYTES).",
    422: "A value is invalid or out of range; `detail` names it.",
    503: "The database is unavailable; nothing was stored. Retry after `Retry-After` seconds.",
}


# Errors are JSON whatever a route answers on success (HTML, CSV, GPX, an event stream): the
# body is referenced explicitly, as FastAPI would otherwise document it in the route's type.
# service/openapi.py adds ErrorOut to the document's components.
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, each with the ErrorOut JSON body."""
    return {
        code: {"description": ERROR_DESCRIPTIONS[code], "content": _ERROR_CONTENT} for code in codes
    }


# What every route that reads a request and the database can answer; routers add the rest.
COMMON_ERRORS = (401, 403, 422, 503)
# What a route that reads a body can answer besides: unreadable, too slow, too large.
BODY_ERRORS = (400, 408, 413)


def status_for(exc: PatroliError) -> int:
    """HTTP status for a domain error (most specific class wins)."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def describe_validation(errors: Sequence[Any]) -> str:
    """Pydantic errors as one readable line, e.g. 'body.lat: Input should be ...'."""
    parts = []
    for err in errors:
        loc = err.get("loc") or ()
        where = ".".join(str(p) for p in loc) if isinstance(loc, (list, tuple)) else str(loc)
        message = str(err.get("msg")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def error_response(exc: PatroliError) -> JSONResponse:
    """The answer to a domain error: `{"detail": message}` with its status (and headers)."""
    code = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    if code == status.HTTP_503_SERVICE_UNAVAILABLE:
        headers = {"Retry-After": "5"}  # trackers retry; nothing was stored
    return JSONResponse({"detail": exc.message}, status_code=code, headers=headers)


def add_exception_handlers(app: FastAPI) -> None:
    """Answer every error with `{"detail": message}` and the status from ERROR_STATUS."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PatroliError)
        return error_response(exc)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        return JSONResponse(
            {"detail": describe_validation(errors), "errors": _jsonable(errors)},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    async def store_down(request: Request, exc: Exception) -> JSONResponse:
        # Connection-level failures mean nothing was stored: the client must retry.
        log.warning("database unavailable: %s", exc)
        return JSONResponse(
            {"detail": "database unavailable; nothing was stored, retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    async def data_refused(request: Request, exc: Exception) -> JSONResponse:
        # A safety net: request models check ranges and text before any query, so the database
        # refusing a value is a gap in them; it is still the caller's data, not a server fault.
        assert isinstance(exc, DataError | IntegrityError)
        log.warning("database refused a request's data: %s", exc)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if isinstance(exc, IntegrityError):
            return JSONResponse(
                {"detail": f"conflicts with stored data: {reason}"},
                status_code=status.HTTP_409_CONFLICT,
            )
        return JSONResponse(
            {"detail": f"the database refused a value: {reason}"},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    app.add_exception_handler(PatroliError, handle)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(OperationalError, store_down)
    app.add_exception_handler(DataError, data_refused)
    app.add_exception_handler(IntegrityError, data_refused)


def _jsonable(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc") or ()), "msg": e.get("msg"), "type": e.get("type")}
        for e in errors
    ]
