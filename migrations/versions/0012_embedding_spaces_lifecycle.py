"""Change the embedding model without downtime: spaces get a state, vectors of other spaces a
table, and ``memories.embedding`` any size.

- ``embedding_spaces.state``: ``active`` (the one space ``memories.embedding`` holds and every
  process must be configured for), ``building`` (``pgrecall reembed`` is filling it),
  ``previous`` (the space before the last switch, kept for ``--rollback``) or ``retired``. At
  most one space is active and one building (partial unique indexes). The first space of an
  existing store becomes active, any other recorded one retired.
- ``space_vectors``: a memory's vector in a space that is not the active one, with the hash of
  the text it was made from (``text_hash``: a memory changed since is embedded again). Keyed and
  co-located with ``memories`` by namespace, deleted with the memory (foreign key, cascade).
- ``memories.embedding`` and ``memory_versions.embedding`` become ``vector`` without a size, so
  a switch can change the dimension in place; a check (``memories_embedding_size``) keeps
  ``memories`` to the active space's size, and the HNSW index is on the expression
  ``(embedding::vector(N))`` for the active space's N (pgvector indexes only sized vectors), and
  recall's graph branch orders by that same expression. The hot paths are otherwise untouched:
  the active space's vectors stay in ``memories.embedding`` (measured in benchmarks/RESULTS.md).
  Changing the type keeps the stored values (no rewrite: only the size modifier goes); the
  graph is rebuilt for the rows already flagged.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgrecall.db import distribute
from pgrecall.db.schema import SIZE_CHECK, SPACE_VECTORS, hnsw_index_sql, size_check

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# As in migration 0001: up to this size a vector stays in the row.
_PLAIN_STORAGE_MAX_DIMENSIONS = 1500


def _dimensions() -> int:
    """The size of ``memories.embedding`` before this migration (``vector(384)`` -> 384)."""
    value = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
            )
        )
        .scalar_one()
    )
    return int(value)


def _storage(dimensions: int) -> str:
    return "PLAIN" if dimensions <= _PLAIN_STORAGE_MAX_DIMENSIONS else "MAIN"


def _distributed(table: str) -> bool:
    if not distribute.citus_installed(op.get_bind()):
        return False
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass(:table)"),
        {"table": table},
    )
    return found.scalar() is not None


def _set_storage(table: str, storage: str) -> None:
    """Vectors inline again. Citus refuses SET STORAGE on a distributed table, and setting it
    shard by shard (run_command_on_shards) deadlocks with this transaction's own DDL on the
    shards: there the shards keep the type's default (``external``; memories rows stay inline
    anyway below toast_tuple_target, migration 0006)."""
    if not _distributed(table):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE {storage}")


def upgrade() -> None:
    op.add_column(
        "embedding_spaces",
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'retired'")),
    )
    op.execute(
        "UPDATE embedding_spaces SET state = 'active' "
        "WHERE id = (SELECT min(id) FROM embedding_spaces)"
    )
    op.create_check_constraint(
        "embedding_spaces_state_known",
        "embedding_spaces",
        "state IN ('active', 'building', 'previous', 'retired')",
    )
    for state in ("active", "building"):
        op.create_index(
            f"embedding_spaces_one_{state}",
            "embedding_spaces",
            ["state"],
            unique=True,
            postgresql_where=sa.text(f"state = '{state}'"),
        )
    dimensions = _dimensions()
    op.execute("DROP INDEX memories_embedding_hnsw")
    op.execute("ALTER TABLE memories ALTER COLUMN embedding TYPE vector")
    op.execute("ALTER TABLE memory_versions ALTER COLUMN embedding TYPE vector")
    # A new type brings the type's default storage back: set it again, on the shards too.
    for table in ("memories", "memory_versions"):
        _set_storage(table, _storage(dimensions))
    op.execute(hnsw_index_sql(dimensions))
    op.create_check_constraint(SIZE_CHECK, "memories", size_check(dimensions))
    op.execute(
        f"""
        CREATE TABLE {SPACE_VECTORS} (
            namespace text NOT NULL,
            memory_id uuid NOT NULL,
            space_id integer NOT NULL,
            text_hash bytea NOT NULL,
            embedding vector NOT NULL,
            CONSTRAINT space_vectors_pkey PRIMARY KEY (namespace, memory_id, space_id)
        )
        """
    )
    # Inline when the row fits a page (a build writes and the switch reads them all).
    op.execute(f"ALTER TABLE {SPACE_VECTORS} ALTER COLUMN embedding SET STORAGE MAIN")
    op.create_index("space_vectors_space", SPACE_VECTORS, ["space_id"])
    # Distributed (co-located with memories) before the foreign keys, as in 0011.
    distribute.distribute_tables(op.get_bind())
    op.create_foreign_key(
        "space_vectors_memory_fkey",
        SPACE_VECTORS,
        "memories",
        ["namespace", "memory_id"],
        ["namespace", "id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        "space_vectors_space_id_fkey", SPACE_VECTORS, "embedding_spaces", ["space_id"], ["id"]
    )


def downgrade() -> None:
    # Back to one sized column: only the active space's vectors survive (memories.embedding).
    op.drop_table(SPACE_VECTORS)
    dimensions = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'memories_embedding_hnsw'::regclass AND attnum = 1"
            )
        )
        .scalar_one()
    )
    op.execute("DROP INDEX memories_embedding_hnsw")
    op.drop_constraint(SIZE_CHECK, "memories")
    for table in ("memories", "memory_versions"):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN embedding TYPE vector({int(dimensions)})")
    op.execute(
        "CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_ip_ops) "
        "WITH (m = 16, ef_construction = 64) WHERE hnsw_indexed"
    )
    for state in ("active", "building"):
        op.drop_index(f"embedding_spaces_one_{state}", table_name="embedding_spaces")
    op.drop_constraint("embedding_spaces_state_known", "embedding_spaces")
    op.drop_column("embedding_spaces", "state")
