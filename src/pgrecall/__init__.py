"""pgrecall: semantic memory for AI agents on PostgreSQL + pgvector."""

from pgrecall.config import Settings, load_settings
from pgrecall.errors import (
    BadEmbeddingResponseError,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    DimensionMismatchError,
    EmbedderBusyError,
    EmbedderUnavailableError,
    EmbeddingError,
    EmbeddingSpaceMismatchError,
    InputTooLongError,
    InvalidInputError,
    ModelNotFoundError,
    NotAnEmbeddingModelError,
    PgRecallError,
    SchemaError,
)

__version__ = "0.1.0"

__all__ = [
    "BadEmbeddingResponseError",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DimensionMismatchError",
    "EmbedderBusyError",
    "EmbedderUnavailableError",
    "EmbeddingError",
    "EmbeddingSpaceMismatchError",
    "InputTooLongError",
    "InvalidInputError",
    "ModelNotFoundError",
    "NotAnEmbeddingModelError",
    "PgRecallError",
    "SchemaError",
    "Settings",
    "load_settings",
]
