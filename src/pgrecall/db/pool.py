"""The asyncpg pool: one per process, the binary codec for pgvector's vector on every connection."""

from __future__ import annotations

import asyncpg

from pgrecall.db.errors import CONNECT_ERRORS, connect_failure
from pgrecall.db.plan_cache import PlanCacheConnection, hand_out
from pgrecall.db.vectors import register_vector_codec
from pgrecall.errors import SchemaError

# Each connection's prepared statements survive in asyncpg's cache; keep enough for every
# query shape a service uses.
STATEMENT_CACHE_SIZE = 256


async def _init_connection(connection: asyncpg.Connection) -> None:
    try:
        await register_vector_codec(connection)
    except ValueError as exc:
        raise SchemaError(
            "the database has no pgvector extension: run `pgrecall migrate` first"
        ) from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Hand a released connection back as it is (asyncpg still rolls back an open transaction).

    asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a round trip on
    every release: 0.1-0.3 ms on every recall. pgrecall's pool connections hold no session state
    to undo: their settings come with the connection (``plan_cache_mode`` is set again at the
    next acquisition when it must change: ``plan_cache.hand_out``), its advisory locks are
    transaction-scoped, it keeps no cursors, and LISTEN runs on a connection of its own.
    """


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the pgvector codecs, for admin work outside the pool."""
    try:
        connection = await asyncpg.connect(dsn)
    except CONNECT_ERRORS as exc:
        # Not chained: the driver's text (a DSN it cannot parse, password and all) would reach
        # every traceback that is logged (uvicorn logs a failed startup's).
        raise connect_failure(exc, dsn) from None
    return connection


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, hnsw_ef_search: int = 200
) -> asyncpg.Pool:
    """The process's pool; raises DatabaseUnavailableError, ConfigurationError (a URL that is
    not one) or SchemaError, never asyncpg's.

    HNSW scans keep going until enough rows pass the namespace and metadata filters
    (``iterative_scan``), from a candidate list of ``hnsw_ef_search``. A connection is handed
    out with generic plans forced inside ``plan_cache.generic_plans()`` only.
    """
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            setup=hand_out,
            connection_class=PlanCacheConnection,
            statement_cache_size=STATEMENT_CACHE_SIZE,
            server_settings={
                "hnsw.ef_search": str(hnsw_ef_search),
                "hnsw.iterative_scan": "relaxed_order",
            },
        )
    except CONNECT_ERRORS as exc:
        # Not chained: the driver's text (a DSN it cannot parse, password and all) would reach
        # every traceback that is logged (uvicorn logs a failed startup's).
        raise connect_failure(exc, dsn) from None
    assert pool is not None
    return pool
