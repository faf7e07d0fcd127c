"""Embedding spaces: which model, size and prefixes produced a vector.

Vectors from two spaces must never be compared; the store records its space and refuses others.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgrecall.config import MAX_INDEXED_DIMENSIONS, Settings
from pgrecall.embedding.backends import BACKENDS
from pgrecall.embedding.models import ModelInfo, canonical_name, known_model
from pgrecall.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    """The identity of a vector space; equal spaces give comparable vectors."""

    kind: str
    model: str
    dimensions: int
    document_prefix: str
    query_prefix: str
    embedder_version: str = ""
    text_template: str = ""

    def describe(self) -> str:
        """A one-line, human-readable name for messages."""
        prefixes = f"document prefix {self.document_prefix!r}, query prefix {self.query_prefix!r}"
        version = f", {self.embedder_version}" if self.embedder_version else ""
        template = f", template {self.text_template}" if self.text_template else ""
        return f"{self.kind}:{self.model} ({self.dimensions}d, {prefixes}{version}{template})"


def model_info_for(settings: Settings) -> ModelInfo | None:
    """What pgrecall knows of the configured model, or None if it is not in its table."""
    return BACKENDS[settings.embedder].fixed_model or known_model(settings.model)


def configured_space(settings: Settings, model_dimensions: int | None = None) -> EmbeddingSpace:
    """The space the settings describe; ``model_dimensions`` is the model's full size when the
    caller asked the server (needed for models pgrecall does not know)."""
    info = model_info_for(settings)
    full_size = model_dimensions or (info.dimensions if info else None)
    dimensions = settings.embed_dimensions or full_size
    if dimensions is None:
        raise ConfigurationError(
            f"model {settings.model!r} is not one pgrecall knows: set PGRECALL_EMBED_DIMENSIONS "
            "to its vector size (pgrecall doctor shows it)"
        )
    if full_size is not None and dimensions > full_size:
        raise ConfigurationError(
            f"PGRECALL_EMBED_DIMENSIONS={dimensions} is larger than {settings.model}'s "
            f"{full_size} dimensions"
        )
    if dimensions > MAX_INDEXED_DIMENSIONS:
        raise ConfigurationError(
            f"{settings.model} makes {dimensions}-dimensional vectors; pgvector indexes at most "
            f"{MAX_INDEXED_DIMENSIONS}: set PGRECALL_EMBED_DIMENSIONS to {MAX_INDEXED_DIMENSIONS} "
            "or less (Ollama shortens and re-normalises them)"
        )
    backend = BACKENDS[settings.embedder]
    fixed = backend.fixed_model
    if fixed is not None and dimensions != fixed.dimensions:
        raise ConfigurationError(
            f"the {backend.name} model makes {fixed.dimensions}-dimensional vectors only; "
            "unset PGRECALL_EMBED_DIMENSIONS"
        )
    document_prefix = settings.document_prefix
    query_prefix = settings.query_prefix
    if fixed is not None and (document_prefix, query_prefix) not in (
        (None, None),
        (fixed.document_prefix, fixed.query_prefix),
    ):
        raise ConfigurationError(
            f"the {backend.name} model adds its own prefixes ({fixed.document_prefix!r} and "
            f"{fixed.query_prefix!r}): unset PGRECALL_DOCUMENT_PREFIX and PGRECALL_QUERY_PREFIX"
        )
    if document_prefix is None:
        document_prefix = info.document_prefix if info else ""
    if query_prefix is None:
        query_prefix = info.query_prefix if info else ""
    return EmbeddingSpace(
        kind=backend.name,
        model=fixed.name if fixed is not None else canonical_name(settings.model),
        dimensions=dimensions,
        document_prefix=document_prefix,
        query_prefix=query_prefix,
        embedder_version=backend.version,
    )
