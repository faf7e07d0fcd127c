"""Versions of a memory: the current one in ``memories``, the superseded ones in
``memory_versions`` (copied there by the ``memories_keep_version`` trigger, migration 0011).

Recall, get and list read ``memories`` alone, so superseded versions never enter their scans.
An as-of read (``as_of=t``) reads ``as_of_relation`` instead: the rows current at ``t`` and the
kept versions whose span holds ``t``, with the columns reads use. It is an exact scan of the
namespaces in scope (versions have no graph index): a question about the past is rare, and its
namespaces are read once.

Valid time (``valid_from`` / ``valid_until``) is the agent's: when a fact is true in the world.
A fact whose validity has ended (``valid_until`` passed, e.g. after ``invalidate``) is left out
of recall unless ``include_invalid``; ``valid_at=t`` keeps the facts valid at ``t``.
"""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import asyncpg

from pgrecall import validation
from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors
from pgrecall.db.params import SqlParams
from pgrecall.db.rows import from_row
from pgrecall.records import Version

# When the current version of a row became current.
CURRENT_SINCE = "coalesce(version_since, created_at)"

# The columns of memories that reads use, for a current row and for a kept version.
_CURRENT_COLUMNS = (
    "namespace, id, content, metadata, key, created_at, updated_at, expires_at, status, "
    "embed_error, embed_attempts, version, valid_from, valid_until, invalid_reason, "
    "embedding, space_id, search, hnsw_indexed"
)
_KEPT_COLUMNS = (
    "v.namespace, v.memory_id, v.content, v.metadata, v.key, v.created_at, v.superseded_at, "
    "m.expires_at, CASE WHEN v.embedding IS NULL THEN 'pending' ELSE 'embedded' END, "
    "NULL::text, 0, v.version, v.valid_from, v.valid_until, v.invalid_reason, v.embedding, "
    "v.space_id, to_tsvector(pgrecall_text_config(), coalesce(v.search_text, v.content)), "
    "false"
)


def as_of_relation(at: str, in_namespaces: str) -> str:
    """A subquery with the columns of ``memories`` reads use, holding the versions of the
    memories of ``namespace {in_namespaces}`` that were current at ``at`` (a placeholder).
    A memory forgotten or expired since is gone from every time."""
    return f"""(
        SELECT {_CURRENT_COLUMNS} FROM memories
        WHERE namespace {in_namespaces} AND {CURRENT_SINCE} <= {at}
        UNION ALL
        SELECT {_KEPT_COLUMNS}
        FROM memory_versions v
        JOIN memories m ON m.namespace = v.namespace AND m.id = v.memory_id
        WHERE v.namespace {in_namespaces} AND m.namespace {in_namespaces}
          AND v.current_from <= {at} AND v.superseded_at > {at} AND {unexpired("m")}
    )"""


def valid_time_condition(
    params: SqlParams,
    *,
    valid_at: datetime | None,
    include_invalid: bool,
    as_of: str | None,
    alias: str = "m",
) -> str | None:
    """The valid-time condition of a read over table ``alias``, or None for none.

    ``valid_at`` keeps facts valid at that time; otherwise facts whose validity ended by now
    (or by the as-of time) are left out unless ``include_invalid``."""
    if valid_at is not None:
        at = params.add(validation.check_timestamp(valid_at, "valid_at"), "timestamptz")
        return (
            f"({alias}.valid_from IS NULL OR {alias}.valid_from <= {at}) "
            f"AND ({alias}.valid_until IS NULL OR {alias}.valid_until > {at})"
        )
    if include_invalid:
        return None
    return f"({alias}.valid_until IS NULL OR {alias}.valid_until > {as_of or 'now()'})"


def validity_ended(alias: str = "m") -> str:
    """The complement of the current validity (``valid_time_condition`` without ``valid_at``,
    ``include_invalid`` or ``as_of``) for a fact with an end: the range of ``valid_until``
    that the partial index ``memories_namespace_valid_until``
    (namespace, valid_until; migration 0016)
    reads."""
    return f"{alias}.valid_until <= now()"


_HISTORY = f"""
    SELECT version, content, metadata, key, current_from, superseded_at AS current_until,
           superseded_by, valid_from, valid_until, invalid_reason
    FROM memory_versions WHERE namespace = $1 AND memory_id = $2
    UNION ALL
    SELECT version, content, metadata, key, {CURRENT_SINCE}, NULL, NULL, valid_from,
           valid_until, invalid_reason
    FROM memories WHERE namespace = $1 AND id = $2 AND {unexpired()}
    ORDER BY version
"""

_ID_OF_KEY = f"SELECT id FROM memories WHERE namespace = $1 AND key = $2 AND {unexpired()}"


class History:
    """Reads every version of one memory."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def id_of_key(self, namespace: str, key: str) -> UUID | None:
        """The id of the memory stored under ``key`` in ``namespace``, or None."""
        with database_errors():
            found = await self._pool.fetchval(
                _ID_OF_KEY, validation.namespace(namespace), validation.key(key)
            )
        return found if isinstance(found, UUID) else None

    async def versions(self, namespace: str, identifier: UUID) -> list[Version]:
        """Every version of the memory, oldest first (empty when there is no such memory)."""
        with database_errors():
            rows = await self._pool.fetch(_HISTORY, namespace, identifier)
        return [
            from_row(
                Version,
                row,
                memory_id=identifier,
                namespace=namespace,
                metadata=json.loads(row["metadata"]),
            )
            for row in rows
        ]
