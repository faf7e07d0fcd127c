from __future__ import annotations

import dataclasses
import types
import typing

import pgrecall
from pgrecall import errors
from pgrecall.recall.modes import MODE_RANKINGS

# The public API: adding a name is a promise to keep it; removing one breaks users.
PUBLIC = {
    # the facade and its settings
    "MemoryStore", "Settings", "load_settings",
    # what goes in and comes out
    "MemoryInput", "Embedding", "Remembered", "Memory", "Page", "Hit", "RecallResult",
    "RecallOptions", "RecallKeywords", "Mode", "MODES", "EmbedStatus", "Stats", "NamespaceStats",
    "SpaceBuild",
    # memories that change
    "Version", "AuditEntry", "AuditAction",
    "ExportScope", "UNSET", "Unset", "WriteCount",
    # custom embedders
    "Embedder", "BatchingEmbedder", "BatchOutput", "Embeddings", "EmbeddingSpace",
    # errors
    "PgRecallError", "InvalidInputError", "InvalidFilterError", "NotFoundError", "ConflictError",
    "ConfigurationError", "SchemaError", "EmbeddingError", "EmbedderUnavailableError",
    "EmbedderBusyError", "ModelNotFoundError", "NotAnEmbeddingModelError", "InputTooLongError",
    "BadEmbeddingResponseError", "DimensionMismatchError", "EmbeddingSpaceMismatchError",
    "EmbeddingSpaceSwitchedError",
    "DatabaseError", "DatabaseUnavailableError", "DatabaseBusyError",
}  # fmt: skip


def test_the_public_api_is_what_is_exported() -> None:
    assert set(pgrecall.__all__) == PUBLIC
    assert len(pgrecall.__all__) == len(PUBLIC)
    exported = {
        name
        for name, value in vars(pgrecall).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported == set(pgrecall.__all__)


def test_every_error_is_exported_and_derives_from_the_base() -> None:
    error_classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert error_classes <= set(pgrecall.__all__)
    for name in error_classes:
        assert issubclass(getattr(pgrecall, name), pgrecall.PgRecallError)


def test_recall_keywords_are_the_recall_options() -> None:
    """``MemoryStore.recall``'s keywords are typed by RecallKeywords: the same names as the one
    options type, so a new option cannot be forgotten there."""
    options = {field.name for field in dataclasses.fields(pgrecall.RecallOptions)}
    assert set(typing.get_type_hints(pgrecall.RecallKeywords)) == options


def test_internals_are_not_on_the_surface() -> None:
    """Front ends and services are reached through the facade, not imported from the top."""
    for name in ("IngestionService", "QueryService", "EmbedOrDefer", "Catalog", "app"):
        assert not hasattr(pgrecall, name)


def test_every_mode_has_its_rankings() -> None:
    assert tuple(MODE_RANKINGS) == pgrecall.MODES
    assert all(r.vector or r.keyword for r in MODE_RANKINGS.values())
