"""The HTTP form of errors: the status and ``{"error": {"code", "message"}}`` (see api.errors)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgrecall import errors
from pgrecall.api.errors import Problem, RequestError, problem, refusal


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The JSON error response every error uses (``Problem.body``)."""
    return JSONResponse(Problem(status, code, message).body(), status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestError)
    @app.exception_handler(errors.PgRecallError)
    async def known_error(_: Request, exc: Exception) -> JSONResponse:
        described = problem(exc)
        return error_response(described.status, described.code, described.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        refused = refusal(exc.errors())
        json_error = any(error.get("type") == "json_invalid" for error in exc.errors())
        status, code = (400, "malformed_json") if json_error else (refused.status, refused.code)
        return error_response(status, code, refused.message)

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail)
