"""The one boundary where asyncpg's exceptions become pgrecall's.

The messages say what happened and what to do, never the server's own text: it can quote the
values of the statement, name server processes and table internals, and it reaches HTTP
clients. The log gets the SQLSTATE and the exception's class, which is what an operator needs.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import asyncpg

from pgrecall.config import redact_url
from pgrecall.db.schema import SIZE_CHECK
from pgrecall.errors import (
    ConfigurationError,
    DatabaseBusyError,
    DatabaseError,
    DatabaseUnavailableError,
    EmbeddingSpaceSwitchedError,
    PgRecallError,
    SchemaError,
)

logger = logging.getLogger(__name__)

# What a lost connection raises (asyncpg's, and the network's below it).
CONNECTION_LOST = (
    OSError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionFailureError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
    # A connection whose server process was terminated while the pool handed it out: its
    # protocol state is broken ("cannot switch to state 15"), and the pool closes it.
    asyncpg.InternalClientError,
)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Translate asyncpg errors raised inside the block."""
    try:
        yield
    except CONNECTION_LOST as exc:
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


# What opening a connection raises: the network's errors, a DSN asyncpg cannot parse (ValueError,
# its ClientConfigurationError among them), and the server's refusals.
CONNECT_ERRORS = (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError)

# The server's refusals of a new connection, in words that say what to check.
_REFUSALS: list[tuple[type[Exception], str]] = [
    (asyncpg.InvalidPasswordError, "the password was refused: check the URL's user and password"),
    (
        asyncpg.InvalidAuthorizationSpecificationError,
        "the user was refused: no such role, or pg_hba.conf does not let it in",
    ),
    (asyncpg.InvalidCatalogNameError, "the database does not exist: create it first"),
    (
        asyncpg.CannotConnectNowError,
        "the server is starting or shutting down: retry in a moment",
    ),
    (asyncpg.TooManyConnectionsError, "the server has no connection to spare: retry later"),
    (socket.gaierror, "the host name does not resolve"),
    (ConnectionRefusedError, "nothing listens at that host and port"),
    (TimeoutError, "the server did not answer in time"),
]


def connect_failure(exc: BaseException, dsn: str) -> PgRecallError:
    """Why no connection to ``dsn`` could be made, for an operator: the URL with its password
    masked and what to check, never the driver's text (a DSN asyncpg cannot parse is quoted
    back in it, password and all). The log gets the exception's class and SQLSTATE at info: the
    error itself is what the caller reports, and a warning would reach a CLI's stderr through
    logging's last-resort handler as a second line."""
    sqlstate = getattr(exc, "sqlstate", None)
    logger.info("cannot connect: %s (SQLSTATE %s)", type(exc).__name__, sqlstate)
    if isinstance(exc, ValueError) and not isinstance(exc, asyncpg.PostgresError):
        # The URL is not shown: where it cannot be parsed, what looks like a host or a port
        # may be the password.
        return ConfigurationError(
            "the database URL cannot be used: check its form, "
            "postgresql://user:password@host:port/database, and its options (sslmode=...)"
        )
    where = redact_url(dsn)
    for kind, reason in _REFUSALS:
        if isinstance(exc, kind):
            return DatabaseUnavailableError(f"cannot connect to {where}: {reason}")
    if isinstance(exc, asyncpg.PostgresError):
        reason = f"the server refused the connection (SQLSTATE {sqlstate})"
    else:
        reason = f"the connection failed ({type(exc).__name__})"
    return DatabaseUnavailableError(f"cannot connect to {where}: {reason}")
