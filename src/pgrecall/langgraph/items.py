"""LangGraph items as pgrecall memories, and LangGraph filters as pgrecall filters.

An item ``(namespace, key, value)`` is the memory keyed ``key`` in the namespace its tuple
encodes (``paths``), with metadata ``{"value": value, "indexed": bool, "ttl": minutes|None}``.
Its content, the text embedded and keyword-indexed, is what the index fields pick out of the value
(``["$"]``, the default, is the whole value as JSON), joined by newlines into one text: one vector
per item, where PostgresStore keeps one per field and ranks by the best. An item stored with
``index=False`` (or whose fields pick nothing) is not embedded: it carries a placeholder vector of
the store's space, so the embedder is never called for it, and query searches leave it out by
its ``indexed`` flag, as PostgresStore's leave out items without vectors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from langgraph.store.base import Item, SearchItem, get_text_at_path

from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import InvalidFilterError
from pgrecall.records import Embedding, Memory, MemoryInput

VALUE = "value"
INDEXED = "indexed"
TTL = "ttl"
WHOLE_VALUE = "$"
# LangGraph's comparison operators and pgrecall's names for them.
OPERATORS = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}


def indexed_text(value: Mapping[str, Any], fields: Sequence[str]) -> str:
    """The text of ``value`` at ``fields`` (LangGraph's path syntax), one line each; ''
    when the fields pick nothing."""
    texts = [text for field in fields for text in get_text_at_path(value, field) if text.strip()]
    return "\n".join(texts)


def placeholder(space: EmbeddingSpace) -> Embedding:
    """A unit vector of ``space`` for an item stored without embedding (never searched)."""
    return Embedding(space=space, vector=[1.0] + [0.0] * (space.dimensions - 1))


def memory_input(
    namespace: str,
    key: str,
    value: Mapping[str, Any],
    *,
    fields: Sequence[str] | None,
    space: EmbeddingSpace,
    ttl: float | None,
    expires_at: datetime | None,
) -> MemoryInput:
    """The memory for a put; ``fields`` None means not indexed."""
    text = indexed_text(value, fields) if fields is not None else ""
    indexed = bool(text)
    content = text if indexed else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return MemoryInput(
        content=content,
        namespace=namespace,
        key=key,
        metadata={VALUE: dict(value), INDEXED: indexed, TTL: ttl},
        expires_at=expires_at,
        embedding=None if indexed else placeholder(space),
    )


def item(memory: Memory, namespace: tuple[str, ...]) -> Item:
    """The LangGraph item a memory holds."""
    return Item(
        value=memory.metadata.get(VALUE, {}),
        key=memory.key or "",
        namespace=namespace,
        created_at=memory.created_at,
        updated_at=memory.updated_at,
    )


def search_item(memory: Memory, namespace: tuple[str, ...], score: float | None) -> SearchItem:
    """The LangGraph search result a memory holds."""
    return SearchItem(
        namespace=namespace,
        key=memory.key or "",
        value=memory.metadata.get(VALUE, {}),
        created_at=memory.created_at,
        updated_at=memory.updated_at,
        score=score,
    )


def ttl_minutes(memory: Memory) -> float | None:
    """The TTL a memory was stored with, in minutes; None for none."""
    ttl = memory.metadata.get(TTL)
    return float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else None


def _condition(field: str, condition: Any) -> dict[str, Any]:
    if (
        isinstance(condition, Mapping)
        and condition
        and all(str(k).startswith("$") for k in condition)
    ):
        translated = {}
        for operator, operand in condition.items():
            if operator not in OPERATORS:
                known = ", ".join(OPERATORS)
                raise InvalidFilterError(
                    f"filter.{field}: unknown operator {operator!r}; use {known}"
                )
            translated[OPERATORS[operator]] = operand
        return translated
    return {"eq": condition}


def pgrecall_filter(filter: Mapping[str, Any] | None, *, indexed_only: bool) -> dict[str, Any]:
    """A LangGraph filter on item values (``{"field": value}``, ``{"field": {"$gt": 1}}``) as a
    pgrecall metadata filter; ``indexed_only`` also leaves out items stored without embedding."""
    conditions: dict[str, Any] = {
        f"{VALUE}.{field}": _condition(field, condition)
        for field, condition in (filter or {}).items()
    }
    if indexed_only:
        conditions[INDEXED] = {"ne": False}
    return conditions
