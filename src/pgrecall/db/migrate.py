"""Run Alembic migrations programmatically (``pgrecall migrate``) and read the schema's state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from pgrecall.config import Settings, redact_url
from pgrecall.db.errors import CONNECTION_LOST
from pgrecall.db.pool import connect
from pgrecall.errors import DatabaseUnavailableError, SchemaError

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key held while migrating: ASCII "pgrc".
MIGRATION_LOCK_KEY = 0x70677263
MINIMUM_PGVECTOR = (0, 8)
# Alembic's `context` is a module-level proxy: two runs in one process must not interleave.
# Across processes the advisory lock taken in env.py serialises them.
_alembic_in_use = asyncio.Lock()


def alembic_config(
    *,
    dimensions: int | None = None,
    text_search_config: str | None = None,
    hnsw_ef_search: int | None = None,
) -> Config:
    """An Alembic Config pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("pgrecall.migrations")))
    if dimensions is not None:
        config.attributes["dimensions"] = dimensions
    if text_search_config is not None:
        config.attributes["text_search_config"] = text_search_config
    if hnsw_ef_search is not None:
        config.attributes["hnsw_ef_search"] = hnsw_ef_search
    return config


def default_hnsw_ef_search() -> int:
    """The HNSW candidate list size of default settings (what Citus's shards get when the
    caller of ``upgrade`` names none)."""
    default = Settings.model_fields["hnsw_ef_search"].default
    assert isinstance(default, int)
    return default


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.8.1"`` -> ``(0, 8, 1)``; non-numeric parts count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))


def require_pgvector(available: str | None, installed: str | None) -> None:
    """Refuse a server without pgvector or with one older than 0.8 (iterative index scans)."""
    if installed is None and available is None:
        raise SchemaError(
            "pgvector is not installed on this PostgreSQL server: install pgvector 0.8 or newer "
            "(or unset PGRECALL_DATABASE_URL to use the embedded PostgreSQL, which has it)"
        )
    version = installed or available or ""
    if parse_version(version) < MINIMUM_PGVECTOR:
        raise SchemaError(
            f"pgvector {version} is too old: pgrecall needs 0.8 or newer; upgrade the package, "
            "then run ALTER EXTENSION vector UPDATE"
        )


async def _with_connection(dsn: str, work: Callable[[Connection], object]) -> object:
    """Run ``work`` in one transaction. Errors are pgrecall's, in words without the driver's
    or the server's text (which can quote the DSN or the statement's values); the log gets
    the SQLSTATE and the class, at info: the error is what the caller reports, and a warning
    would reach a CLI's stderr through logging's last-resort handler as a second line."""
    engine = create_async_engine("postgresql+asyncpg://", async_creator=lambda: connect(dsn))
    try:
        async with _alembic_in_use, engine.begin() as connection:
            return await connection.run_sync(work)
    except (OSError, DBAPIError) as exc:
        cause = exc.orig.__cause__ if isinstance(exc, DBAPIError) and exc.orig else exc
        sqlstate = getattr(cause, "sqlstate", None)
        # SQLAlchemy wraps most of asyncpg's errors in a plain DBAPIError: a backend that was
        # terminated mid-migration raised ConnectionDoesNotExistError under it.
        lost = isinstance(exc, OSError | OperationalError | InterfaceError) or isinstance(
            cause, CONNECTION_LOST
        )
        logger.info(
            "migration %s: SQLSTATE %s (%s)",
            "lost its connection" if lost else "refused",
            sqlstate,
            type(cause).__name__,
        )
        if lost:
            raise DatabaseUnavailableError(
                f"cannot migrate {redact_url(dsn)}: the connection was lost; run it again"
            ) from None
        raise SchemaError(
            f"migration failed on {redact_url(dsn)}: the server refused a statement "
            f"(SQLSTATE {sqlstate}, {type(cause).__name__}); its log has the details"
        ) from None
    finally:
        await engine.dispose()


async def upgrade(
    dsn: str,
    dimensions: int,
    revision: str = "head",
    *,
    text_search_config: str | None = None,
    hnsw_ef_search: int | None = None,
) -> None:
    """Upgrade the database to ``revision``; vector columns get ``dimensions`` values, keyword
    search the given text-search configuration (default ``pgrecall_simple``). On Citus the
    tables are then distributed and the shards get ``hnsw_ef_search`` (db/distribute.py)."""

    def run(connection: Connection) -> None:
        config = alembic_config(
            dimensions=dimensions,
            text_search_config=text_search_config,
            hnsw_ef_search=hnsw_ef_search,
        )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    await _with_connection(dsn, run)


async def downgrade(dsn: str, revision: str) -> None:
    """Downgrade the database to ``revision`` (``base`` drops pgrecall's tables)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    await _with_connection(dsn, run)


async def current_revision(dsn: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""

    def run(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    result = await _with_connection(dsn, run)
    return result if isinstance(result, str) else None
