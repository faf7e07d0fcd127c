"""The one boundary where asyncpg's exceptions become pgrecall's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from pgrecall.errors import DatabaseBusyError, DatabaseError, DatabaseUnavailableError, SchemaError

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
        raise DatabaseUnavailableError(
            f"lost the database connection ({exc.__class__.__name__}: {exc}); retry"
        ) from exc
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
        raise SchemaError(
            f"the database schema is not current ({exc}): run pgrecall migrate"
        ) from exc
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        # PostgreSQL rolled the statement back; its text names server processes: not shown.
        raise DatabaseBusyError(
            "concurrent writes to the same memories collided; send the request again"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"the database refused the operation: {exc}") from exc
