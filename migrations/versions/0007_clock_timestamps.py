"""Rows written together get increasing timestamps: ``created_at``/``updated_at`` default to
``clock_timestamp()`` instead of ``now()``.

Ingestion writes new memories with COPY, which takes these defaults; with ``now()`` every row of
a batch shared one transaction time and "newest first" could not follow the input order.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE memories ALTER COLUMN created_at SET DEFAULT clock_timestamp(), "
        "ALTER COLUMN updated_at SET DEFAULT clock_timestamp()"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE memories ALTER COLUMN created_at SET DEFAULT now(), "
        "ALTER COLUMN updated_at SET DEFAULT now()"
    )
