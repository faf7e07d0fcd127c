"""The schema, once, as SQLAlchemy Table objects: what Alembic migrations must produce.

Vectors are stored without a size (``vector``: a switch of embedding space may change it, see
migration 0012); the HNSW index is on ``embedding::vector(N)`` for the active space's N, so the
tables are built for a given dimension.
Ready for Citus: `memories` keys and unique constraints all lead with `namespace` (its
distribution column); `embedding_spaces` is small and would become a reference table.
"""

from __future__ import annotations

from typing import Any

from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType

MEMORIES = "memories"
MEMORY_VERSIONS = "memory_versions"
MEMORY_AUDIT = "memory_audit"
EMBEDDING_SPACES = "embedding_spaces"
SPACE_VECTORS = "space_vectors"
MEMORY_TERMS = "memory_terms"
MEMORY_VECTORS = "memory_vectors"
MEMORY_TERM_COUNTS = "memory_term_counts"
HNSW_INDEX = "memories_embedding_hnsw"
SIZE_CHECK = "memories_embedding_size"
# HNSW build parameters; pgvector's defaults, named so benchmarks and migrations agree.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# What a space may be (migration 0012): one active, at most one building.
SPACE_STATES = ("active", "building", "previous", "retired")


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (``xid8``), which SQLAlchemy does not know."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID8"


# Reflection (alembic's comparison with this module) reads the type by its name.
ischema_names["xid8"] = Xid8


def indexed_embedding(dimensions: int, alias: str = "") -> str:
    """The expression the HNSW index is built on, for a query to match it: the stored vector
    cast to its size (pgvector indexes only sized vectors). Only an int is written."""
    if type(dimensions) is not int or dimensions <= 0:
        raise ValueError(f"dimensions must be a positive int, not {dimensions!r}")
    column = f"{alias}.embedding" if alias else "embedding"
    return f"({column}::vector({dimensions}))"


def size_check(dimensions: int) -> str:
    """The check that keeps ``memories.embedding`` to the active space's size (the column has
    none since migration 0012); the switch replaces it. Only an int is written."""
    if type(dimensions) is not int or dimensions <= 0:
        raise ValueError(f"dimensions must be a positive int, not {dimensions!r}")
    return f"vector_dims(embedding) = {dimensions}"


def hnsw_index_sql(dimensions: int) -> str:
    """CREATE INDEX of the partial HNSW index over vectors of ``dimensions`` values."""
    return (
        f"CREATE INDEX {HNSW_INDEX} ON {MEMORIES} USING hnsw "
        f"({indexed_embedding(dimensions)} vector_ip_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE hnsw_indexed"
    )


