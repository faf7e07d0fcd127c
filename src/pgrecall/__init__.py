"""pgrecall: semantic memory for AI agents on PostgreSQL + pgvector.

What is exported here is the public API, kept stable and listed by ``tests/test_public_api.py``:
the ``MemoryStore`` facade, the values it takes and returns, the exceptions, the settings, and
what a custom embedder implements (``Embedder``, or ``BatchingEmbedder`` to subclass). The
subpackages (``ingest``, ``recall``, ``background``, ``embedding``, ``db``, ``api``, ``http``,
``cli``, ``transfer``) are internal: their names may change between releases.
"""

from importlib.metadata import version as _distribution_version

from pgrecall.config import Settings, load_settings
from pgrecall.embedding.base import BatchingEmbedder, BatchOutput, Embedder, Embeddings
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
    EmbeddingSpaceSwitchedError,
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
    MODES,
    UNSET,
    AuditAction,
    AuditEntry,
    Embedding,
    EmbedStatus,
    Hit,
    Memory,
    MemoryInput,
    Mode,
    NamespaceStats,
    Page,
    RecallKeywords,
    RecallOptions,
    RecallResult,
    Remembered,
    SpaceBuild,
    Stats,
    Unset,
    Version,
    WriteCount,
)
from pgrecall.store import MemoryStore
from pgrecall.transfer.exporter import ExportScope

# One source of truth: the version in pyproject.toml, read from the installed metadata.
__version__ = _distribution_version("pgrecall")

__all__ = [
    "MODES",
    "UNSET",
    "AuditAction",
    "AuditEntry",
    "BadEmbeddingResponseError",
    "BatchOutput",
    "BatchingEmbedder",
    "ConfigurationError",
    "ConflictError",
    "DatabaseBusyError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DimensionMismatchError",
    "EmbedStatus",
    "Embedder",
    "EmbedderBusyError",
    "EmbedderUnavailableError",
    "Embedding",
    "EmbeddingError",
    "EmbeddingSpace",
    "EmbeddingSpaceMismatchError",
    "EmbeddingSpaceSwitchedError",
    "Embeddings",
    "ExportScope",
    "Hit",
    "InputTooLongError",
    "InvalidFilterError",
    "InvalidInputError",
    "Memory",
    "MemoryInput",
    "MemoryStore",
    "Mode",
    "ModelNotFoundError",
    "NamespaceStats",
    "NotAnEmbeddingModelError",
    "NotFoundError",
    "Page",
    "PgRecallError",
    "RecallKeywords",
    "RecallOptions",
    "RecallResult",
    "Remembered",
    "SchemaError",
    "Settings",
    "SpaceBuild",
    "Stats",
    "Unset",
    "Version",
    "WriteCount",
    "load_settings",
]
