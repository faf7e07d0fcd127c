"""The HTTP form of errors: the status and ``{"error": {"code", "message"}}`` (see api.errors)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgrecall import errors
from pgrecall.api.errors import RequestError, problem


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The JSON error body every error uses. A message may quote what the client sent, a lone
    surrogate included, which UTF-8 cannot carry: such a character is shown as its escape."""
    readable = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": {"code": code, "message": readable}}, status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestError)
    @app.exception_handler(errors.PgRecallError)
    async def known_error(_: Request, exc: Exception) -> JSONResponse:
        described = problem(exc)
        return error_response(described.status, described.code, described.message)

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
