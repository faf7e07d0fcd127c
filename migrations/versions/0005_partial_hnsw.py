"""The HNSW index covers only memories flagged ``hnsw_indexed``: those of large namespaces.

Small namespaces are always searched exactly (the namespace btree, then a sort), so their rows
never need the graph, and keeping a global graph up to date made every insert pay for it
(~700 rows/s on a 2-core machine). Rows arrive unflagged; the worker's indexer flags the rows
of namespaces that reach ``exact_scan_max_rows`` in the background. Recall merges the index's
candidates with an exact scan of the scope's unflagged rows, so it is right whether or not the
indexer has caught up.

Existing rows start unflagged (the old graph is dropped); the indexer flags the large
namespaces' rows after the upgrade, and recall is exact until it has.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HNSW = (
    "CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_ip_ops) "
    "WITH (m = 16, ef_construction = 64)"
)


def upgrade() -> None:
    op.add_column(
        "memories",
        sa.Column("hnsw_indexed", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.execute("DROP INDEX IF EXISTS memories_embedding_hnsw")
    op.execute(f"{HNSW} WHERE hnsw_indexed")
    op.create_index(
        "memories_unindexed_namespace",
        "memories",
        ["namespace"],
        postgresql_where=sa.text("NOT hnsw_indexed AND embedding IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("memories_unindexed_namespace", table_name="memories")
    op.execute("DROP INDEX IF EXISTS memories_embedding_hnsw")
    op.execute(HNSW)
    op.drop_column("memories", "hnsw_indexed")
