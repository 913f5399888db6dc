"""Domain errors and the one map from error to HTTP status."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse


class PatroliError(Exception):
    """Base class of every error the service reports to callers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidGeometry(PatroliError, ValueError):
    """A geometry is malformed: open ring, self-intersection, too few points, bad coordinates."""


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


ERROR_STATUS: dict[type[PatroliError], int] = {
    InvalidGeometry: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Unauthenticated: status.HTTP_401_UNAUTHORIZED,
    Forbidden: status.HTTP_403_FORBIDDEN,
    PayloadTooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
    StoreUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def status_for(exc: PatroliError) -> int:
    """HTTP status for a domain error (most specific class wins)."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def add_exception_handlers(app: FastAPI) -> None:
    """Answer every domain error with `{"detail": message}` and its status."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PatroliError)
        code = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=code, headers=headers)

    app.add_exception_handler(PatroliError, handle)
