"""Durable ingestion: a memory's embedding state, attempts, last error and next attempt time.

Rows that exist already are embedded if they hold a vector, else pending. New rows default to
pending: a row written without a vector waits for the worker.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "memories",
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'embedded'")),
    )
    op.add_column(
        "memories",
        sa.Column("embed_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.add_column("memories", sa.Column("embed_error", sa.Text, nullable=True))
    op.add_column(
        "memories",
        sa.Column(
            "embed_after",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
    )
    op.execute("UPDATE memories SET status = 'pending' WHERE embedding IS NULL")
    op.alter_column("memories", "status", server_default=sa.text("'pending'"))
    op.create_check_constraint(
        "memories_status_known", "memories", "status IN ('pending', 'embedded', 'failed')"
    )
    op.create_check_constraint(
        "memories_embedded_has_vector",
        "memories",
        "(status = 'embedded') = (embedding IS NOT NULL)",
    )
    op.create_index(
        "memories_pending_queue",
        "memories",
        ["embed_after"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "memories_unembedded_namespace",
        "memories",
        ["namespace", "status"],
        postgresql_where=sa.text("status <> 'embedded'"),
    )


def downgrade() -> None:
    op.drop_index("memories_unembedded_namespace", table_name="memories")
    op.drop_index("memories_pending_queue", table_name="memories")
    op.drop_constraint("memories_embedded_has_vector", "memories", type_="check")
    op.drop_constraint("memories_status_known", "memories", type_="check")
    for column in ("embed_after", "embed_error", "embed_attempts", "status"):
        op.drop_column("memories", column)
