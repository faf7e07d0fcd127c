"""The Embedder contract and the base every embedder shares: prefixes, batching, checks.

A subclass embeds one batch (``_embed_batch``); the base applies the space's prefixes, refuses
empty texts before anything is sent, cuts the input into batches bounded by count and characters,
keeps up to ``concurrency`` batches in flight, puts results back in input order and checks every
vector (size, finite, unit length).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import (
    BadEmbeddingResponseError,
    InputTooLongError,
    InvalidInputError,
)

# Ollama normalises in float32; anything further from 1 than this was not normalised.
UNIT_NORM_TOLERANCE = 1e-3

Vector = list[float]


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Vectors in input order, with what had to be done to them."""

    vectors: list[Vector]
    renormalised: int = 0
    truncated: int = 0


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """What one batch call returns before checks."""

    vectors: list[Vector]
    truncated: int = 0


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of one embedding space."""

    @property
    def space(self) -> EmbeddingSpace:
        """The space this embedder's vectors belong to."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts to store (the model's document prefix applied)."""
        ...

    async def embed_queries(self, texts: Sequence[str]) -> Embeddings:
        """Embed search strings (the model's query prefix applied)."""
        ...

    async def aclose(self) -> None:
        """Release connections, sessions and threads."""
        ...

    async def ping(self) -> str:
        """Check the embedder can work now; a short description, or an EmbeddingError."""
        ...


def check_vector(vector: Sequence[float], position: int, dimensions: int) -> tuple[Vector, bool]:
    """Return the vector as a unit-length list and whether it had to be re-normalised.

    Raises BadEmbeddingResponseError for the wrong size (the model's own size is checked
    before the first request, so this is a garbled answer), NaN/Inf or a zero vector.
    """
    if len(vector) != dimensions:
        raise BadEmbeddingResponseError(
            f"the embedder returned a {len(vector)}-dimensional vector at position {position}, "
            f"but this store holds {dimensions}-dimensional ones"
        )
    # hypot runs in C and is NaN or Inf when any value is (a loop in Python cost 60 us).
    norm = math.hypot(*vector)
    if not math.isfinite(norm):
        raise BadEmbeddingResponseError(
            f"the embedder returned NaN or Inf in the vector at position {position}"
        )
    if norm == 0.0:
        raise BadEmbeddingResponseError(
            f"the embedder returned an all-zero vector at position {position}"
        )
    if abs(norm - 1.0) <= UNIT_NORM_TOLERANCE:
        return vector if isinstance(vector, list) else list(vector), False
    return [value / norm for value in vector], True


def plan_batches(texts: Sequence[str], max_items: int, max_chars: int) -> list[range]:
    """Cut positions into consecutive batches of at most ``max_items`` texts and ``max_chars``
    characters (a single longer text forms a batch of its own)."""
    batches: list[range] = []
    start, chars = 0, 0
    for position, text in enumerate(texts):
        size = len(text)
        full = position - start >= max_items or (chars + size > max_chars and position > start)
        if full:
            batches.append(range(start, position))
            start, chars = position, 0
        chars += size
    if start < len(texts):
        batches.append(range(start, len(texts)))
    return batches


class BatchingEmbedder:
    """Shared machinery; subclasses implement ``_embed_batch`` and set the space."""

    def __init__(
        self,
        space: EmbeddingSpace,
        *,
        batch_size: int,
        batch_chars: int,
        concurrency: int,
    ) -> None:
        self._space = space
        self._batch_size = batch_size
        self._batch_chars = batch_chars
        self._in_flight = asyncio.Semaphore(concurrency)

    @property
    def space(self) -> EmbeddingSpace:
        """The space this embedder's vectors belong to."""
        return self._space

    async def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts to store, with the space's document prefix."""
        return await self._embed(texts, self._space.document_prefix)

    async def embed_queries(self, texts: Sequence[str]) -> Embeddings:
        """Embed search strings, with the space's query prefix."""
        return await self._embed(texts, self._space.query_prefix)

    async def aclose(self) -> None:
        """Nothing to release by default."""

    async def ping(self) -> str:
        """In-process embedders are ready once built."""
        return f"{self._space.kind}:{self._space.model} in process"

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        raise NotImplementedError

    async def _embed(self, texts: Sequence[str], prefix: str) -> Embeddings:
        for position, text in enumerate(texts):
            if not text or not text.strip():
                # Ollama returns no vector for "", which would shift every later result.
                raise InvalidInputError(
                    f"text at position {position} is empty or only whitespace", position=position
                )
        prefixed = [prefix + text for text in texts]
        batches = plan_batches(prefixed, self._batch_size, self._batch_chars)
        outputs: Sequence[BatchOutput]
        if len(batches) == 1:  # a query's one batch: awaited here, not a task (``gather``'s)
            outputs = [await self._run_batch(prefixed, 0)]
        else:
            outputs = await asyncio.gather(
                *(self._run_batch([prefixed[i] for i in batch], batch.start) for batch in batches)
            )
        vectors: list[Vector] = []
        renormalised = truncated = 0
        for batch, output in zip(batches, outputs, strict=True):
            if len(output.vectors) != len(batch):
                raise BadEmbeddingResponseError(
                    f"the embedder returned {len(output.vectors)} vectors for {len(batch)} texts"
                )
            truncated += output.truncated
            for position, vector in zip(batch, output.vectors, strict=True):
                checked, fixed = check_vector(vector, position, self._space.dimensions)
                vectors.append(checked)
                renormalised += fixed
        return Embeddings(vectors=vectors, renormalised=renormalised, truncated=truncated)

    async def _run_batch(self, texts: list[str], offset: int) -> BatchOutput:
        async with self._in_flight:
            try:
                return await self._embed_batch(texts)
            except InputTooLongError as exc:
                if exc.position is None or offset == 0:
                    raise
                position = offset + exc.position
                raise InputTooLongError(
                    str(exc).replace(f"position {exc.position}", f"position {position}", 1),
                    position=position,
                ) from exc
