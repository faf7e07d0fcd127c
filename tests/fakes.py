"""A deterministic embedder for tests that need many vectors fast (plans, isolation).

Each text maps to a fixed random unit vector (seeded by its SHA-256), so rankings can be checked
against numpy; texts of the form "cluster:<n> ..." lean towards a shared direction.
"""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np

from pgrecall.embedding.base import BatchingEmbedder, BatchOutput
from pgrecall.embedding.space import EmbeddingSpace

DIMENSIONS = 384


def text_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(DIMENSIONS).astype(np.float32)
    return vector / np.linalg.norm(vector)


class HashEmbedder(BatchingEmbedder):
    """Random-but-fixed unit vectors; a space of its own."""

    def __init__(self, model: str = "hash-test") -> None:
        space = EmbeddingSpace("test", model, DIMENSIONS, "", "")
        super().__init__(space, batch_size=1024, batch_chars=10**9, concurrency=1)
        self.calls = 0
        self.texts_embedded = 0

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        self.calls += 1
        self.texts_embedded += len(texts)
        return BatchOutput(vectors=[text_vector(text).tolist() for text in texts])


class SlowHashEmbedder(HashEmbedder):
    """A HashEmbedder that takes ``delay`` seconds per request, like a model at work."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        await asyncio.sleep(self.delay)
        return await super()._embed_batch(texts)
