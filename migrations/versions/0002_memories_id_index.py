"""Look memories up by id alone (``get``/``forget`` without a namespace).

Not unique on purpose: unique constraints of ``memories`` must include ``namespace`` to stay
Citus-ready; ids are random UUIDs, so the primary key (namespace, id) keeps them apart anyway.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("memories_id", "memories", ["id"])


def downgrade() -> None:
    op.drop_index("memories_id", table_name="memories")
