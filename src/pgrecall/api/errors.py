"""Typed errors to HTTP statuses with a JSON body ``{"error": {"code", "message"}}``.

Client mistakes are 4xx, an unavailable or misconfigured backend is 503; a 500 means a bug.
"""

from __future__ import annotations

import logging

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


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The JSON error body every error uses. A message may quote what the client sent, a lone
    surrogate included, which UTF-8 cannot carry: such a character is shown as its escape."""
    readable = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": {"code": code, "message": readable}}, status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(HttpError)
    async def http_error(_: Request, exc: HttpError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(errors.PgRecallError)
    async def pgrecall_error(_: Request, exc: errors.PgRecallError) -> JSONResponse:
        for kind, status, code in _STATUS:
            if isinstance(exc, kind):
                return error_response(status, code, str(exc))
        logger.error("unmapped pgrecall error", exc_info=exc)
        return error_response(500, "internal", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        json_error = any(error.get("type") == "json_invalid" for error in exc.errors())
        status, code = (400, "malformed_json") if json_error else (422, "invalid_request")
        return error_response(status, code, "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail)
