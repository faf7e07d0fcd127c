"""Every error a front end reports, as a status, a stable code and a message that says what to do.

The one mapping from pgrecall's exceptions to codes: the HTTP API answers with the status and a
body ``{"error": {"code", "message"}}``, MCP returns a tool error with the same code and
message, the CLI prints the message. Client mistakes are 4xx, an unavailable or misconfigured
backend is 503; a 500 means a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgrecall import errors

logger = logging.getLogger(__name__)


class RequestError(Exception):
    """A request a front end refuses before it reaches the store (key, scope, size)."""

    status = 400
    code = "bad_request"


class Unauthorized(RequestError):
    """No API key, or an unknown one."""

    status = 401
    code = "unauthorized"


class Forbidden(RequestError):
    """The key may not use this namespace."""

    status = 403
    code = "forbidden"


class PayloadTooLarge(RequestError):
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
    (errors.EmbeddingSpaceSwitchedError, 409, "embedding_space_switched"),
    (errors.EmbeddingSpaceMismatchError, 409, "embedding_space_mismatch"),
    (errors.EmbeddingError, 503, "embedder_unavailable"),
    (errors.DatabaseBusyError, 503, "database_busy"),
    (errors.DatabaseError, 503, "database_unavailable"),
    (errors.ConfigurationError, 503, "misconfigured"),
]


@dataclass(frozen=True, slots=True)
class Problem:
    """What a front end tells the client about an exception."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, dict[str, str]]:
        """``{"error": {"code", "message"}}``, the body every front end sends. A message may
        quote what the client sent, a lone surrogate included, which UTF-8 cannot carry: such a
        character is shown as its escape."""
        readable = self.message.encode("utf-8", "backslashreplace").decode("utf-8")
        return {"error": {"code": self.code, "message": readable}}


def refusal(refusals: Iterable[Mapping[str, Any]]) -> Problem:
    """A request shape's refusal (pydantic's error list) as one 422 naming every field:
    ``field.sub: what is wrong; ...``."""
    described = []
    for refusal in refusals:
        where = ".".join(str(part) for part in refusal.get("loc", ()) if part != "body")
        described.append(f"{where or 'body'}: {refusal.get('msg', 'invalid')}")
    return Problem(422, "invalid_request", "; ".join(described))


def problem(exc: Exception) -> Problem:
    """The status, code and message of ``exc``; an exception pgrecall does not know is a bug
    (500), logged with its traceback, and its text is not shown: it may carry internals."""
    if isinstance(exc, RequestError):
        return Problem(exc.status, exc.code, str(exc))
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return Problem(status, code, str(exc))
    logger.error("unmapped error", exc_info=exc)
    return Problem(500, "internal", "internal error: the server's log has the details")
