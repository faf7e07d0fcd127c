"""Reading and deleting memories by id, namespace and filter: get, list, forget, stats."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg

from pgrecall import validation
from pgrecall.audit import logged
from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors
from pgrecall.db.params import SqlParams
from pgrecall.errors import InvalidInputError, NotFoundError
from pgrecall.offload import off_loop
from pgrecall.recall.filters import compile_filter
from pgrecall.records import EmbedStatus, Memory, NamespaceStats, Page, Stats
from pgrecall.transfer.exporter import ExportScope
from pgrecall.versions import as_of_relation

# A Memory's fields are the columns read for it.
_MEMORY_FIELDS = tuple(field.name for field in fields(Memory))
MEMORY_COLUMNS = ", ".join(_MEMORY_FIELDS)
MAX_PAGE = 1000
# What an invalidation did: ended the validity, found it ended already, or found no memory.
Ending = Literal["ended", "already", "missing"]


def memory_from_row(row: asyncpg.Record) -> Memory:
    """A Memory from a row selected with MEMORY_COLUMNS."""
    values = {name: row[name] for name in _MEMORY_FIELDS}
    values["metadata"] = json.loads(values["metadata"])
    return Memory(**values)


def _forgetting(where: str, params: SqlParams, actor: str, *, answer: str) -> str:
    """Delete the memories ``where`` holds (every version goes with them: the versions' foreign
    key cascades) and audit each; ``answer`` is selected over those that had not expired (an
    expired one goes too, but it was already gone to every read). Expiry is judged outside
    RETURNING, where Citus allows immutable functions only (now() is not)."""
    audit = logged("gone", "'forget'", params.add(actor, "text"))
    return (
        f"WITH gone AS (DELETE FROM memories WHERE {where} "
        f"RETURNING id, namespace, version, expires_at), "
        f"audit AS ({audit}) SELECT {answer} FROM gone WHERE {unexpired('gone')}"
    )


def memory_id(value: object) -> UUID:
    """A memory id from a UUID or its text."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError as exc:
        raise InvalidInputError(f"{value!r} is not a memory id (a UUID)") from exc


def no_memory(identifier: UUID) -> NotFoundError:
    """The error for an id with no memory (or none the caller may see): one wording for both."""
    return NotFoundError(f"no memory {identifier}")


def encode_cursor(created_at: datetime, identifier: UUID) -> str:
    """An opaque keyset cursor: the last row's (created_at, id)."""
    raw = f"{created_at.isoformat()}|{identifier}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) inside a cursor made by ``encode_cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, identifier = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("a cursor's time is in UTC")
        validation.check_timestamp(created_at, "cursor")
        return created_at, UUID(identifier)
    except (ValueError, binascii.Error) as exc:
        raise InvalidInputError("cursor is not one pgrecall returned") from exc


def _in_namespace(condition: str, namespace: str | None, params: SqlParams) -> str:
    """``condition``, narrowed to ``namespace`` when one is named (under Citus, naming it routes
    the statement to one shard)."""
    if namespace is None:
        return condition
    return f"{condition} AND namespace = {params.add(validation.namespace(namespace), 'text')}"


