"""Checks on what users hand in; each failure is an InvalidInputError naming the problem."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pgrecall.db.vectors import vector_binary
from pgrecall.embedding.base import UNIT_NORM_TOLERANCE
from pgrecall.errors import InvalidInputError

MAX_NAMESPACE_LENGTH = 256
MAX_KEY_LENGTH = 512
MAX_METADATA_BYTES = 64 * 1024
# Deepest nesting of objects and arrays in metadata and filter values (the top object is level
# 1). Far deeper values were stored and then broke every read that serialised them.
MAX_JSON_DEPTH = 32
# Code points Python strings may hold but UTF-8 (and PostgreSQL) cannot: halves of a pair.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# One encoder for every call: json.dumps with options builds a new one each time.
_JSON = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
MAX_K = 1000
# Memories returned before and after each hit (recall/neighbours.py): a few turns of a dialogue.
MAX_NEIGHBOURS = 8
# The first and last microseconds a timestamp may not be (see check_timestamp).
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
# Longest recall query: a question or a passage, far past what an embedding model reads
# (~512 tokens); a megabyte of query text overflowed PostgreSQL's tsvector.
MAX_QUERY_CHARS = 10_000


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


def _text(value: object, what: str, max_chars: int, position: int | None, limit: str = "") -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string{_where(position)}", position=position)
    if not value.strip():
        raise InvalidInputError(
            f"{what} is empty or only whitespace{_where(position)}", position=position
        )
    if len(value) > max_chars:
        raise InvalidInputError(
            f"{what} has {len(value)} characters, more than the {max_chars} allowed"
            f"{_where(position)}{limit}",
            position=position,
        )
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{what} {problem}{_where(position)}", position=position)
    return value


def content(value: object, max_chars: int, position: int | None = None) -> str:
    """Memory text: not empty, not only whitespace, not too long, no NUL or lone surrogate."""
    return _text(value, "content", max_chars, position, " (PGRECALL_MAX_CONTENT_CHARS)")


def query(value: object) -> str:
    """Recall text: not empty, at most MAX_QUERY_CHARS characters, no NUL or lone surrogate."""
    return _text(value, "query", MAX_QUERY_CHARS, None)


def text_problem(value: str) -> str | None:
    """What keeps ``value`` out of PostgreSQL text (a NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    found = _LONE_SURROGATE.search(value)
    if found is not None:
        return f"contains a lone surrogate (U+{ord(found.group()):04X}), which is not Unicode text"
    return None


def _json_tree_problem(value: object) -> str | None:
    """The first string, key or nesting in ``value`` that jsonb must not get, or None."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"holds a string that {problem}"
        elif isinstance(item, Mapping | list | tuple):
            if depth > MAX_JSON_DEPTH:
                return f"nests deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(item, Mapping):
                for name, child in item.items():
                    problem = text_problem(name) if isinstance(name, str) else None
                    if problem is not None:
                        return f"holds a key that {problem}"
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def json_text(value: object) -> str:
    """``value`` as JSON text that jsonb takes and every read can serialise again; ValueError
    says why not (not plain JSON, a NUL or lone surrogate in a key or string, nesting deeper
    than MAX_JSON_DEPTH). Callers name the field."""
    try:
        text = _JSON.encode(value)
    except RecursionError as exc:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"is not plain JSON ({exc})") from exc
    # Cheap and conclusive when clean, the common case: the encoder writes every NUL as an
    # escape, UTF-8 refuses every surrogate, and each level needs a bracket. Only when one of
    # them fires is the tree walked, to tell a real problem from, say, the text "\u0000".
    suspicious = "\\u0000" in text or text.count("{") + text.count("[") > MAX_JSON_DEPTH
    if not suspicious:
        try:
            text.encode()
        except UnicodeEncodeError:
            suspicious = True
    if suspicious:
        problem = _json_tree_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return text


def metadata(value: object, position: int | None = None) -> str:
    """Metadata as JSON text: a JSON object with string keys, finite numbers, no NUL or lone
    surrogate, at most MAX_JSON_DEPTH levels deep."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"metadata must be a JSON object, not {type(value).__name__}{_where(position)}",
            position=position,
        )
    try:
        text = json_text(value)
    except ValueError as exc:
        raise InvalidInputError(f"metadata {exc}{_where(position)}", position=position) from exc
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


def valid_span(
    valid_from: object, valid_until: object, position: int | None = None
) -> tuple[datetime | None, datetime | None]:
    """A fact's valid time: two optional timestamps, the first before the second."""
    start = check_timestamp(valid_from, "valid_from", position)
    end = check_timestamp(valid_until, "valid_until", position)
    if start is not None and end is not None and start >= end:
        raise InvalidInputError(
            f"valid_from must come before valid_until{_where(position)}", position=position
        )
    return start, end


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


def neighbours(value: object) -> int | None:
    """How many memories around each hit: 0 to MAX_NEIGHBOURS, or None for the store's."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NEIGHBOURS:
        raise InvalidInputError(f"neighbours must be a whole number from 0 to {MAX_NEIGHBOURS}")
    return value


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
