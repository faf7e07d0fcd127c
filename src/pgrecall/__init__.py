"""pgrecall: semantic memory for AI agents on PostgreSQL + pgvector."""

from importlib.metadata import version as _distribution_version

from pgrecall.config import Settings, load_settings
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import (
    BadEmbeddingResponseError,
    ConfigurationError,
    ConflictError,
    DatabaseBusyError,
    DatabaseError,
    DatabaseUnavailableError,
    DimensionMismatchError,
    EmbedderBusyError,
    EmbedderUnavailableError,
    EmbeddingError,
    EmbeddingSpaceMismatchError,
    InputTooLongError,
    InvalidFilterError,
    InvalidInputError,
    ModelNotFoundError,
    NotAnEmbeddingModelError,
    NotFoundError,
    PgRecallError,
    SchemaError,
)
from pgrecall.records import (
    Embedding,
    Hit,
    Memory,
    MemoryInput,
    NamespaceStats,
    Page,
    RecallResult,
    Remembered,
    Stats,
    WriteCount,
)
from pgrecall.store import MemoryStore
from pgrecall.transfer.exporter import ExportScope

# One source of truth: the version in pyproject.toml, read from the installed metadata.
__version__ = _distribution_version("pgrecall")

__all__ = [
    "BadEmbeddingResponseError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseBusyError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DimensionMismatchError",
    "EmbedderBusyError",
    "EmbedderUnavailableError",
    "Embedding",
    "EmbeddingError",
    "EmbeddingSpace",
    "EmbeddingSpaceMismatchError",
    "ExportScope",
    "Hit",
    "InputTooLongError",
    "InvalidFilterError",
    "InvalidInputError",
    "Memory",
    "MemoryInput",
    "MemoryStore",
    "ModelNotFoundError",
    "NamespaceStats",
    "NotAnEmbeddingModelError",
    "NotFoundError",
    "Page",
    "PgRecallError",
    "RecallResult",
    "Remembered",
    "SchemaError",
    "Settings",
    "Stats",
    "WriteCount",
    "load_settings",
]
