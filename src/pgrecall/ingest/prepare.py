"""Preparing memories to write: validate, hash, render the indexed text, keep a given vector.

Every item of a call is prepared before any is written, so one invalid item refuses the whole
batch (the error names its position).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from pgrecall import validation
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.ingest.templates import TextTemplates
from pgrecall.records import MemoryInput

Identity = tuple[str, str, str | bytes]  # see Prepared.identity


class Prepared(NamedTuple):
    """A validated memory, ready to embed and write (a tuple: made for every memory, and a
    frozen dataclass took 1 us of the caller's time each)."""

    namespace: str
    content: str
    content_hash: bytes
    metadata: str
    key: str | None
    expires_at: datetime | None
    search_text: str | None = None  # rendered by the template; None: the content itself
    created_at: datetime | None = None  # given (an import); None: stamped at the write
    vector: bytes | None = None  # given in the store's space (pgvector binary); None: embed
    valid_from: datetime | None = None  # valid time, as the agent gave it
    valid_until: datetime | None = None

    @property
    def embed_text(self) -> str:
        """What the embedder sees."""
        return self.search_text or self.content

    @property
    def identity(self) -> Identity:
        """What makes two inputs the same memory."""
        if self.key is not None:
            return (self.namespace, "key", self.key)
        return (self.namespace, "content", self.content_hash)


def content_hash(text: str) -> bytes:
    """SHA-256 of the UTF-8 text: the identity of an unkeyed memory in its namespace."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def prepare_one(
    item: MemoryInput,
    *,
    default_namespace: str | None,
    max_chars: int,
    templates: TextTemplates,
    space: EmbeddingSpace,
    position: int | None,
) -> Prepared:
    """Validate one item (errors name ``position`` when given), hash it, render its text.

    A given vector is kept only when it was made in ``space``, the store's: a vector of another
    space is dropped and the text embedded afresh, so two spaces never meet in one store.
    """
    text = validation.content(item.content, max_chars, position)
    namespace = validation.namespace(item.namespace or default_namespace, position)
    metadata = validation.metadata(item.metadata, position)
    given = item.embedding
    vector = None
    if given is not None and given.space == space:
        vector = validation.vector(given.vector, space.dimensions, position)
    valid_from, valid_until = validation.valid_span(item.valid_from, item.valid_until, position)
    return Prepared(
        namespace,
        text,
        content_hash(text),
        metadata,
        validation.key(item.key, position),
        validation.check_timestamp(item.expires_at, "expires_at", position),
        templates.render(namespace, text, item.metadata or {}),
        validation.check_timestamp(item.created_at, "created_at", position),
        vector,
        valid_from,
        valid_until,
    )


def prepare(
    items: Sequence[MemoryInput],
    *,
    default_namespace: str | None,
    max_chars: int,
    templates: TextTemplates,
    space: EmbeddingSpace,
) -> list[Prepared]:
    """Validate every item (errors name the item's position), hash it, render its text; all of
    them before the caller writes any, so one invalid item refuses the whole batch."""
    return [
        prepare_one(
            item,
            default_namespace=default_namespace,
            max_chars=max_chars,
            templates=templates,
            space=space,
            position=position,
        )
        for position, item in enumerate(items)
    ]
