"""Keyword search: the indexed text, a tsvector kept by the database, a GIN index over it.

The text-search configuration comes from ``PGRECALL_TEXT_SEARCH_CONFIG`` when this runs
(default ``pgrecall_simple``, created here: the ``simple`` dictionary, which keeps names, numbers
and words of any language as they are, without stemming, plus English stop words, which carry no
meaning in any language mix). ``pgrecall_text_config()`` names it for queries and the column.
Embedding spaces also record the indexed-text template: changing it changes the vectors.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgrecall.errors import ConfigurationError

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DEFAULT_CONFIG = "pgrecall_simple"


def upgrade() -> None:
    bind = op.get_bind()
    attributes = op.get_context().config.attributes  # type: ignore[union-attr]
    config = str(attributes.get("text_search_config") or DEFAULT_CONFIG)
    op.execute(
        """
        DO $$ BEGIN
            CREATE TEXT SEARCH DICTIONARY pgrecall_simple_dict (
                TEMPLATE = pg_catalog.simple, STOPWORDS = english);
            CREATE TEXT SEARCH CONFIGURATION pgrecall_simple (COPY = pg_catalog.simple);
            ALTER TEXT SEARCH CONFIGURATION pgrecall_simple
                ALTER MAPPING FOR asciiword, word, numword, asciihword, hword, numhword,
                                  hword_part, hword_asciipart, hword_numpart
                WITH pgrecall_simple_dict;
        EXCEPTION WHEN duplicate_object THEN NULL;
        END $$
        """
    )
    known = bind.execute(
        sa.text("SELECT count(*) FROM pg_ts_config WHERE cfgname = :name"), {"name": config}
    ).scalar()
    if not known:
        raise ConfigurationError(
            f"PGRECALL_TEXT_SEARCH_CONFIG={config!r} is not a text search configuration of this "
            "server (SELECT cfgname FROM pg_ts_config lists them)"
        )
    # The name was checked against pg_ts_config above, so it is safe to write into the DDL.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION pgrecall_text_config() RETURNS regconfig
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT '{config}'::regconfig $$
        """
    )
    op.add_column("memories", sa.Column("search_text", sa.Text, nullable=True))
    op.execute(
        """
        ALTER TABLE memories ADD COLUMN search tsvector GENERATED ALWAYS AS
            (to_tsvector(pgrecall_text_config(), coalesce(search_text, content))) STORED
        """
    )
    op.create_index("memories_search_gin", "memories", ["search"], postgresql_using="gin")
    op.add_column(
        "embedding_spaces",
        sa.Column("text_template", sa.Text, nullable=False, server_default=sa.text("''")),
    )
    op.drop_constraint("embedding_spaces_identity_key", "embedding_spaces", type_="unique")
    op.create_unique_constraint(
        "embedding_spaces_identity_key",
        "embedding_spaces",
        [
            "kind",
            "model",
            "dimensions",
            "document_prefix",
            "query_prefix",
            "embedder_version",
            "text_template",
        ],
    )


def downgrade() -> None:
    op.drop_constraint("embedding_spaces_identity_key", "embedding_spaces", type_="unique")
    op.drop_column("embedding_spaces", "text_template")
    op.create_unique_constraint(
        "embedding_spaces_identity_key",
        "embedding_spaces",
        ["kind", "model", "dimensions", "document_prefix", "query_prefix", "embedder_version"],
    )
    op.drop_index("memories_search_gin", table_name="memories")
    op.drop_column("memories", "search")
    op.drop_column("memories", "search_text")
    op.execute("DROP FUNCTION IF EXISTS pgrecall_text_config()")
    op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS pgrecall_simple")
    op.execute("DROP TEXT SEARCH DICTIONARY IF EXISTS pgrecall_simple_dict")
