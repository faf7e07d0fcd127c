"""Alembic environment: one transaction, guarded by an advisory lock.

Called two ways: by ``pgrecall migrate`` (``pgrecall.db.migrate``), which hands over a connection
and the vector size in ``config.attributes``; or by the ``alembic`` command, which reads both from
pgrecall's settings (starting the embedded PostgreSQL when no DSN is set).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

import asyncpg
from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from pgrecall.config import load_settings
from pgrecall.db import distribute
from pgrecall.db.embedded import EmbeddedPostgres
from pgrecall.db.migrate import MIGRATION_LOCK_KEY, default_hnsw_ef_search
from pgrecall.db.schema import build_metadata
from pgrecall.embedding.space import configured_space

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _run_locked(connection: Connection) -> None:
    # The target schema matters to autogenerate only; a downgrade needs no vector size.
    dimensions = config.attributes.get("dimensions")
    context.configure(
        connection=connection,
        target_metadata=build_metadata(dimensions) if dimensions else None,
        compare_type=True,
    )
    with context.begin_transaction():
        # Two processes migrating at once: the second waits here, then sees the first's work.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        distribute.prepare(connection)
        context.run_migrations()
        if dimensions:  # an upgrade: on Citus, distribute what is not yet (db/distribute.py)
            ef_search = config.attributes.get("hnsw_ef_search") or default_hnsw_ef_search()
            distribute.distribute(connection, ef_search)


async def _run_from_settings() -> None:
    settings = load_settings()
    config.attributes.setdefault("dimensions", configured_space(settings).dimensions)
    config.attributes.setdefault("text_search_config", settings.text_search_config)
    config.attributes.setdefault("hnsw_ef_search", settings.hnsw_ef_search)
    embedded = None if settings.database_url else EmbeddedPostgres(settings.data_dir)
    dsn = settings.database_url or embedded.start()  # type: ignore[union-attr]
    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(dsn)
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_locked)
            await connection.commit()
    finally:
        await engine.dispose()
        if embedded is not None:
            embedded.stop()


if context.is_offline_mode():
    raise SystemExit("pgrecall migrations run online only: a pgvector version check needs a server")

handed_over = config.attributes.get("connection")
if handed_over is not None:
    _run_locked(handed_over)
else:
    asyncio.run(_run_from_settings())
