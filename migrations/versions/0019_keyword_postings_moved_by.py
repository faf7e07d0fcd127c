"""When each keyword posting was moved, and how many were dropped: a process's cache of a
namespace's postings reads only what changed since it was loaded, so BM25 scores the cached
postings in the process and its statement returns the few written since
(``recall/keyword_cache.py``).

- ``memory_terms.moved_by`` (xid8): the transaction that moved the posting (the mover's, set
  by the column's default). A posting is new to a cache loaded under snapshot S when
  ``NOT pg_visible_in_snapshot(moved_by, S)``, as ``memory_vectors.copied_by`` (migration 0018)
  tells a vector copy. The postings moved before this migration keep NULL: older than any cache.
- ``memory_terms_moved_by`` (namespace, moved_by), partial on ``moved_by IS NOT NULL``: those
  new postings are an index range from S's xmin; partial, so the migration does not index the
  postings already there (NULL, never in a range).
- ``memory_term_counts.dropped``: how many moved memories of the namespace have lost their
  postings (deleted, or their text changed), counted by ``pgrecall_drop_terms`` in the
  transaction that drops them. It only grows, so a cache that read it under S knows every
  posting it holds is still there while the count is the same: BM25's statistics (df, the
  average length over the matching memories) change with every posting dropped, which a cache
  cannot see from the postings left.

Added without a rewrite: nullable columns, then their defaults (a volatile default given with
the column would rewrite every posting).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgrecall.db.schema import MEMORY_TERM_COUNTS, MEMORY_TERMS

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _drop_terms(dropped: str) -> str:
    """The triggers' function (migrations 0013, 0015): a moved row's postings dropped by its old
    text's lexemes (through the primary key), the namespace's count taken one off, ``dropped``."""
    return f"""
CREATE OR REPLACE FUNCTION pgrecall_drop_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {MEMORY_TERMS}
    WHERE namespace = OLD.namespace AND lexeme = ANY(tsvector_to_array(OLD.search))
      AND memory_id = OLD.id;
    UPDATE {MEMORY_TERM_COUNTS} SET documents = documents - 1{dropped}
    WHERE namespace = OLD.namespace;
    IF TG_OP = 'UPDATE' THEN
        NEW.terms_indexed := false;
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(f"ALTER TABLE {MEMORY_TERMS} ADD COLUMN moved_by xid8")
    op.execute(f"ALTER TABLE {MEMORY_TERMS} ALTER COLUMN moved_by SET DEFAULT pg_current_xact_id()")
    op.create_index(
        "memory_terms_moved_by",
        MEMORY_TERMS,
        ["namespace", "moved_by"],
        postgresql_where=sa.text("moved_by IS NOT NULL"),
    )
    op.add_column(
        MEMORY_TERM_COUNTS,
        sa.Column("dropped", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.execute(_drop_terms(", dropped = dropped + 1"))


def downgrade() -> None:
    op.execute(_drop_terms(""))
    op.drop_column(MEMORY_TERM_COUNTS, "dropped")
    op.drop_index("memory_terms_moved_by", table_name=MEMORY_TERMS)
    op.drop_column(MEMORY_TERMS, "moved_by")