class Catalog:
    """Memories by id and namespace."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(
        self, identifier: UUID, namespace: str | None = None, *, expired: bool = False
    ) -> Memory | None:
        """One memory, or None (also once expired, unless ``expired``: what an update that
        just set a past expiry wrote). Naming the namespace routes to one shard (Citus)."""
        params = SqlParams()
        where = f"id = {params.add(identifier, 'uuid')}"
        if not expired:
            where += f" AND {unexpired()}"
        where = _in_namespace(where, namespace, params)
        with database_errors():
            row = await self._pool.fetchrow(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {where}", *params.values
            )
        return memory_from_row(row) if row is not None else None

    async def by_keys(self, keys: Sequence[tuple[str, str]]) -> list[Memory]:
        """The unexpired memories with these (namespace, key) pairs, in one statement (served
        by the unique (namespace, key) index); a pair with no memory is left out."""
        if not keys:
            return []
        params = SqlParams()
        names = params.add([validation.namespace(name) for name, _ in keys], "text[]")
        wanted = params.add([key for _, key in keys], "text[]")
        sql = (
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE (namespace, key) IN "
            f"(SELECT * FROM unnest({names}, {wanted})) AND {unexpired()}"
        )
        with database_errors():
            rows = await self._pool.fetch(sql, *params.values)
        return [memory_from_row(row) for row in rows]

    async def page(
        self,
        namespace: str | Sequence[str] | None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: EmbedStatus | None = None,
        filter: Mapping[str, Any] | None = None,
        as_of: datetime | None = None,
    ) -> Page:
        """Memories of a namespace, of several, or of all (when listing by ``status``), newest
        first; ``filter`` keeps those whose metadata matches (the recall filter language); as
        they were at ``as_of`` when given (one namespace; see versions.py)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be a whole number from 1 to {MAX_PAGE}")
        if namespace is None and status is None:
            raise InvalidInputError("name a namespace (or list by status, e.g. the failed ones)")
        if namespace is None and as_of is not None:
            raise InvalidInputError("as_of lists one namespace: name it")
        params = SqlParams()
        if isinstance(namespace, str) or namespace is None:
            conditions = [_in_namespace(unexpired(), namespace, params)]
        else:
            names = validation.namespaces(namespace)
            conditions = [unexpired(), f"namespace = ANY({params.add(names, 'text[]')})"]
        source = "memories"
        if as_of is not None:
            if not isinstance(namespace, str):
                raise InvalidInputError("as_of lists one namespace: name it")
            in_namespace = f"= {params.add(validation.namespace(namespace), 'text')}"
            at = params.add(validation.check_timestamp(as_of, "as_of"), "timestamptz")
            source = as_of_relation(at, in_namespace)
        if status is not None:
            if status not in ("pending", "embedded", "failed"):
                raise InvalidInputError("status is one of pending, embedded, failed")
            conditions.append(f"status = {params.add(status, 'text')}")
        conditions.append(compile_filter(filter, params))
        if cursor is not None:
            created_at, identifier = decode_cursor(cursor)
            conditions.append(
                f"(created_at, id) < ({params.add(created_at, 'timestamptz')}, "
                f"{params.add(identifier, 'uuid')})"
            )
        sql = (
            f"SELECT {MEMORY_COLUMNS} FROM {source} AS m WHERE {' AND '.join(conditions)} "
            f"ORDER BY created_at DESC, id DESC LIMIT {params.add(limit + 1, 'int')}"
        )
        with database_errors():
            rows = await self._pool.fetch(sql, *params.values)
        kept = rows[:limit]
        memories = await off_loop(len(kept), lambda: [memory_from_row(row) for row in kept])
        more = len(rows) > limit
        last = memories[-1] if memories else None
        next_cursor = encode_cursor(last.created_at, last.id) if more and last else None
        return Page(memories=memories, next_cursor=next_cursor)

    async def namespaces(self, prefix: str, *, limit: int) -> list[str]:
        """Up to ``limit`` namespaces starting with ``prefix`` that hold an unexpired memory, in
        order. ``namespace >= prefix`` lets the scan of the primary key's btree start at the
        prefix instead of the first name; ``starts_with`` decides."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError("limit must be a whole number from 1")
        params = SqlParams()
        start = params.add(prefix, "text")
        sql = (
            f"SELECT DISTINCT namespace FROM memories WHERE namespace >= {start} "
            f"AND starts_with(namespace, {start}) AND {unexpired()} "
            f"ORDER BY namespace LIMIT {params.add(limit, 'int')}"
        )
        with database_errors():
            rows = await self._pool.fetch(sql, *params.values)
        return [row["namespace"] for row in rows]

    async def revision(self) -> str | None:
        """The schema's Alembic revision, or None when never migrated."""
        with database_errors():
            exists = await self._pool.fetchval("SELECT to_regclass('alembic_version')")
            if exists is None:
                return None
            value = await self._pool.fetchval("SELECT version_num FROM alembic_version")
        return str(value) if value is not None else None

    async def pending_count(self) -> int:
        """Pending memories in all namespaces (served by the pending-queue index)."""
        with database_errors():
            return int(
                await self._pool.fetchval(
                    f"SELECT count(*) FROM memories WHERE status = 'pending' AND {unexpired()}"
                )
            )

    async def retry_failed(
        self, namespace: str | None = None, identifier: UUID | None = None
    ) -> int:
        """Put failed memories back in the queue (attempts reset): every one, a namespace's,
        or the one ``identifier`` names (with its namespace); returns how many."""
        params = SqlParams()
        where = _in_namespace(f"status = 'failed' AND {unexpired()}", namespace, params)
        if identifier is not None:
            where += f" AND id = {params.add(identifier, 'uuid')}"
        with database_errors():
            status = await self._pool.execute(
                f"UPDATE memories SET status = 'pending', embed_attempts = 0, embed_after = now() "
                f"WHERE {where}",
                *params.values,
            )
        return int(status.split()[-1])

    async def forget_ids(
        self, identifiers: Sequence[UUID], namespace: str | None, actor: str
    ) -> list[tuple[UUID, str]]:
        """Delete memories by id (see ``_forgetting``); returns (id, namespace) of those that had
        not expired."""
        params = SqlParams()
        where = _in_namespace(
            f"id = ANY({params.add(list(identifiers), 'uuid[]')})", namespace, params
        )
        sql = _forgetting(where, params, actor, answer="id, namespace")
        with database_errors():
            rows = await self._pool.fetch(sql, *params.values)
        return [(row["id"], row["namespace"]) for row in rows]

    async def forget_matching(
        self, namespace: str, filter_document: Mapping[str, Any], actor: str
    ) -> int:
        """Delete the memories of a namespace that match a filter, every version with them,
        and audit it; returns how many."""
        name = validation.namespace(namespace)
        params = SqlParams()
        where = (
            f"namespace = {params.add(name, 'text')} AND {compile_filter(filter_document, params)}"
        )
        sql = _forgetting(where, params, actor, answer="count(*)")
        with database_errors():
            live = await self._pool.fetchval(sql, *params.values)
        return int(live)

    async def invalidate(
        self,
        identifier: UUID,
        namespace: str,
        *,
        at: datetime | None,
        reason: str | None,
        actor: str,
    ) -> Ending:
        """End a memory's validity at ``at`` (now when None), saying why; audited. A memory
        whose validity has already ended keeps its first end and reason, and no entry is
        written (the audit records changes): ``"already"``. ``"missing"``: no such memory."""
        params = SqlParams()
        ending = validation.check_timestamp(at, "at")
        # now() on its own, not coalesce(.., now()): Citus refuses a non-immutable function in
        # COALESCE or CASE on a distributed table.
        until = "now()" if ending is None else params.add(ending, "timestamptz")
        where = (
            f"namespace = {params.add(namespace, 'text')} AND id = {params.add(identifier, 'uuid')}"
            f" AND {unexpired()}"
        )
        audit = logged("ended", "'invalidate'", params.add(actor, "text"))
        # ``found`` reads the statement's snapshot: the row as it was before the UPDATE, which
        # re-checks a row another transaction changed meanwhile (one that invalidated it first
        # leaves nothing to end).
        sql = f"""
            WITH ended AS (
                UPDATE memories SET valid_until = {until},
                                    invalid_reason = {params.add(reason, "text")},
                                    updated_at = now()
                WHERE {where} AND (valid_until IS NULL OR valid_until > now())
                RETURNING namespace, id, version
            ), audit AS ({audit})
            SELECT (SELECT count(*) FROM ended) AS ended,
                   (SELECT count(*) FROM memories WHERE {where}) AS found
        """
        with database_errors():
            try:
                row = await self._pool.fetchrow(sql, *params.values)
            except asyncpg.CheckViolationError as exc:
                # memories_valid_span: the client's mistake, caught before database_errors
                # would log it as a refusal at error level.
                raise InvalidInputError(
                    "at is not after the memory's valid_from: a fact cannot end before it begins"
                ) from exc
        assert row is not None  # a SELECT of two scalar subqueries returns one row
        if row["ended"]:
            return "ended"
        return "already" if row["found"] else "missing"

    async def stats(self, namespace: str | None = None, scope: ExportScope | None = None) -> Stats:
        """Counts per namespace (one namespace, those of ``scope``, or all of them) and each
        one's last write, expired memories left out."""
        params = SqlParams()
        where = _in_namespace(unexpired(), namespace, params)
        if scope is not None:
            where += f" AND {scope.condition(params)}"
        with database_errors():
            rows = await self._pool.fetch(
                f"""
                SELECT namespace, count(*) AS memories,
                       count(*) FILTER (WHERE status = 'embedded') AS embedded,
                       count(*) FILTER (WHERE status = 'pending') AS pending,
                       count(*) FILTER (WHERE status = 'failed') AS failed,
                       max(updated_at) AS last_write,
                       extract(epoch FROM now() - min(created_at) FILTER
                               (WHERE status = 'pending')) AS oldest_pending
                FROM memories WHERE {where} GROUP BY namespace ORDER BY namespace
                """,
                *params.values,
            )
        per_namespace = [
            NamespaceStats(
                row["namespace"],
                row["memories"],
                row["embedded"],
                row["pending"],
                row["failed"],
                row["last_write"],
            )
            for row in rows
        ]
        ages = [float(row["oldest_pending"]) for row in rows if row["oldest_pending"] is not None]
        return Stats(
            memories=sum(n.memories for n in per_namespace),
            embedded=sum(n.embedded for n in per_namespace),
            pending=sum(n.pending for n in per_namespace),
            failed=sum(n.failed for n in per_namespace),
            oldest_pending_seconds=max(ages) if ages else None,
            namespaces=per_namespace,
        )
