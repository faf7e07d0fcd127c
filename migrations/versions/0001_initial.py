"""Initial schema: pgvector, embedding_spaces, memories and their indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects import postgresql

from pgrecall.db.migrate import require_pgvector

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Up to this size a vector stays in the row (PLAIN); TOASTed 1024-d vectors doubled exact-scan
# time. Bigger ones use MAIN: inline when the row fits a page, out of line only as a last resort.
_PLAIN_STORAGE_MAX_DIMENSIONS = 1500


def upgrade() -> None:
    bind = op.get_bind()
    available = bind.execute(
        sa.text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar()
    installed = bind.execute(
        sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    ).scalar()
    require_pgvector(available, installed)
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    installed = bind.execute(
        sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    ).scalar()
    require_pgvector(available, installed)

    dimensions = int(op.get_context().config.attributes["dimensions"])  # type: ignore[union-attr]
    op.create_table(
        "embedding_spaces",
        sa.Column("id", sa.Integer, sa.Identity(always=True), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("dimensions", sa.Integer, nullable=False),
        sa.Column("document_prefix", sa.Text, nullable=False),
        sa.Column("query_prefix", sa.Text, nullable=False),
        sa.Column("embedder_version", sa.Text, nullable=False),
        sa.Column(
            "first_used_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.UniqueConstraint(
            "kind",
            "model",
            "dimensions",
            "document_prefix",
            "query_prefix",
            "embedder_version",
            name="embedding_spaces_identity_key",
        ),
        sa.CheckConstraint("dimensions > 0", name="embedding_spaces_dimensions_positive"),
    )
    op.create_table(
        "memories",
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            nullable=False,
            server_default=sa.func.gen_random_uuid(),
        ),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_hash", sa.LargeBinary, nullable=False),
        sa.Column("key", sa.Text, nullable=True),
        sa.Column(
            "metadata", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("embedding", VECTOR(dimensions), nullable=True),
        sa.Column(
            "space_id",
            sa.Integer,
            sa.ForeignKey("embedding_spaces.id", name="memories_space_id_fkey"),
            nullable=True,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "id", name="memories_pkey"),
        sa.CheckConstraint("namespace <> ''", name="memories_namespace_not_empty"),
        sa.CheckConstraint("jsonb_typeof(metadata) = 'object'", name="memories_metadata_is_object"),
        sa.CheckConstraint("octet_length(content_hash) = 32", name="memories_content_hash_sha256"),
        sa.CheckConstraint(
            "(embedding IS NULL) = (space_id IS NULL)", name="memories_embedding_has_space"
        ),
    )
    storage = "PLAIN" if dimensions <= _PLAIN_STORAGE_MAX_DIMENSIONS else "MAIN"
    op.execute(f"ALTER TABLE memories ALTER COLUMN embedding SET STORAGE {storage}")
    op.create_index("memories_namespace_created_at", "memories", ["namespace", "created_at", "id"])
    op.create_index(
        "memories_namespace_content_hash_key",
        "memories",
        ["namespace", "content_hash"],
        unique=True,
        postgresql_where=sa.text("key IS NULL"),
    )
    op.create_index(
        "memories_namespace_key_key",
        "memories",
        ["namespace", "key"],
        unique=True,
        postgresql_where=sa.text("key IS NOT NULL"),
    )
    op.create_index("memories_metadata_gin", "memories", ["metadata"], postgresql_using="gin")
    op.create_index(
        "memories_embedding_hnsw",
        "memories",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_ip_ops"},
    )


def downgrade() -> None:
    # The vector extension stays: other schemas in this database may use it.
    op.drop_table("memories")
    op.drop_table("embedding_spaces")
