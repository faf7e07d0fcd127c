"""When each vector copy was written: a process's cache of a namespace's copies reads only the
copies written since it was loaded, so recall scores the cached ones in the process and the
rest exactly in its statement (``recall/vector_cache.py``).

- ``memory_vectors.copied_by`` (xid8): the transaction that wrote the copy, set by its default
  on insert and by the copier when it replaces a copy (``background/copies.py``). A copy is
  new to a cache loaded under snapshot S when ``NOT pg_visible_in_snapshot(copied_by, S)``:
  committed after S was taken, whatever order the writers committed in (a sequence's order
  is not the order of commits). The copies written before this migration keep NULL: older than
  any cache, which the code of this revision alone loads.
- ``memory_vectors_copied_by`` (namespace, copied_by): those new copies are an index range
  from S's xmin, few between two refreshes of the cache.

Added without a rewrite: a nullable column, then its default (a volatile default given with
the column would rewrite every copy).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from pgrecall.db.schema import MEMORY_VECTORS

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"ALTER TABLE {MEMORY_VECTORS} ADD COLUMN copied_by xid8")
    op.execute(
        f"ALTER TABLE {MEMORY_VECTORS} ALTER COLUMN copied_by SET DEFAULT pg_current_xact_id()"
    )
    op.create_index("memory_vectors_copied_by", MEMORY_VECTORS, ["namespace", "copied_by"])


def downgrade() -> None:
    op.drop_index("memory_vectors_copied_by", table_name=MEMORY_VECTORS)
    op.drop_column(MEMORY_VECTORS, "copied_by")