def build_metadata(dimensions: int) -> MetaData:
    """Return the tables of a pgrecall database whose vectors have ``dimensions`` values."""
    metadata = MetaData()
    Table(
        EMBEDDING_SPACES,
        metadata,
        Column("id", Integer, Identity(always=True), primary_key=True),
        Column("kind", Text, nullable=False),
        Column("model", Text, nullable=False),
        Column("dimensions", Integer, nullable=False),
        Column("document_prefix", Text, nullable=False),
        Column("query_prefix", Text, nullable=False),
        Column("embedder_version", Text, nullable=False),
        Column("text_template", Text, nullable=False, server_default=text("''")),
        Column("first_used_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("state", Text, nullable=False, server_default=text("'retired'")),
        UniqueConstraint(
            "kind",
            "model",
            "dimensions",
            "document_prefix",
            "query_prefix",
            "embedder_version",
            "text_template",
            name="embedding_spaces_identity_key",
        ),
        CheckConstraint("dimensions > 0", name="embedding_spaces_dimensions_positive"),
        CheckConstraint(
            "state IN ('active', 'building', 'previous', 'retired')",
            name="embedding_spaces_state_known",
        ),
        *(
            Index(
                f"embedding_spaces_one_{state}",
                "state",
                unique=True,
                postgresql_where=text(f"state = '{state}'"),
            )
            for state in ("active", "building")
        ),
    )
    Table(
        MEMORIES,
        metadata,
        Column("namespace", Text, nullable=False),
        Column("id", UUID(as_uuid=True), nullable=False, server_default=func.gen_random_uuid()),
        Column("content", Text, nullable=False),
        Column("content_hash", LargeBinary, nullable=False),
        Column("key", Text, nullable=True),
        Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("embedding", VECTOR(), nullable=True),
        Column(
            "space_id",
            Integer,
            ForeignKey(f"{EMBEDDING_SPACES}.id", name="memories_space_id_fkey"),
            nullable=True,
        ),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("expires_at", DateTime(timezone=True), nullable=True),
        # Durable ingestion: pending rows wait for the worker; failed ones for `pgrecall retry`.
        Column("status", Text, nullable=False, server_default=text("'pending'")),
        Column("embed_attempts", Integer, nullable=False, server_default=text("0")),
        Column("embed_error", Text, nullable=True),
        # The text embedded and indexed (rendered from content and metadata by the store's
        # template); NULL means the content itself. `search` follows it (see migration 0004).
        Column("search_text", Text, nullable=True),
        Column(
            "search",
            TSVECTOR,
            Computed("to_tsvector(pgrecall_text_config(), COALESCE(search_text, content))"),
        ),
        Column("embed_after", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # In the HNSW graph: set by the indexer for rows of large namespaces (migration 0005).
        Column("hnsw_indexed", Boolean, nullable=False, server_default=false()),
        # Postings in memory_terms: set by the worker for rows of large namespaces (0013).
        Column("terms_indexed", Boolean, nullable=False, server_default=false()),
        # Vector copied into memory_vectors: set by the worker for rows of large namespaces (0014).
        Column("vector_copied", Boolean, nullable=False, server_default=false()),
        # Versions (migration 0011): the current one is here, superseded ones in
        # memory_versions; version_since NULL means current since created_at.
        Column("version", Integer, nullable=False, server_default=text("1")),
        Column("version_since", DateTime(timezone=True), nullable=True),
        # Valid time, set by the agent; invalidate() ends it and says why.
        Column("valid_from", DateTime(timezone=True), nullable=True),
        Column("valid_until", DateTime(timezone=True), nullable=True),
        Column("invalid_reason", Text, nullable=True),
        PrimaryKeyConstraint("namespace", "id", name="memories_pkey"),
        CheckConstraint(
            "valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until",
            name="memories_valid_span",
        ),
        CheckConstraint("namespace <> ''", name="memories_namespace_not_empty"),
        CheckConstraint("jsonb_typeof(metadata) = 'object'", name="memories_metadata_is_object"),
        CheckConstraint("octet_length(content_hash) = 32", name="memories_content_hash_sha256"),
        CheckConstraint(
            "(embedding IS NULL) = (space_id IS NULL)", name="memories_embedding_has_space"
        ),
        CheckConstraint(size_check(dimensions), name=SIZE_CHECK),
        CheckConstraint(
            "status IN ('pending', 'embedded', 'failed')", name="memories_status_known"
        ),
        CheckConstraint(
            "(status = 'embedded') = (embedding IS NOT NULL)", name="memories_embedded_has_vector"
        ),
        Index("memories_namespace_created_at", "namespace", "created_at", "id"),
        Index("memories_id", "id"),
        # Without an external key a memory is identified by its text; with one, by the key.
        Index(
            "memories_namespace_content_hash_key",
            "namespace",
            "content_hash",
            unique=True,
            postgresql_where=text("key IS NULL"),
        ),
        Index(
            "memories_namespace_key_key",
            "namespace",
            "key",
            unique=True,
            postgresql_where=text("key IS NOT NULL"),
        ),
        # Filters reach it only through containment (metadata @> ...): path-and-value pairs.
        Index(
            "memories_metadata_gin",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
        Index("memories_search_gin", "search", postgresql_using="gin"),
        Index("memories_pending_queue", "embed_after", postgresql_where=text("status = 'pending'")),
        # A namespace's pending memories, which every recall counts (migration 0017).
        Index(
            "memories_pending_namespace", "namespace", postgresql_where=text("status = 'pending'")
        ),
        # The sweeper's way to expired memories (expiry.py); rows without an expiry stay out.
        Index("memories_expiry", "expires_at", postgresql_where=text("expires_at IS NOT NULL")),
        # Recall's scope exclusions (migration 0016): a namespace's ids out of scope, in ranges.
        *(
            Index(
                f"memories_namespace_{name}",
                "namespace",
                column,
                postgresql_include=["id"],
                postgresql_where=text(f"{column} IS NOT NULL"),
            )
            for name, column in (("expiry", "expires_at"), ("valid_until", "valid_until"))
        ),
        Index(
            "memories_unembedded_namespace",
            "namespace",
            "status",
            postgresql_where=text("status <> 'embedded'"),
        ),
        Index(
            HNSW_INDEX,
            literal_column(indexed_embedding(dimensions)).label("graph"),
            postgresql_using="hnsw",
            postgresql_ops={"graph": "vector_ip_ops"},
            postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
            postgresql_where=text("hnsw_indexed"),
        ),
        Index(
            "memories_unindexed_namespace",
            "namespace",
            postgresql_where=text("NOT hnsw_indexed AND embedding IS NOT NULL"),
        ),
        Index(
            "memories_unposted_namespace", "namespace", postgresql_where=text("NOT terms_indexed")
        ),
        Index(
            "memories_uncopied_vectors",
            "namespace",
            postgresql_where=text("NOT vector_copied AND embedding IS NOT NULL"),
        ),
    )
    _history_tables(metadata)
    _space_vectors(metadata)
    _memory_terms(metadata)
    _memory_vectors(metadata)
    _memory_term_counts(metadata)
    return metadata


def _memory_term_counts(metadata: MetaData) -> None:
    """How many memories of each namespace have their postings in ``memory_terms``: BM25's N
    without counting the namespace (migration 0015), kept by the mover and the triggers."""
    Table(
        MEMORY_TERM_COUNTS,
        metadata,
        Column("namespace", Text, nullable=False),
        Column("documents", BigInteger, nullable=False),
        # Moved memories whose postings were dropped since, only ever growing (migration 0019).
        Column("dropped", BigInteger, nullable=False, server_default=text("0")),
        PrimaryKeyConstraint("namespace", name="memory_term_counts_pkey"),
    )


def _memory_vectors(metadata: MetaData) -> None:
    """Copies of the vectors of large namespaces' memories, for a narrow exact scan:
    co-located with memories by namespace and kept by triggers on it (migration 0014)."""
    Table(
        MEMORY_VECTORS,
        metadata,
        Column("namespace", Text, nullable=False),
        Column("id", UUID(as_uuid=True), nullable=False),
        Column("space_id", Integer, nullable=False),
        Column("embedding", VECTOR(), nullable=False),
        # The transaction that wrote the copy (migration 0018; NULL: written before it).
        Column("copied_by", Xid8(), server_default=text("pg_current_xact_id()")),
        PrimaryKeyConstraint("namespace", "id", name="memory_vectors_pkey"),
        Index("memory_vectors_copied_by", "namespace", "copied_by"),
    )


def _memory_terms(metadata: MetaData) -> None:
    """The keyword postings of moved memories, co-located with memories by namespace and kept
    by triggers on it (migration 0013), keyed so a query reads each of its lexemes as one
    index range."""
    Table(
        MEMORY_TERMS,
        metadata,
        Column("namespace", Text, nullable=False),
        Column("lexeme", Text, nullable=False),
        Column("memory_id", UUID(as_uuid=True), nullable=False),
        Column("tf", Integer, nullable=False),  # occurrences of the lexeme (positions kept)
        Column("dl", Integer, nullable=False),  # the memory's distinct lexemes, as length()
        # The transaction that moved the posting (migration 0019; NULL: moved before it).
        Column("moved_by", Xid8(), server_default=text("pg_current_xact_id()")),
        # tf and dl in the index: read by index-only scans (migration 0013 says why).
        PrimaryKeyConstraint(
            "namespace",
            "lexeme",
            "memory_id",
            name="memory_terms_pkey",
            postgresql_include=["tf", "dl"],
        ),
        Index(
            "memory_terms_moved_by",
            "namespace",
            "moved_by",
            postgresql_where=text("moved_by IS NOT NULL"),
        ),
    )


def _space_vectors(metadata: MetaData) -> None:
    """Vectors of memories in spaces other than the active one (being built, or kept for a
    rollback), co-located with memories by namespace (migration 0012)."""
    Table(
        SPACE_VECTORS,
        metadata,
        Column("namespace", Text, nullable=False),
        Column("memory_id", UUID(as_uuid=True), nullable=False),
        Column(
            "space_id",
            Integer,
            ForeignKey(f"{EMBEDDING_SPACES}.id", name="space_vectors_space_id_fkey"),
            nullable=False,
        ),
        # sha256 of the text the vector was made from: a memory changed since is stale.
        Column("text_hash", LargeBinary, nullable=False),
        Column("embedding", VECTOR(), nullable=False),
        PrimaryKeyConstraint("namespace", "memory_id", "space_id", name="space_vectors_pkey"),
        ForeignKeyConstraint(
            ["namespace", "memory_id"],
            [f"{MEMORIES}.namespace", f"{MEMORIES}.id"],
            name="space_vectors_memory_fkey",
            ondelete="CASCADE",
        ),
        Index("space_vectors_space", "space_id"),
    )


def _history_tables(metadata: MetaData) -> None:
    """Superseded versions (co-located with memories by namespace) and the audit log."""
    Table(
        MEMORY_VERSIONS,
        metadata,
        Column("namespace", Text, nullable=False),
        Column("memory_id", UUID(as_uuid=True), nullable=False),
        Column("version", Integer, nullable=False),
        Column("content", Text, nullable=False),
        Column("content_hash", LargeBinary, nullable=False),
        Column("key", Text, nullable=True),
        Column("metadata", JSONB, nullable=False),
        Column("search_text", Text, nullable=True),
        Column("embedding", VECTOR(), nullable=True),
        Column("space_id", Integer, nullable=True),
        Column("valid_from", DateTime(timezone=True), nullable=True),
        Column("valid_until", DateTime(timezone=True), nullable=True),
        Column("invalid_reason", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("current_from", DateTime(timezone=True), nullable=False),
        Column("superseded_at", DateTime(timezone=True), nullable=False),
        Column("superseded_by", Integer, nullable=False),
        PrimaryKeyConstraint("namespace", "memory_id", "version", name="memory_versions_pkey"),
        ForeignKeyConstraint(
            ["namespace", "memory_id"],
            [f"{MEMORIES}.namespace", f"{MEMORIES}.id"],
            name="memory_versions_memory_fkey",
            ondelete="CASCADE",
        ),
    )
    Table(
        MEMORY_AUDIT,
        metadata,
        Column("namespace", Text, nullable=False),
        Column(
            "at", DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")
        ),
        Column("id", UUID(as_uuid=True), nullable=False, server_default=func.gen_random_uuid()),
        Column("memory_id", UUID(as_uuid=True), nullable=False),
        Column("action", Text, nullable=False),
        Column("actor", Text, nullable=False),
        Column("version", Integer, nullable=True),
        PrimaryKeyConstraint("namespace", "at", "id", name="memory_audit_pkey"),
        CheckConstraint(
            "action IN ('create', 'supersede', 'update', 'invalidate', 'forget')",
            name="memory_audit_action_known",
        ),
    )
