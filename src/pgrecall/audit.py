"""The audit log: which memory was created, superseded, updated, invalidated or forgotten, by
whom and when; never what it said (a forgotten memory's text is gone, its audit stays).

Entries are written in the statement (or transaction) of the change they record, so a change is
never stored without its entry or the reverse. Actors: the API key's fingerprint over HTTP
(``key:`` and 12 hex digits of its SHA-256; the key itself never), else the local user. Entries
older than ``audit_retention_days`` are deleted by the background sweeper.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from datetime import datetime
from uuid import UUID

import asyncpg

from pgrecall import validation
from pgrecall.db.errors import database_errors
from pgrecall.db.rows import from_row
from pgrecall.errors import InvalidInputError
from pgrecall.records import AuditEntry

logger = logging.getLogger(__name__)

# COPY columns of an entry (``at`` and ``id`` take their defaults).
AUDIT_COPY_COLUMNS = ("namespace", "memory_id", "action", "actor", "version")
MAX_ACTOR_LENGTH = 200
MAX_AUDIT_PAGE = 1000


def local_actor() -> str:
    """The actor of calls made in this process without one: the local user's name."""
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container's random user)
        return "user:unknown"


def key_actor(api_key: str) -> str:
    """The actor of an API key: a fingerprint that names it without giving it away."""
    return f"key:{hashlib.sha256(api_key.encode()).hexdigest()[:12]}"


def check_actor(actor: str) -> str:
    """An actor given by a caller: non-empty text of at most MAX_ACTOR_LENGTH characters."""
    if not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR_LENGTH:
        raise InvalidInputError(f"actor must be text of 1 to {MAX_ACTOR_LENGTH} characters")
    return actor


def logged(source: str, action: str, actor: str) -> str:
    """A CTE body writing one entry per row of ``source`` (columns namespace, id, version):
    ``action`` is SQL over those rows, ``actor`` a placeholder."""
    return (
        "INSERT INTO memory_audit (namespace, memory_id, action, actor, version) "
        f"SELECT namespace, id, {action}, {actor}, version FROM {source}"
    )


_ENTRIES = """
    SELECT namespace, memory_id, action, at, actor, version FROM memory_audit
    WHERE namespace = $1 AND ($2::uuid IS NULL OR memory_id = $2)
      AND ($3::timestamptz IS NULL OR at < $3)
    ORDER BY at DESC, id DESC LIMIT $4
"""


class AuditLog:
    """Reads and prunes the audit log."""

    def __init__(self, pool: asyncpg.Pool, retention_days: int) -> None:
        self._pool = pool
        self._retention_days = retention_days

    async def entries(
        self,
        namespace: str,
        *,
        memory_id: UUID | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """A namespace's entries (of one memory, when given), newest first, older than
        ``before`` when given (pass the last entry's ``at`` to page on)."""
        name = validation.namespace(namespace)
        validation.check_timestamp(before, "before")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_AUDIT_PAGE
        ):
            raise InvalidInputError(f"limit must be a whole number from 1 to {MAX_AUDIT_PAGE}")
        with database_errors():
            rows = await self._pool.fetch(_ENTRIES, name, memory_id, before, limit)
        return [from_row(AuditEntry, row) for row in rows]

    async def prune(self) -> int:
        """Delete entries older than the retention; returns how many (0 when kept forever)."""
        if not self._retention_days:
            return 0
        with database_errors():
            status = await self._pool.execute(
                "DELETE FROM memory_audit WHERE at < now() - make_interval(days => $1)",
                self._retention_days,
            )
        deleted = int(status.split()[-1])
        if deleted:
            logger.info("audit: %d entries past retention deleted", deleted)
        return deleted
