"""The JSONL line that ``export`` writes and ``import`` reads: one memory per line.

``{"namespace", "content" (or "text"), "metadata"?, "key"?, "created_at"?, "expires_at"?}``,
timestamps in ISO-8601 with their offset; with vectors also ``"vector"``, the values as
big-endian float32 in base64 (exact and a quarter of the size of decimal text; pgvector's own
binary order), and ``"space"``, the embedding space that made it (the fields of
``EmbeddingSpace``). Ids are not part of a line: a memory gets a new id where it is imported.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pgrecall.db.vectors import float32_bytes, float32_values
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import InvalidInputError
from pgrecall.records import Embedding, MemoryInput

# One encoder for every line: compact, UTF-8 as is (json.dumps with options builds one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SPACE_FIELDS = dataclasses.fields(EmbeddingSpace)


def encode_line(memory: MemoryInput) -> str:
    """``memory`` as one JSONL line (with its newline); its vector and space when it has one."""
    document: dict[str, Any] = {
        "namespace": memory.namespace,
        "content": memory.content,
        "metadata": dict(memory.metadata or {}),
        "key": memory.key,
        "created_at": _iso(memory.created_at),
        "expires_at": _iso(memory.expires_at),
    }
    if memory.embedding is not None:
        packed = float32_bytes(memory.embedding.vector)
        document["vector"] = base64.b64encode(packed).decode("ascii")
        document["space"] = dataclasses.asdict(memory.embedding.space)
    return _JSON.encode(document) + "\n"


def parse_line(text: str, default_namespace: str | None) -> MemoryInput:
    """One JSONL line as a MemoryInput; InvalidInputError says what is wrong with it."""
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise InvalidInputError("not JSON this importer reads: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidInputError(f"not JSON this importer reads: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidInputError("not a JSON object")
    content = document.get("content", document.get("text"))
    if content is None:
        raise InvalidInputError('no "content" (or "text") field')
    item = MemoryInput(
        content=content,
        namespace=document.get("namespace") or default_namespace,
        metadata=document.get("metadata"),
        key=document.get("key"),
        expires_at=_timestamp(document, "expires_at"),
        created_at=_timestamp(document, "created_at"),
        embedding=_embedding(document),
    )
    if item.namespace is None:
        raise InvalidInputError("no namespace: give one on the line or with --namespace")
    return item


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _timestamp(document: Mapping[str, Any], name: str) -> Any:
    """The field parsed when it is text; other values are left for validation to refuse."""
    value = document.get(name)
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{name} is not an ISO-8601 timestamp: {value!r}") from exc


def _embedding(document: Mapping[str, Any]) -> Embedding | None:
    encoded, described = document.get("vector"), document.get("space")
    if encoded is None and described is None:
        return None
    if encoded is None or described is None:
        raise InvalidInputError('"vector" and "space" go together: give both or neither')
    space = _space(described)
    if not isinstance(encoded, str):
        raise InvalidInputError('"vector" must be base64 text (big-endian float32 values)')
    try:
        packed = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise InvalidInputError('"vector" is not base64') from exc
    if len(packed) != 4 * space.dimensions:
        raise InvalidInputError(
            f'"vector" holds {len(packed)} bytes; its space has {space.dimensions} dimensions '
            f"({4 * space.dimensions} bytes of float32)"
        )
    return Embedding(space, float32_values(packed))


def _space(described: object) -> EmbeddingSpace:
    if not isinstance(described, dict):
        raise InvalidInputError('"space" must be a JSON object (the fields of EmbeddingSpace)')
    values: dict[str, Any] = {}
    for field in _SPACE_FIELDS:
        value = described.get(field.name, field.default)
        if field.name == "dimensions":
            if type(value) is not int or value <= 0:
                raise InvalidInputError('"space.dimensions" must be a positive whole number')
        elif not isinstance(value, str):
            raise InvalidInputError(f'"space.{field.name}" must be text')
        values[field.name] = value
    return EmbeddingSpace(**values)
