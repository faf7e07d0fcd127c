"""Build the embedder the settings ask for."""

from __future__ import annotations

from pgrecall.config import Settings
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.space import configured_space


def create_embedder(settings: Settings) -> Embedder:
    """The Ollama embedder, or the in-process model when ``PGRECALL_EMBEDDER=local``."""
    space = configured_space(settings)
    if settings.embedder == "local":
        from pgrecall.embedding.local import LocalEmbedder

        return LocalEmbedder(space)
    from pgrecall.embedding.ollama.embedder import OllamaEmbedder

    return OllamaEmbedder(settings, space)
