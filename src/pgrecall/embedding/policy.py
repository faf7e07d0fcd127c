"""Embed now, or store as pending: the one policy ``remember``, ``update`` and the worker share.

A write never waits on an embedder that is down. In line (``remember``, ``update``):

- while the breaker (``health``) says the embedder failed moments ago, nothing is tried and the
  texts are stored pending at once;
- a request's worth of texts may take ``inline_embed_timeout`` (10 s by default); past it the
  embedder counts as down and the texts go pending (no limit for the in-process model, which
  cannot be down, only busy);
- a transient failure (down, busy, garbled) marks the breaker and defers the texts not yet
  embedded; a permanent one (model missing, truncation off) fails them with its reason, except
  an over-long input, which fails alone while the others are embedded.

The worker embeds with the same rules but no deadline and no breaker: it is the probe that
finds the embedder answering again. Pending rows are announced on ``PENDING_CHANNEL`` so a
worker starts on them at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from pgrecall.db.errors import database_errors
from pgrecall.db.retry import with_replays
from pgrecall.db.vectors import vector_binary
from pgrecall.embedding.backends import BACKENDS
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.health import EmbedderHealth
from pgrecall.errors import EmbeddingError, InputTooLongError

# NOTIFY channel the workers LISTEN on: pending memories were written.
PENDING_CHANNEL = "pgrecall_pending"


@dataclass(slots=True)
class Outcome:
    """Per text: its vector (pgvector's binary format), or the permanent failure that stops it.

    A text with neither waits for the worker (pending); ``deferred_by`` is the transient failure
    that left it so, or None when the breaker skipped the attempt.
    """

    vectors: list[bytes | None]
    failures: list[EmbeddingError | None]
    deferred_by: EmbeddingError | None = None

    def pending(self, index: int) -> bool:
        return self.vectors[index] is None and self.failures[index] is None


class EmbedOrDefer:
    """Embeds documents under the policy above; shared by every writer of one store."""

    def __init__(
        self, embedder: Embedder, health: EmbedderHealth, inline_timeout: float, batch_size: int
    ) -> None:
        self.embedder = embedder
        self.health = health
        self._inline_timeout = inline_timeout
        self._batch_size = batch_size

    async def embed(self, texts: Sequence[str], *, inline: bool = True) -> Outcome:
        """Embed ``texts`` as documents; ``inline`` for a caller that waits (see the module)."""
        outcome = Outcome([None] * len(texts), [None] * len(texts))
        remaining = list(range(len(texts)))
        if inline and self.health.down:
            return outcome
        while remaining:
            timeout = self._timeout(len(remaining)) if inline else None
            batch = [texts[index] for index in remaining]
            try:
                embeddings = await asyncio.wait_for(self.embedder.embed_documents(batch), timeout)
            except InputTooLongError as exc:
                if exc.position is None:
                    _fail(outcome, remaining, exc)
                    return outcome
                outcome.failures[remaining.pop(exc.position)] = exc
                continue
            except TimeoutError:
                reason = (
                    f"the embedder did not answer within {timeout:g} s "
                    "(PGRECALL_INLINE_EMBED_TIMEOUT)"
                )
                self.health.mark_down(reason)
                outcome.deferred_by = EmbeddingError(reason)
                return outcome
            except EmbeddingError as exc:
                if exc.transient:
                    self.health.mark_down(str(exc))
                    outcome.deferred_by = exc
                else:
                    _fail(outcome, remaining, exc)
                return outcome
            self.health.mark_up()
            for index, vector in zip(remaining, embeddings.vectors, strict=True):
                outcome.vectors[index] = vector_binary(vector)
            return outcome
        return outcome

    def _timeout(self, count: int) -> float | None:
        """``inline_embed_timeout`` per request's worth of ``count`` texts; none in process."""
        backend = BACKENDS.get(self.embedder.space.kind)  # None: a custom embedder, bounded too
        if backend is not None and not backend.remote:
            return None
        return self._inline_timeout * math.ceil(count / self._batch_size)


def _fail(outcome: Outcome, indexes: list[int], error: EmbeddingError) -> None:
    for index in indexes:
        outcome.failures[index] = error


async def announce_pending(pool: asyncpg.Pool) -> None:
    """Wake the workers of every process: pending memories were written."""

    async def notify() -> None:
        with database_errors():
            await pool.execute(f"NOTIFY {PENDING_CHANNEL}")

    await with_replays(notify)
