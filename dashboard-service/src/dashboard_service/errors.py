"""Exception handlers: every error leaves as ``{"detail": str}``, whatever raised it."""

from __future__ import annotations

import logging
from typing import Any, Final

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from litestar.types import ExceptionHandlersMap

from dashboard_service.rules import InvalidInput
from dashboard_service.schemas import ErrorBody
from dashboard_service.store import UsernameTaken
from justchat import wire

log = logging.getLogger(__name__)

USERNAME_TAKEN: Final = "Username already exists."
TEXT_REFUSED: Final = "NUL characters and lone surrogates are not allowed"
# How msgspec words a string that fails wire.TEXT_PATTERN: said in plain words instead.
_TEXT_PATTERN_MESSAGE: Final = f"Expected `str` matching regex {wire.TEXT_PATTERN!r}"


def error_response(
    status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(ErrorBody(detail=detail), status_code=status_code, headers=headers)


def validation_detail(exc: ValidationException) -> str:
    """One sentence from Litestar's list of ``{message, key, source}`` problems."""
    parts: list[str] = []
    problems = exc.extra if isinstance(exc.extra, list) else []
    for problem in problems:
        if not isinstance(problem, dict):
            parts.append(str(problem))
            continue
        message, key = str(problem.get("message", "invalid")), problem.get("key")
        # ``data`` is the whole body: naming it would only confuse.
        whole_body = key in (None, "data")
        if message == _TEXT_PATTERN_MESSAGE:
            message = TEXT_REFUSED
        if message == repr(key):  # Litestar reports an absent value by its KeyError
            message = "the request body is missing" if whole_body else "missing"
        parts.append(message if whole_body else f"{key}: {message}")
    return f"Invalid request: {'; '.join(parts)}" if parts else str(exc.detail)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    # Litestar says 400; the API promises 422 for a body or parameter that does not validate.
    return error_response(HTTP_422_UNPROCESSABLE_ENTITY, validation_detail(exc))


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if exc.status_code == HTTP_500_INTERNAL_SERVER_ERROR:
        # Litestar's own 500s (misconfiguration) carry internals in their detail.
        return _internal(request, exc)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


def _invalid_input(_: Request[Any, Any, Any], exc: InvalidInput) -> Response[ErrorBody]:
    return error_response(HTTP_422_UNPROCESSABLE_ENTITY, str(exc))


def _username_taken(_: Request[Any, Any, Any], __: UsernameTaken) -> Response[ErrorBody]:
    return error_response(HTTP_409_CONFLICT, USERNAME_TAKEN)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error")


EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    ValidationException: _validation,
    HTTPException: _http,
    InvalidInput: _invalid_input,
    UsernameTaken: _username_taken,
    Exception: _internal,
}
