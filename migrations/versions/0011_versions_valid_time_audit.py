"""Memories that change: a version history, valid time, and an audit log.

- ``memories`` gains ``version`` (1 for every row already stored: today's rows become first,
  current versions) and ``version_since`` (when the current version replaced the previous one;
  NULL means since ``created_at``), plus the agent's valid time: ``valid_from``,
  ``valid_until`` and ``invalid_reason`` (set by ``invalidate``).
- ``memory_versions`` holds superseded versions only, so they never enter the recall scan of
  ``memories``. Its key leads with ``namespace`` and its foreign key is
  ``(namespace, memory_id)``: distributable by namespace and co-located with ``memories`` on
  Citus. ``ON DELETE CASCADE``: forgetting (or sweeping) a memory deletes every version's text
  and vector in the same statement.
- A ``BEFORE UPDATE`` row trigger copies the old row into ``memory_versions`` whenever an update
  changes ``content`` or ``metadata``, whatever path wrote it (keyed remember, the merge of an
  unkeyed one, ``update``). It fires under the row lock the update holds, so two concurrent
  writers never copy the same version twice or lose one. It fires on UPDATE only: a new memory
  (COPY or INSERT) costs nothing; a row rewritten after it expired (``created_at`` changes,
  see ingest_sql.STAMPS) starts afresh and its old versions are deleted. On Citus the trigger
  needs ``citus.enable_unsafe_triggers`` (set by ``distribute.prepare``; it touches only the
  co-located shard of the same namespace), and the new tables are distributed before the
  foreign key (``distribute.distribute_tables``).
- ``memory_audit``: who created, superseded, updated, invalidated or forgot which memory, when.
  It never holds a memory's text, and has no foreign key: it outlives the memory.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from pgrecall.db import distribute
from pgrecall.db.schema import MEMORY_VERSIONS

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# As in migration 0001: up to this size a vector stays in the row.
_PLAIN_STORAGE_MAX_DIMENSIONS = 1500

# The columns a version keeps, in the order the trigger writes them.
_KEPT = (
    "content, content_hash, key, metadata, search_text, embedding, space_id, "
    "valid_from, valid_until, invalid_reason, created_at"
)

_KEEP_VERSION = f"""
CREATE FUNCTION pgrecall_keep_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        -- Written again after it expired: a new memory under the old id, without a past.
        DELETE FROM memory_versions WHERE namespace = OLD.namespace AND memory_id = OLD.id;
        NEW.version := 1;
        NEW.version_since := NULL;
        RETURN NEW;
    END IF;
    INSERT INTO memory_versions (namespace, memory_id, version, {_KEPT},
                                 current_from, superseded_at, superseded_by)
    VALUES (OLD.namespace, OLD.id, OLD.version, OLD.content, OLD.content_hash, OLD.key,
            OLD.metadata, OLD.search_text, OLD.embedding, OLD.space_id, OLD.valid_from,
            OLD.valid_until, OLD.invalid_reason, OLD.created_at,
            coalesce(OLD.version_since, OLD.created_at), NEW.updated_at, OLD.version + 1);
    NEW.version := OLD.version + 1;
    NEW.version_since := NEW.updated_at;
    RETURN NEW;
END
$$
"""

_TRIGGER = """
CREATE TRIGGER memories_keep_version
BEFORE UPDATE OF content, metadata, created_at ON memories
FOR EACH ROW
WHEN (OLD.content IS DISTINCT FROM NEW.content OR OLD.metadata IS DISTINCT FROM NEW.metadata
      OR OLD.created_at IS DISTINCT FROM NEW.created_at)
EXECUTE FUNCTION pgrecall_keep_version()
"""


def _vector_type() -> str:
    """The type of ``memories.embedding`` (``vector(384)``...): versions keep the same size."""
    return str(
        op.get_bind()
        .execute(
            sa.text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
            )
        )
        .scalar_one()
    )


def upgrade() -> None:
    op.add_column(
        "memories",
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
    )
    for name in ("version_since", "valid_from", "valid_until"):
        op.add_column("memories", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column("memories", sa.Column("invalid_reason", sa.Text, nullable=True))
    op.create_check_constraint(
        "memories_valid_span",
        "memories",
        "valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until",
    )
    vector = _vector_type()
    op.execute(
        f"""
        CREATE TABLE memory_versions (
            namespace text NOT NULL,
            memory_id uuid NOT NULL,
            version integer NOT NULL,
            content text NOT NULL,
            content_hash bytea NOT NULL,
            key text,
            metadata jsonb NOT NULL,
            search_text text,
            embedding {vector},
            space_id integer,
            valid_from timestamptz,
            valid_until timestamptz,
            invalid_reason text,
            created_at timestamptz NOT NULL,
            current_from timestamptz NOT NULL,
            superseded_at timestamptz NOT NULL,
            superseded_by integer NOT NULL,
            CONSTRAINT memory_versions_pkey PRIMARY KEY (namespace, memory_id, version)
        )
        """
    )
    # Like memories (migration 0001): a vector read inline, not from TOAST, by as-of scans.
    # Set while the table is local: Citus refuses SET STORAGE on a distributed table, and its
    # shards are created with it.
    dimensions = int(re.sub(r"\D", "", vector))
    storage = "PLAIN" if dimensions <= _PLAIN_STORAGE_MAX_DIMENSIONS else "MAIN"
    op.execute(f"ALTER TABLE memory_versions ALTER COLUMN embedding SET STORAGE {storage}")
    op.create_table(
        "memory_audit",
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            nullable=False,
            server_default=sa.func.gen_random_uuid(),
        ),
        sa.Column("memory_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("namespace", "at", "id", name="memory_audit_pkey"),
        sa.CheckConstraint(
            "action IN ('create', 'supersede', 'update', 'invalidate', 'forget')",
            name="memory_audit_action_known",
        ),
    )
    # On Citus the tables are distributed (co-located with memories) before the foreign key:
    # Citus refuses one from a local table to a distributed one (db/distribute.py).
    distribute.distribute_tables(op.get_bind())
    op.create_foreign_key(
        "memory_versions_memory_fkey",
        MEMORY_VERSIONS,
        "memories",
        ["namespace", "memory_id"],
        ["namespace", "id"],
        ondelete="CASCADE",
    )
    op.execute(_KEEP_VERSION)
    op.execute(_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER memories_keep_version ON memories")
    op.execute("DROP FUNCTION pgrecall_keep_version()")
    op.drop_table("memory_audit")
    op.drop_table("memory_versions")
    op.drop_constraint("memories_valid_span", "memories")
    for name in ("invalid_reason", "valid_until", "valid_from", "version_since", "version"):
        op.drop_column("memories", name)
