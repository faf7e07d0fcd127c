"""Typed errors to HTTP statuses with a JSON body ``{"error": {"code", "message"}}``.

Client mistakes are 4xx, an unavailable or misconfigured backend is 503; a 500 means a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgrecall import errors

logger = logging.getLogger(__name__)


class HttpError(Exception):
    """An error raised by the HTTP layer itself."""

    status = 400
    code = "bad_request"


class Unauthorized(HttpError):
    """No API key, or an unknown one."""

    status = 401
    code = "unauthorized"


class Forbidden(HttpError):
    """The key may not use this namespace."""

    status = 403
    code = "forbidden"


class PayloadTooLarge(HttpError):
    """The body or the batch is over the configured limit."""

    status = 413
    code = "payload_too_large"


# Most specific first: the first match wins.
_STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.InvalidFilterError, 422, "invalid_filter"),
    (errors.InvalidInputError, 422, "invalid_input"),
    (errors.InputTooLongError, 422, "input_too_long"),
    (errors.NotFoundError, 404, "not_found"),
    (errors.ConflictError, 409, "conflict"),
    (errors.EmbeddingSpaceMismatchError, 409, "embedding_space_mismatch"),
    (errors.EmbeddingError, 503, "embedder_unavailable"),
    (errors.DatabaseBusyError, 503, "database_busy"),
    (errors.DatabaseError, 503, "database_unavailable"),
    (errors.ConfigurationError, 503, "misconfigured"),
]


def classify(exc: Exception) -> tuple[int, str]:
    """The HTTP status and the stable code of ``exc``, the same for every front end (the MCP
    tools report the code); (500, "internal") for an error that should not happen."""
    if isinstance(exc, HttpError):
        return exc.status, exc.code
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal"


def invalid_request_message(problems: Iterable[Mapping[str, Any]]) -> str:
    """One message naming every field a request shape refused, from pydantic's error list:
    ``field.sub: what is wrong; ...``."""
    described = []
    for problem in problems:
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        described.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return "; ".join(described)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The JSON error response every HTTP error uses (``error_body``)."""
    return JSONResponse(error_body(code, message), status_code=status)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """``{"error": {"code", "message"}}``, the body of every error of every front end. A message
    may quote what the client sent, a lone surrogate included, which UTF-8 cannot carry: such a
    character is shown as its escape."""
    readable = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"error": {"code": code, "message": readable}}


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(HttpError)
    async def http_error(_: Request, exc: HttpError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(errors.PgRecallError)
    async def pgrecall_error(_: Request, exc: errors.PgRecallError) -> JSONResponse:
        status, code = classify(exc)
        if status == 500:
            logger.error("unmapped pgrecall error", exc_info=exc)
        return error_response(status, code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        json_error = any(error.get("type") == "json_invalid" for error in exc.errors())
        status, code = (400, "malformed_json") if json_error else (422, "invalid_request")
        return error_response(status, code, invalid_request_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail)
