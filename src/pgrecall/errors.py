"""The exceptions a pgrecall user catches: one tree, every message says what to do.

    PgRecallError
    ├── ConfigurationError           bad settings (lists every bad value)
    ├── InvalidInputError            bad text, metadata, filter or argument (also a ValueError)
    │   └── InvalidFilterError        malformed filter or unknown operator
    ├── NotFoundError                no memory with that id, or a namespace with no memories
    ├── ConflictError                a duplicate memory, or a fact invalidated already
    ├── DatabaseError
    │   ├── DatabaseUnavailableError  cannot connect / the embedded server will not start
    │   │   └── DatabaseBusyError     concurrent writes kept colliding (deadlock) through replays
    │   └── SchemaError               pgvector missing or too old, database not migrated
    ├── EmbeddingError
    │   ├── EmbedderUnavailableError  Ollama not reachable (URL shown)
    │   ├── EmbedderBusyError         Ollama answered 429/503 after every retry
    │   ├── ModelNotFoundError        model not pulled
    │   ├── NotAnEmbeddingModelError  model cannot embed
    │   ├── InputTooLongError         input over the context length with truncation off
    │   ├── BadEmbeddingResponseError wrong count, NaN/Inf, malformed body, server error
    │   └── DimensionMismatchError    vector size differs from what the store expects
    └── EmbeddingSpaceMismatchError   write/query from another model, size or prefix set
        └── EmbeddingSpaceSwitchedError  the store switched spaces: restart with the new settings

Errors from the layers below (httpx, asyncpg, pydantic) are translated to these at one boundary
each, with ``raise ... from exc``.
"""

from __future__ import annotations


class PgRecallError(Exception):
    """Base of every error pgrecall raises on purpose."""


class ConfigurationError(PgRecallError):
    """Settings are invalid; the message lists every bad value."""


class InvalidInputError(PgRecallError, ValueError):
    """An argument is unusable; ``position`` names the offending item of a batch, if any."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class InvalidFilterError(InvalidInputError):
    """A metadata filter is malformed; the message names where and what is allowed."""


class NotFoundError(PgRecallError, LookupError):
    """The memory or namespace asked for does not exist."""


class ConflictError(PgRecallError):
    """The change conflicts with what is stored: it would make two memories with the same
    identity (text or key) in a namespace, or end a fact whose validity has ended already."""


class DatabaseError(PgRecallError):
    """A database problem the user can act on."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached, or the embedded server cannot be started."""


class DatabaseBusyError(DatabaseUnavailableError):
    """Concurrent writes to the same rows collided (deadlock, serialization failure) and went
    on colliding through every replay; the operation changed nothing and may be sent again."""


class SchemaError(DatabaseError):
    """The database lacks what pgrecall needs (pgvector >= 0.8, migrations at head)."""


class EmbeddingError(PgRecallError):
    """The embedder could not turn texts into vectors.

    ``transient`` errors may pass by themselves (server down, busy, garbled answer): durable
    ingestion keeps the memory pending and tries again. Others need the user to act.
    """

    transient = False


class EmbedderUnavailableError(EmbeddingError):
    """The embedding server cannot be reached."""

    transient = True


class EmbedderBusyError(EmbeddingError):
    """The embedding server kept answering busy (429/503) through every retry."""

    transient = True


class ModelNotFoundError(EmbeddingError):
    """The model is not pulled on the embedding server."""


class NotAnEmbeddingModelError(EmbeddingError):
    """The model exists but cannot produce embeddings."""


class InputTooLongError(EmbeddingError):
    """An input exceeds the model's context length and truncation is off."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class BadEmbeddingResponseError(EmbeddingError):
    """The embedding server answered something unusable (wrong count, NaN, malformed, 5xx)."""

    transient = True


class DimensionMismatchError(EmbeddingError):
    """Vectors have another size than the store's embedding column."""


class EmbeddingSpaceMismatchError(PgRecallError):
    """A write or query comes from another embedding space than the store was built with."""


class EmbeddingSpaceSwitchedError(EmbeddingSpaceMismatchError):
    """The store switched to another embedding space (``pgrecall reembed --switch``) after this
    process was configured: it must restart with the new settings."""
