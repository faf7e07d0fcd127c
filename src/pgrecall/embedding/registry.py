"""Build the embedder the settings ask for (the backends are in ``backends``)."""

from __future__ import annotations

from pgrecall.config import Settings
from pgrecall.embedding.backends import BACKENDS
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.space import configured_space


def create_embedder(settings: Settings) -> Embedder:
    """The embedder of ``PGRECALL_EMBEDDER`` (Ollama by default), in the configured space."""
    return BACKENDS[settings.embedder].create(settings, configured_space(settings))
