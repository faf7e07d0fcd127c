"""The one boundary where asyncpg's exceptions become pgrecall's.

The messages say what happened and what to do, never the server's own text: it can quote the
values of the statement, name server processes and table internals, and it reaches HTTP
clients. The log gets the SQLSTATE and the exception's class, which is what an operator needs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import asyncpg

from pgrecall.db.schema import SIZE_CHECK
from pgrecall.errors import (
    DatabaseBusyError,
    DatabaseError,
    DatabaseUnavailableError,
    EmbeddingSpaceSwitchedError,
    SchemaError,
)

logger = logging.getLogger(__name__)

_CONNECTION_LOST = (
    OSError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionFailureError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Translate asyncpg errors raised inside the block."""
    try:
        yield
    except _CONNECTION_LOST as exc:
        raise DatabaseUnavailableError("lost the database connection; retry") from exc
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
        logger.error("schema not current: SQLSTATE %s (%s)", exc.sqlstate, type(exc).__name__)
        raise SchemaError("the database schema is not current: run pgrecall migrate") from exc
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name != SIZE_CHECK:
            raise _refused(exc) from exc
        # Vectors of the size before a switch (schema.size_check): this process lags behind it.
        raise EmbeddingSpaceSwitchedError(
            "the store switched to vectors of another size (pgrecall reembed --switch): restart "
            "this process with the new settings"
        ) from exc
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        # PostgreSQL rolled the statement back; its text names server processes: not shown.
        logger.warning("writes collided: SQLSTATE %s (%s)", exc.sqlstate, type(exc).__name__)
        raise DatabaseBusyError(
            "concurrent writes to the same memories collided; send the request again"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise _refused(exc) from exc


def _refused(exc: asyncpg.PostgresError) -> DatabaseError:
    logger.error("the database refused: SQLSTATE %s (%s)", exc.sqlstate, type(exc).__name__)
    return DatabaseError("the database refused the operation; retry, and report it if it persists")
