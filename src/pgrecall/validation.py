"""Checks on what users hand in; each failure is an InvalidInputError naming the problem."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pgrecall.db.vectors import vector_binary
from pgrecall.embedding.base import UNIT_NORM_TOLERANCE
from pgrecall.errors import InvalidInputError

MAX_NAMESPACE_LENGTH = 256
MAX_KEY_LENGTH = 512
MAX_METADATA_BYTES = 64 * 1024
# One encoder for every call: json.dumps with options builds a new one each time.
_JSON = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
MAX_K = 1000
# The first and last microseconds a timestamp may not be (see check_timestamp).
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def _where(position: int | None) -> str:
    return "" if position is None else f" (item {position})"


def namespace(value: object, position: int | None = None) -> str:
    """A namespace: 1 to 256 printable characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(
            f"namespace must be a non-empty string{_where(position)}", position=position
        )
    if len(value) > MAX_NAMESPACE_LENGTH or not value.isprintable():
        raise InvalidInputError(
            f"namespace must be at most {MAX_NAMESPACE_LENGTH} printable characters"
            f"{_where(position)}",
            position=position,
        )
    return value


def namespaces(value: str | Sequence[str]) -> list[str]:
    """One namespace or several, without repeats, in the order given."""
    names = [value] if isinstance(value, str) else list(value)
    if not names:
        raise InvalidInputError("name at least one namespace")
    return list(dict.fromkeys(namespace(name) for name in names))


def content(value: object, max_chars: int, position: int | None = None) -> str:
    """Memory text: not empty, not only whitespace, not too long, no NUL characters."""
    if not isinstance(value, str):
        raise InvalidInputError(f"content must be a string{_where(position)}", position=position)
    if not value.strip():
        raise InvalidInputError(
            f"content is empty or only whitespace{_where(position)}", position=position
        )
    if len(value) > max_chars:
        raise InvalidInputError(
            f"content has {len(value)} characters, more than the {max_chars} allowed"
            f"{_where(position)} (PGRECALL_MAX_CONTENT_CHARS)",
            position=position,
        )
    if "\x00" in value:
        raise InvalidInputError(
            f"content contains a NUL character{_where(position)}", position=position
        )
    return value


def metadata(value: object, position: int | None = None) -> str:
    """Metadata as JSON text: a JSON object with string keys, finite numbers, no NUL."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"metadata must be a JSON object, not {type(value).__name__}{_where(position)}",
            position=position,
        )
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metadata is not plain JSON ({exc}){_where(position)}", position=position
        ) from exc
    if "\\u0000" in text or "\x00" in text:
        raise InvalidInputError(
            f"metadata contains a NUL character{_where(position)}", position=position
        )
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise InvalidInputError(
            f"metadata is larger than {MAX_METADATA_BYTES} bytes{_where(position)}",
            position=position,
        )
    return text


def key(value: object, position: int | None = None) -> str | None:
    """An external key: None, or 1 to 512 printable characters."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_KEY_LENGTH
        or not value.isprintable()
    ):
        raise InvalidInputError(
            f"key must be 1 to {MAX_KEY_LENGTH} printable characters{_where(position)}",
            position=position,
        )
    return value


def check_timestamp(value: object, name: str, position: int | None = None) -> datetime | None:
    """A timezone-aware datetime (or None) that can be stored: every timestamp a user hands in
    passes here before anything is written. Naive ones are ambiguous. PostgreSQL takes years
    4713 BC to 294276 AD, but asyncpg sends a timestamptz as UTC through Python's datetime
    (years 1 to 9999): 9999-12-31T23:59:59-14:00 overflows there, mid-COPY. The two very ends
    of that range it sends as -infinity and infinity, and reads back without a time zone."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(
            f"{name} must be a timezone-aware datetime{_where(position)}", position=position
        )
    try:
        in_range = _FIRST < value.astimezone(UTC) < _LAST
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidInputError(
            f"{name} {value.isoformat()} is out of range: it must fall within the years 1 to "
            f"9999 in UTC{_where(position)}",
            position=position,
        )
    return value


def vector(values: Sequence[float], dimensions: int, position: int | None = None) -> bytes:
    """A given vector in pgvector's binary format: ``dimensions`` finite values of unit length
    (every stored vector is; scores are inner products)."""
    if len(values) != dimensions:
        raise InvalidInputError(
            f"the vector has {len(values)} dimensions, its space {dimensions}{_where(position)}",
            position=position,
        )
    try:
        norm = math.hypot(*values)  # in C; NaN or Inf when any value is
    except TypeError as exc:
        raise InvalidInputError(
            f"the vector holds something else than numbers{_where(position)}", position=position
        ) from exc
    if not math.isfinite(norm) or abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
        raise InvalidInputError(
            f"the vector is not finite and of unit length (norm {norm}){_where(position)}",
            position=position,
        )
    return vector_binary(values)


def k(value: object) -> int:
    """How many hits: 1 to 1000."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_K:
        raise InvalidInputError(f"k must be a whole number from 1 to {MAX_K}")
    return value


def min_score(value: object) -> float | None:
    """A score threshold in [-1, 1], or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1 <= value <= 1:
        raise InvalidInputError("min_score must be a number from -1 to 1")
    return float(value)


def json_object(text: str, what: str) -> dict[str, Any]:
    """Parse JSON text that must be an object (CLI and HTTP inputs)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    return value
